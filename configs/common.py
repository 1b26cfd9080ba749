"""Pieces every config file shares: the typed argument parser, the training blocks, one model block per model,
and the start of the real-dataset configs (big_vision's configs/common.py style).

A config carries only the keys that apply to it: the model block holds the chosen model's own options (the model is
built as `Model(num_classes, **config.model minus name/pretrained)`, so a key it does not take is an error), and
each baseline's hyper-parameters sit under `losses.<method>`.
"""

import ml_collections

from adagc_jax import config_utils

parse_arg = config_utils.parse_arg

# Arguments every training config takes after the colon (configs/<file>.py:method=an,seed=1).
RUN_ARGS = {"method": "an", "noise": "random", "seed": 0}


def small_cnn(widths=(16, 32, 64), convs_per_stage=1, dtype="float32"):
    """The small CNN's options (adagc_jax/models.py: SmallCNN)."""
    return ml_collections.ConfigDict({
        "name": "small_cnn",
        "widths": tuple(widths),
        "convs_per_stage": convs_per_stage,
        "head_init_std": 0.01,  # head kernel ~ N(0, std^2) (0 = all zeros: a saddle that stalls SPML training)
        "dtype": dtype,  # computation dtype; bfloat16 on TPU/GPU
        # 'auto' | 'xla' | 'cpu': how convs/BatchNorms/max-pools are computed and compiled (adagc_jax/conv.py,
        # docs/performance.md); 'auto' = the CPU-fast custom gradients and kernels on the CPU backend, XLA's
        # native ops on GPU/TPU.
        "conv_impl": "auto",
    })


def resnet(name="resnet50", stem="imagenet", dtype="bfloat16"):
    """A ResNet's options (adagc_jax/models.py: ResNet18 / ResNet50)."""
    return ml_collections.ConfigDict({
        "name": name,
        "stem": stem,  # 'imagenet' (7x7/2 + max-pool, 120-600 px) | 'small' (3x3/1, ~48 px)
        "zero_init_residual": True,
        "head_init_std": 0.01,
        "dtype": dtype,
        # ImageNet weights from a torchvision / timm .safetensors file you downloaded ('' = from scratch);
        # docs/pretrained.md says where to get them. Needs stem='imagenet'.
        "pretrained": "",
    })


