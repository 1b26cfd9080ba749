r"""Default config: the built-in synthetic_scenes dataset, random single positives, a small CNN on 2 CPU cores.

    python launch.py --config configs/default.py --workdir runs/default
    python launch.py --config configs/default.py:method=full --workdir runs/default_full

Arguments (comma-separated key=value after the colon): method (default 'an'; METHOD.md section 8), noise
('random' | 'dominant'), seed, epochs; e.g. `configs/default.py:method=an,noise=dominant,seed=1`. Any key can also
be set with --config.<key>=<value>.

Expected: 4-7 minutes on 2 CPU cores (30 epochs of 37 steps at batch 64, evaluation every epoch). Measured results
of every method: README and docs/benchmark_synthetic.md (nothing is memorised here;
configs/synthetic_memorization.py is the regime AdaGC is for).
"""

from configs import common

DEFAULTS = {**common.RUN_ARGS, "epochs": 30}


def build(args):
    """The config for parsed arguments (configs built on this one pass their own defaults), unlocked."""
    c = common.training_config(args)
    c.num_epochs = args.epochs
    c.dataset = common.dataset_block("synthetic_scenes", 48, {
        "image_size": 48, "bands": 3, "num_train": 2400, "num_validation": 600, "num_test": 2000, "seed": 0})
    c.model = common.small_cnn(widths=(16, 32, 64), convs_per_stage=1)
    return c


def get_config(arg=None):
    c = build(common.parse_arg(arg, **DEFAULTS))
    c.lock()
    return c
