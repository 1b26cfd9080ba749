r"""The memorisation regime AdaGC addresses: a network that can memorise 1200 single-positive training images.

    python launch.py --config configs/synthetic_memorization.py --workdir runs/mem_adagc
    python launch.py --config configs/synthetic_memorization.py:method=an --workdir runs/mem_an

Arguments (comma-separated key=value after the colon): method (default 'adagc'), noise, seed, epochs.

Compared with configs/default.py: 1200 training images instead of 2400, a 3-stage CNN of widths 32-64-128 with two
convolutions per stage, no augmentation (so every epoch shows the same 1200 images), 40 epochs. Under
assume-negative training the test mAP first rises (early learning), then falls once the network memorises which
label of each image was annotated and drives the unobserved true positives to 0. The test curve, the training-set
diagnostics and the student's validation curve every 5 epochs (validation of the reported model every epoch), so
that evaluation stays under a quarter of a run; evaluation batches of 200 (the splits' sizes are multiples of it).
Expected: 294 s measured for `an` (seed 0) on 2 CPU cores, evaluation 23 % of it (docs/performance.md).
Results, dominant noise, ablations and plots: docs/memorization.md.
"""

from configs import common, default

DEFAULTS = {**default.DEFAULTS, "method": "adagc", "epochs": 40}


def get_config(arg=None):
    c = default.build(common.parse_arg(arg, **DEFAULTS))
    c.dataset.builder_config.num_train = 1200
    c.dataset.augment.flip = False
    c.dataset.augment.rot90 = False
    c.model = common.small_cnn(widths=(32, 64, 128), convs_per_stage=2)
    c.eval.curves_every_epochs = 5
    c.eval_batch_size = 200  # divides the 600 / 2000 / 1200 images of the splits: no padded batch rows
    c.lock()
    return c
