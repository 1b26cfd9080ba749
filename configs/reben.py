r"""reBEN (BigEarthNet v2.0, Sentinel-2): the AdaGC paper's setting, and a CPU-sized variant.

Prepare once (reads the published files from manual_dir into data_dir; docs/datasets.md), then train:

    python launch.py --config configs/reben.py:noise=random --workdir runs/reben_adagc_random \
        --config.dataset.manual_dir=/data/reben --config.dataset.data_dir=/data/tfds
    python launch.py --config configs/reben.py:noise=dominant,seed=1 --workdir runs/reben_adagc_dominant_s1 \
        --config.dataset.manual_dir=/data/reben --config.dataset.data_dir=/data/tfds

CPU-sized (small CNN, 48 px, 5 epochs, batch 2) on a 1 % subset of the real data, or on the dummy release:

    python launch.py --config configs/reben.py:subset=0.01,cpu=1 --workdir runs/reben_cpu \
        --config.dataset.manual_dir=/data/reben --config.batch_size=32
    python launch.py --config configs/reben.py:subset=1.0,cpu=1 --workdir /tmp/reben_dummy \
        --config.dataset.manual_dir=adagc_jax/datasets/dummy_data/reben \
        --config.dataset.data_dir=/tmp/tfds_reben_dummy

Arguments (comma-separated key=value after the colon): method (default 'adagc'; METHOD.md section 8), noise
('random' | 'dominant'), seed, epochs, subset (fraction of each official split kept, seeded; passed to the reben
builder's make_config; default 1.0, or 0.01 with cpu=1), cpu (0 | 1). Any key can also be set with
--config.<key>=<value>; `dataset.manual_dir` has no default and must be given the first time (prepare step).

Where the values come from. The AdaGC paper (arXiv 2510.08269) trains on reBEN with Random and Dominant single
positives (DATASETS.md 4.1), but the specs could not read its body: its backbone, input size, bands, optimizer,
learning rate, batch size, epochs, subset and seeds are NOT known here (DATASETS.md 4.1 and 6.1). So:
  * from the specs / data sources: the official reBEN train / validation / test split of metadata.parquet (snow
    and cloud patches excluded), all 12 S2 bands resampled to 120 x 120 and normalised with the ConfigILM
    `120_bilinear` train statistics (DATASETS.md 2.6, 2.9, 7); the Dominant label from the reference maps (7);
  * ResNet-50 with global average pooling and a linear head: this project's reading of the paper's backbone;
    the specs themselves show ResNet-50 only in the SPML protocol the baselines follow (BASELINES.md section 1).
    It is trained from scratch by default; `--config.model.pretrained=/path/resnet50.safetensors` starts from
    ImageNet weights you downloaded (docs/pretrained.md), the first convolution adapted from RGB to the 12 bands
    as timm's adapt_input_conv does (RGB filters repeated, scaled by 3/12);
  * OUR choices (not from the paper): input 120 px (native 10 m grid, no resize), Adam, learning rate 1e-3 with
    a 1-epoch warm-up and cosine decay, no weight decay, global batch 256, 20 epochs, eval batch 512, bfloat16
    compute, no in-memory cache (the decoded train split is ~80 GB). AdaGC's own hyper-parameters (EMA momenta,
    Mixup alpha, trigger) keep the METHOD.md defaults of configs/default.py.
  * cpu=1 is ours: small_cnn (16, 32, 64), 48 px (antialiased resize from 120), 5 epochs, batch 2 (the dummy
    release has 2 training patches; raise it with --config.batch_size on a real subset), float32, cache on.

Expected runtime. Full config: not measured (no GPU run was possible); an estimate for one H100 is 1-2 min per
epoch once prepared (~930 steps of batch 256 at 120 px with the teacher forward, plus evaluating ~240k
validation + test patches and the training diagnostics every epoch), i.e. roughly 30-40 min for 20 epochs;
preparing the full TFDS dataset from the GeoTIFFs runs in one process and takes hours. cpu=1: measured about
30 s on 2 CPU cores on the dummy release (preparation and compilation dominate); with subset=0.01 and batch 32
an estimated well under a minute per epoch on 2 cores (the small CNN steps at ~400 images/s there).
Expected result: not known; the paper's reBEN numbers are not in the specs.
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, **common.REAL_DATA_ARGS, subset=-1.0)
    cpu = args.cpu
    c = common.real_data_config(args, "reben", image_size=(48, 120), epochs=(5, 20), batch_size=(2, 256),
                                eval_batch_size=(32, 512), warmup_epochs=(1.0, 1.0), builder_config={
        "bands": "all",  # 'all' (12 bands, B01..B12) | 'rgb' (B04, B03, B02)
        "subset": args.subset if args.subset > 0 else (0.01 if cpu else 1.0),  # fraction of each split (seeded)
        "seed": 0,  # seed of the subset draw (fixed: the data do not change with the run's seed)
        "skip_corrupt": False,
    })
    # c.dataset.manual_dir: set --config.dataset.manual_dir=/path (folder of metadata.parquet etc.)
    c.dataset.cache = cpu  # the full decoded train split does not fit in memory
    c.log.every_steps = 50
    # ~240k validation + test and ~237k training patches: the per-epoch test curve and the training-set
    # diagnostics would cost more than the training epoch on full reBEN (validation is still evaluated per epoch).
    c.eval.test_every_epoch = cpu
    c.eval.train_diagnostics = cpu
    c.lock()
    return c
