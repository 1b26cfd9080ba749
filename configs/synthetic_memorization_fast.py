r"""The memorisation regime at a size a CPU can sweep: every method, both noise types, several seeds.

    python launch.py --config configs/synthetic_memorization_fast.py:method=an --workdir runs/memfast_an
    python launch.py --config configs/benchmark.py:config=synthetic_memorization_fast,seeds=3 --workdir runs/memfast

Arguments (comma-separated key=value after the colon): method (default 'adagc'), noise, seed, epochs.

Compared with configs/synthetic_memorization.py (48 px, CNN 32-64-128, 40 epochs, cosine schedule): 32 px images,
a CNN of widths 16-32-64 (two convolutions per stage), a constant learning rate (the network keeps memorising to
the last epoch instead of freezing as a cosine schedule ends), 45 epochs, smaller validation and test splits, the
test curve and the training-set diagnostics every 9 epochs (selection and the trigger read validation and
training statistics only) and a checkpoint every 5 epochs (a killed run repeats at most 4; `trigger.rule=act`
needs `--config.checkpoint.every_epochs=1` for its rollback). The same 1200
un-augmented training images. `an` (random noise) peaks at epochs 17-22 and falls 6-8 validation points by the
last epoch (seeds 0-2). Expected: 207 s measured for `an` (seed 0) alone on 2 CPU cores, evaluation 22 % of it; methods
with a heavier step take longer. Tables of every method under both protocols:
docs/benchmark_memorization.md.
"""

from configs import common, default

DEFAULTS = {**default.DEFAULTS, "method": "adagc", "epochs": 45}


def get_config(arg=None):
    c = default.build(common.parse_arg(arg, **DEFAULTS))
    c.dataset = common.dataset_block("synthetic_scenes", 32, {
        "image_size": 32, "bands": 3, "num_train": 1200, "num_validation": 300, "num_test": 1000, "seed": 0})
    c.dataset.augment.flip = False
    c.dataset.augment.rot90 = False
    c.model = common.small_cnn(widths=(16, 32, 64), convs_per_stage=2)
    c.optimizer.schedule = "constant"
    c.eval.curves_every_epochs = 9
    c.checkpoint.every_epochs = 5
    c.lock()
    return c
