r"""Default config: the built-in synthetic_scenes dataset, random single positives, a small CNN on 2 CPU cores.

    python launch.py --config configs/default.py --workdir runs/default
    python launch.py --config configs/default.py:method=full --workdir runs/default_full

Variants through the config argument (comma-separated key=value): method, noise, seed, epochs, e.g.
`configs/default.py:method=an,noise=dominant,seed=1`. Any key can also be set with --config.<key>=<value>.

Expected: 4-7 minutes on 2 CPU cores (30 epochs of 37 steps at batch 64, evaluation every epoch). Measured test
mAP (teacher), random noise, seeds 0-2: method=an 74.6 +- 0.6, method=full 90.0 +- 0.4, method=adagc 71.4 +- 0.5
(nothing is memorised here; configs/synthetic_memorization.py is the regime AdaGC is for); every method:
docs/benchmark_synthetic.md.
"""

import ml_collections

from adagc_jax import config_utils

ARGS = ("method", "noise", "seed", "epochs")


def get_config(arg=None, defaults=None, config_file=__file__):
    """`defaults` (arg name -> value) lets configs built on this one change the defaults of the ARGS."""
    args = {**(defaults or {}), **config_utils.parse_arg(arg)}
    config_utils.check_arg_keys(args, ARGS, config_file)

    c = ml_collections.ConfigDict()
    c.method = args.get("method", "an")  # METHOD.md section 8
    c.noise = args.get("noise", "random")  # 'random' | 'dominant'
    c.seed = args.get("seed", 0)

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "synthetic_scenes"
    c.dataset.config_name = ""  # a named builder config ('' = the builder's default)
    # Fields of the builder's make_config(...); values equal to a built-in config select it.
    c.dataset.builder_config = ml_collections.ConfigDict({
        "image_size": 48, "bands": 3, "num_train": 2400, "num_validation": 600, "num_test": 2000, "seed": 0})
    c.dataset.data_dir = "~/tensorflow_datasets"
    c.dataset.manual_dir = ""  # real datasets only: where the user put the published files
    c.dataset.image_size = 48  # model input size; images of another size are resized in the pipeline
    c.dataset.cache = True  # keep decoded images in memory (small datasets)
    c.dataset.shuffle_buffer = 20_000  # used when cache is off
    c.dataset.augment = ml_collections.ConfigDict({"flip": True, "rot90": True})

    c.model = ml_collections.ConfigDict()
    c.model.name = "small_cnn"  # small_cnn | resnet18 | resnet50
    c.model.widths = (16, 32, 64)
    c.model.convs_per_stage = 1
    c.model.head_init_std = 0.01  # head kernel ~ N(0, std^2) (0 = all zeros: a saddle that stalls SPML training)
    c.model.dtype = "float32"  # computation dtype; bfloat16 on TPU/GPU

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"  # adam | adamw | sgd
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.9  # sgd only
    c.optimizer.nesterov = False  # sgd only
    c.optimizer.schedule = "cosine"  # cosine | constant
    c.optimizer.warmup_epochs = 1.0

    c.num_epochs = args.get("epochs", 30)
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
    })

    c.eval = ml_collections.ConfigDict({
        "every_epochs": 1,
        "test_every_epoch": True,  # test mAP per epoch, for the plots (model selection uses validation only)
        "empty_class_ap": "skip",  # 'skip' (project default) | 'zero' (official SPML repos)
        # Label recovery on the training images against their hidden labels (diagnostics.png; never a loss).
        "train_diagnostics": True,
    })
    c.checkpoint = ml_collections.ConfigDict({"every_epochs": 1, "keep": 2})
    c.log = ml_collections.ConfigDict({"progress_bar": True, "every_steps": 10})

    # Baseline hyper-parameters (BASELINES.md; defaults = the official code's), one block per method of METHOD.md
    # section 8 that has any: --config.losses.<method>.<key>=<value>. AdaGC uses gc/ema/mixup/trigger instead.
    c.losses = ml_collections.ConfigDict()
    c.losses.an_ls = ml_collections.ConfigDict({"ls_coef": 0.1})  # targets 0.9 / 0.1
    c.losses.wan = ml_collections.ConfigDict()  # no hyper-parameter: gamma = 1/(C-1)
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

    c.lock()
    return c


def real_data_config(arg, arg_names, config_file, dataset_name):
    """The shared start of the real-dataset configs (configs/aid_multilabel.py, configs/reben.py).

    Returns (args, cpu, c): the parsed config argument, its `cpu` flag (0 or 1), and this file's config, unlocked,
    with method (default adagc), noise and seed from args, dataset.name set, and the model and optimizer of the
    two variants: cpu=1 a float32 small CNN, otherwise a bfloat16 ResNet-50; Adam 1e-3 cosine either way.
    """
    args = config_utils.parse_arg(arg)
    config_utils.check_arg_keys(args, arg_names, config_file)
    if args.get("cpu", 0) not in (0, 1):
        raise config_utils.ConfigError(f"{config_file}: cpu must be 0 or 1, got {args['cpu']!r}")
    cpu = bool(args.get("cpu", 0))

    # Same key tree as this file's config: start from it and edit (only dataset.builder_config's fields are
    # builder-specific: they are the builder's make_config arguments).
    c = get_config()
    c.unlock()
    c.method = args.get("method", "adagc")
    c.noise = args.get("noise", "random")
    c.seed = args.get("seed", 0)
    c.dataset.name = dataset_name
    c.dataset.config_name = ""

    c.model.name = "small_cnn" if cpu else "resnet50"
    c.model.widths = (16, 32, 64)  # small_cnn only
    c.model.convs_per_stage = 1  # small_cnn only
    c.model.dtype = "float32" if cpu else "bfloat16"

    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.optimizer.schedule = "cosine"
    return args, cpu, c
