"""Images/s of the jitted train step per method, same model and batch (measures and prints; asserts nothing).

    python benchmarks/step_cost.py --config configs/default.py --methods an,adagc --steps 50
    python benchmarks/step_cost.py --config configs/synthetic_memorization.py --methods an,adagc --conv_impl xla,cpu

The step is compiled and warmed up first; then `--steps` steps run on one fixed random batch (no input pipeline),
and the median of `--repeats` interleaved timings is printed with its ratio to the first method. `--conv_impl`
sets the small CNN's model.conv_impl (adagc_jax/conv.py); a comma-separated list times every method with every
implementation, interleaved in the same process, so the machine's load hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from adagc_jax import config_utils, experiment, parallel  # noqa: E402
from adagc_jax.dataset_info import DatasetInfo  # noqa: E402


def build_bench_step(config, name: str, bands: int = 3, num_classes: int = 12, conv_impl: str | None = None):
    """`name`'s train step as a run builds it (experiment.build), with its initial state, sums, knobs and one fixed
    random batch of config.batch_size images (no input pipeline, no TensorFlow). Returns (exp, state, sums, batch,
    knobs); nothing is compiled yet.

    conv_impl, when given, replaces the config's model.conv_impl (small_cnn only)."""
    with config.unlocked():
        config.method = name
        if conv_impl is not None:
            config.model.conv_impl = conv_impl
    size = config.dataset.image_size
    batch_size, num_train = config.batch_size, 4 * config.batch_size
    info = DatasetInfo("bench", num_classes, tuple(str(i) for i in range(num_classes)), {"train": num_train},
                       (size, size, bands), np.zeros(bands, np.float32), np.ones(bands, np.float32))
    exp = experiment.build(config, info, steps_per_epoch=10)
    rng = np.random.default_rng(0)
    observed = np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, num_train)]
    state = exp.initial_state(observed)
    labels = np.maximum(observed[:batch_size], (rng.random((batch_size, num_classes)) < 0.3).astype(np.float32))
    batch = parallel.shard_batch({"image": rng.normal(size=(batch_size, size, size, bands)).astype(np.float32),
                                  "observed": observed[:batch_size], "labels": labels,
                                  "id": np.arange(batch_size, dtype=np.int32)}, exp.mesh)
    return exp, state, exp.init_sums(), batch, exp.knobs(5, gc_weight=1.0)


def build_runner(config, name: str, steps: int, conv_impl: str | None = None):
    """Compiles `name`'s step (experiment.build, as a run builds it) and returns run() -> seconds for `steps` steps.

    conv_impl, when given, replaces the config's model.conv_impl (small_cnn only)."""
    exp, state, sums, batch, knobs = build_bench_step(config, name, conv_impl=conv_impl)
    step = exp.train_step
    for _ in range(3):  # compile + warm up
        state, sums = step(state, sums, batch, knobs)
    jax.block_until_ready(state)
    carry = {"state": state, "sums": sums}

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            carry["state"], carry["sums"] = step(carry["state"], carry["sums"], batch, knobs)
        jax.block_until_ready(carry["state"])
        return time.perf_counter() - start

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--methods", default="an,adagc")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conv_impl", default=None,
                        help="model.conv_impl for small_cnn: auto | xla | cpu, or a comma-separated list of them "
                             "(default: the config's)")
    args = parser.parse_args()
    config = config_utils.load_config_file(args.config)
    impls = args.conv_impl.split(",") if args.conv_impl else [None]
    if impls != [None] and config.model.name != "small_cnn":
        parser.error(f"--conv_impl applies to the small_cnn model only, not {config.model.name!r}")
    print(f"{args.config}: model {config.model.name} {tuple(config.model.widths)}, batch {config.batch_size}, "
          f"{config.dataset.image_size} px, devices {jax.devices()}")
    runners = {}
    for impl in impls:
        for name in args.methods.split(","):
            label = name if impl is None else f"{name}/{impl}"
            runners[label] = build_runner(config, name, args.steps, impl)
    labels = list(runners)
    timings = {label: [] for label in labels}
    for _ in range(args.repeats):  # interleaved, so a change in machine load hits every method alike
        for label in labels:
            timings[label].append(runners[label]())
    rates = {label: args.steps * int(config.batch_size) / float(np.median(t)) for label, t in timings.items()}
    for label in labels:
        spread = ", ".join(f"{args.steps * int(config.batch_size) / t:.0f}" for t in timings[label])
        print(f"{label:>10s}: {rates[label]:8.1f} images/s (repeats: {spread})   step cost "
              f"x{rates[labels[0]] / rates[label]:.2f} of {labels[0]}")


if __name__ == "__main__":
    main()
