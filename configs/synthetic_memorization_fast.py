r"""The memorisation regime at a size a CPU can sweep: configs/synthetic_memorization.py made cheaper.

    python launch.py --config configs/synthetic_memorization_fast.py:method=an --workdir runs/memfast_an

Arguments (comma-separated key=value after the colon): method (default 'adagc'), noise, seed, epochs.

Compared with configs/synthetic_memorization.py: 32 px images instead of 48, 600 training images instead of 1200
(a network memorises fewer images sooner), smaller validation and test splits, and the test curve and the
training-set diagnostics every 5 epochs (selection and the trigger use validation and training statistics only).
"""

from configs import common, default

DEFAULTS = {**default.DEFAULTS, "method": "adagc", "epochs": 30}


def get_config(arg=None):
    c = default.build(common.parse_arg(arg, **DEFAULTS))
    c.dataset = common.dataset_block("synthetic_scenes", 32, {
        "image_size": 32, "bands": 3, "num_train": 600, "num_validation": 300, "num_test": 1000, "seed": 0})
    c.dataset.augment.flip = False
    c.dataset.augment.rot90 = False
    c.model = common.small_cnn(widths=(32, 64, 128), convs_per_stage=2)
    c.eval.curves_every_epochs = 5
    c.lock()
    return c