def training_config(args) -> ml_collections.ConfigDict:
    """Everything but `dataset` and `model`: method, noise, seed, optimizer, schedule, AdaGC's blocks, evaluation,
    checkpoints, logging and the baselines' hyper-parameters (defaults: METHOD.md and BASELINES.md)."""
    c = ml_collections.ConfigDict()
    c.runner = "train"  # 'train': one run | 'sweep': several methods and seeds (configs/benchmark.py)
    c.method = args.method  # METHOD.md section 8
    c.noise = args.noise  # 'random' | 'dominant'
    c.seed = args.seed

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"  # adam | adamw | sgd
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.9  # sgd only
    c.optimizer.nesterov = False  # sgd only
    c.optimizer.schedule = "cosine"  # cosine | constant
    c.optimizer.warmup_epochs = 1.0

    c.num_epochs = 30
    c.batch_size = 64  # global, split over all devices
    c.eval_batch_size = 256
    c.num_devices = -1  # -1: all visible devices

    # AdaGC (METHOD.md sections 3-6). Baselines ignore these blocks.
    c.gc = ml_collections.ConfigDict({"mode": "expected", "tau": 0.5, "rampup_epochs": 0})
    c.ema = ml_collections.ConfigDict({"weights": True, "predictions": True, "m_w": 0.99, "m_p": 0.9})
    c.mixup = ml_collections.ConfigDict({"alpha": 1.0})
    c.trigger = ml_collections.ConfigDict({
        "signal": "observed_fit", "rule": "slope", "window": 3, "eps": 0.1, "min_epochs": 2,
        "max_epochs": -1,  # -1: half of num_epochs
        "epoch": -1,  # rule 'fixed' only
        # rule 'act' only (METHOD.md 6b): the slope windows; use it with signal='observed_top1' (a rising signal).
        # (5, 7, 9): the best of the window sets replayed on validation (docs/trigger.md).
        "act_windows": (5, 7, 9),
    })

    c.eval = ml_collections.ConfigDict({
        "every_epochs": 1,
        "test_every_epoch": True,  # test mAP per epoch, for the plots (model selection uses validation only)
        "empty_class_ap": "skip",  # 'skip' (project default) | 'zero' (official SPML repos)
        # Label recovery on the training images against their hidden labels (diagnostics.png; never a loss).
        "train_diagnostics": True,
        # The test curve, the training-set diagnostics above and the student's validation curve (when the teacher
        # is the reported model) run every this many epochs (and at the last): in small runs they cost as much as
        # training, and neither model selection nor the trigger reads them. The plots (training.png,
        # diagnostics.png) are redrawn at the same epochs.
        "curves_every_epochs": 1,
        # Evaluation batches kept on the devices after a split's first pass (per process, float32 images, padding
        # included), so later evaluations skip the input pipeline; a split that does not fit keeps streaming.
        # 0 = off. Counts against accelerator memory: lower it if training runs out of memory.
        "device_cache_mb": 512,
        # Warn (log and results.json) when validation mAP and training loss have not moved for this many epochs
        # (e.g. a learning rate that killed the network); 0 = never.
        "stall_epochs": 5,
        # Which model results.json's top-level test / val blocks and the summary report: 'final' (the last epoch;
        # what a user without complete labels gets) | 'best_val' (the epoch of best validation mAP with complete
        # labels, as the SPML papers report). Both blocks are always in results.json.
        "select": "final",
        # Stop when validation mAP falls this many points (mAP %) below its best (LL: 3, GRLoss: 2); 0 = off.
        "early_stop_points": 0.0,
    })
    c.checkpoint = ml_collections.ConfigDict({"every_epochs": 1, "keep": 2})
    # 'auto': resume from the workdir's checkpoint when its config trains the same model (else a clear error);
    # 'force': resume even though keys that change the model differ (recorded in results.json's `resumes`).
    c.resume = "auto"
    c.log = ml_collections.ConfigDict({"progress_bar": True, "every_steps": 10})

    # Baseline hyper-parameters (BASELINES.md; defaults = the official code's), one block per method of METHOD.md
    # section 8 that has any: --config.losses.<method>.<key>=<value>. AdaGC uses gc/ema/mixup/trigger instead.
    c.losses = ml_collections.ConfigDict()
    c.losses.an_ls = ml_collections.ConfigDict({"ls_coef": 0.1})  # targets 0.9 / 0.1
    # expected_num_pos k: -1 = the mean number of positives per training image (Cole et al.'s k values are the
    # datasets' label cardinalities: pascal 1.5, coco 2.9, nuswide 1.9, cub 31.4); any value >= 0 is used as is.
    c.losses.epr = ml_collections.ConfigDict({"expected_num_pos": -1.0})
    c.losses.role = ml_collections.ConfigDict({"expected_num_pos": -1.0, "lr_mult": 10.0})  # Z: Adam at 10x lr
    c.losses.em = ml_collections.ConfigDict({"alpha": 0.1})  # coco / nuswide value (pascal 0.2, cub 0.01)
    # APL (coco row): soft negatives from epoch `warmup` (1-based) on, n_c = int(neg_proportion U_c^0 / (T-warmup)).
    c.losses.em_apl = ml_collections.ConfigDict({"alpha": 0.1, "beta": 0.9, "warmup": 5, "neg_proportion": 0.9})
    # delta_rel is a fraction (the official CLI's percent 0.2 = 0.002); epoch e modifies (e-1)*delta_rel of B*C.
    c.losses.ll_r = ml_collections.ConfigDict({"delta_rel": 0.002})
    c.losses.ll_ct = ml_collections.ConfigDict({"delta_rel": 0.002})
    c.losses.ll_cp = ml_collections.ConfigDict({"delta_rel": 0.002})  # fixed k = ceil(B*C*delta_rel), epochs >= 2
    c.losses.hill = ml_collections.ConfigDict({"lamb": 1.5, "margin": 1.0, "gamma": 2.0, "reduction": "sum"})
    c.losses.splc = ml_collections.ConfigDict({"tau": 0.6, "change_epoch": 1, "margin": 1.0, "gamma": 2.0,
                                               "reduction": "sum"})  # change_epoch is 0-based
    # GR: beta = (w0, wT, b0, bT), alpha = (mu0, sigma0, muT, sigmaT), scheduled over num_epochs.
    c.losses.gr = ml_collections.ConfigDict({"beta": (0.0, 2.0, -2.0, -2.0), "alpha": (0.5, 2.0, 0.8, 0.5),
                                             "q2": 0.01, "q3": 1.0, "linear_init_epochs": 0})
    return c


def dataset_block(name, image_size, builder_config, cache=True) -> ml_collections.ConfigDict:
    """The `dataset` block; `builder_config` holds the fields of the builder's make_config(...)."""
    return ml_collections.ConfigDict({
        "name": name,
        "config_name": "",  # a named builder config ('' = the builder's default)
        "builder_config": ml_collections.ConfigDict(builder_config),
        "data_dir": "~/tensorflow_datasets",
        "manual_dir": "",  # real datasets only: where the user put the published files
        # reben only: prepare as an Apache Beam pipeline with these comma-separated pipeline flags, e.g.
        # 'direct_num_workers=8,direct_running_mode=multi_processing' ('' = in-process; docs/scaling.md)
        "beam_options": "",
        "image_size": image_size,  # model input size; images of another size are resized in the pipeline
        "cache": cache,  # keep decoded images in memory (small datasets)
        "shuffle_buffer": 20_000,  # used when cache is off
        "augment": ml_collections.ConfigDict({"flip": True, "rot90": True}),
    })


REAL_DATA_ARGS = {"method": "adagc", "noise": "random", "seed": 0, "epochs": -1, "cpu": False}


def real_data_config(args, dataset_name, builder_config, image_size, *, epochs, batch_size, eval_batch_size,
                     warmup_epochs):
    """The shared start of the real-dataset configs (aid_multilabel, reben, ucm_multilabel), unlocked.

    args.cpu selects the CPU-sized variant (a float32 small CNN) instead of a bfloat16 ResNet-50; Adam 1e-3 cosine
    either way. image_size, epochs, batch_size, eval_batch_size and warmup_epochs are (cpu, full) pairs; args.epochs
    > 0 overrides the epochs.
    """
    pick = 0 if args.cpu else 1
    c = training_config(args)
    c.dataset = dataset_block(dataset_name, image_size[pick], builder_config)
    c.model = small_cnn() if args.cpu else resnet("resnet50")
    c.optimizer.warmup_epochs = warmup_epochs[pick]
    c.num_epochs = args.epochs if args.epochs > 0 else epochs[pick]
    c.batch_size = batch_size[pick]
    c.eval_batch_size = eval_batch_size[pick]
    return c
