"""Images/s of the `an` and `adagc` train steps on the accelerator, with compile time, model FLOPs and utilisation.

    python benchmarks/throughput.py --peak_tflops 989          # one H100 SXM: ResNet-50 bf16, 224 px RGB and reBEN
    python benchmarks/throughput.py --configs 224rgb --methods an --batch_per_device 128 --steps 50

Each (config, method) builds the train step as a run does (benchmarks/step_cost.py: experiment.build on one fixed
random batch of batch_per_device x devices images, no input pipeline), compiles it ahead of time (the `compile s`
column), runs `--warmup` steps, then times `--steps` steps (`step ms`, `images/s`). The configs are the model
blocks of the real-data configs (the model is theirs; only the method, the batch and the dtype are set here):
  224rgb: configs/aid_multilabel.py, ResNet-50, 224 x 224 x 3, 17 classes
  120x12: configs/reben.py, ResNet-50, 120 x 120 x 12 (reBEN, Sentinel-2), 19 classes

GFLOP/image is the model FLOPs of one training image: 3x the forward (forward + backward, the usual MFU
convention), plus one more forward for methods whose teacher predicts on the clean view (adagc). The forward's
FLOPs are XLA's count (jax.jit(...).lower(...).compile().cost_analysis()['flops'], a multiply-add counted as 2) of
the compiled inference forward of one image. Optimizer, EMA and loss arithmetic are not counted. `TFLOP/s` is
GFLOP/image x images/s, over all devices; `utilisation` divides it by devices x --peak_tflops (per device).

Dense bf16 peaks per device (vendor figures, TFLOP/s) to pass as --peak_tflops:
  NVIDIA A100 (SXM or PCIe)   312
  NVIDIA H100 SXM             989
  TPU v3 (per chip)           123
  TPU v4 (per chip)           275

This script never imports TensorFlow (test: tests/test_benchmarks.py), so it runs on a host with only jax.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from adagc_jax import config_utils, methods, models  # noqa: E402
from benchmarks.step_cost import build_bench_step  # noqa: E402
from configs import common  # noqa: E402

# name -> (config file, bands, classes)
CONFIGS = {"224rgb": ("configs/aid_multilabel.py", 3, 17), "120x12": ("configs/reben.py", 12, 19)}
COLUMNS = ("config", "method", "batch", "devices", "compile s", "step ms", "images/s", "GFLOP/image",
           "TFLOP/s achieved", "utilisation")


def bench_config(name: str, method: str, batch_size: int, dtype: str, model: str | None, image_size: int | None):
    """The config of `name` (CONFIGS) for `method`, with the global batch, the dtype and optional overrides of the
    model name (the stem stays the config's) and the image size (tests use a small CNN at 32 px)."""
    path, _, _ = CONFIGS[name]
    config = config_utils.load_config_file(f"{path}:method={method}")
    with config.unlocked():
        config.batch_size = batch_size
        if model == "small_cnn":
            config.model = common.small_cnn(dtype=dtype)
        elif model is not None:
            config.model = common.resnet(model, stem=config.model.stem, dtype=dtype)
        config.model.dtype = dtype
        if image_size:
            config.dataset.image_size = image_size
    return config


def forward_flops_per_image(model, image_shape) -> float:
    """XLA's FLOP count of the compiled inference forward of one image (shapes only: nothing is initialised)."""
    image = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.PRNGKey(0), image_shape))
    compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, image).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax returned one dict per device
    if not cost or "flops" not in cost:
        return float("nan")  # best-effort API: a backend may not report it
    return float(cost["flops"])


def measure(config, name: str, method: str, steps: int, warmup: int) -> dict:
    """Compiles and times one (config, method); returns one table row."""
    _, bands, num_classes = CONFIGS[name]
    exp, state, sums, batch, knobs = build_bench_step(config, method, bands=bands, num_classes=num_classes)
    start = time.perf_counter()
    step = exp.train_step.lower(state, sums, batch, knobs).compile()
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        state, sums = step(state, sums, batch, knobs)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state, sums = step(state, sums, batch, knobs)
    jax.block_until_ready(state)
    step_s = (time.perf_counter() - start) / steps
    forwards = 3 + int(methods.METHODS[method].uses_teacher_predictions)
    flops = forwards * forward_flops_per_image(exp.model, exp.info.image_shape)
    batch_size = int(config.batch_size)
    return {"config": name, "method": method, "batch": batch_size, "devices": int(exp.mesh.devices.size),
            "compile s": compile_s, "step ms": 1e3 * step_s, "images/s": batch_size / step_s,
            "GFLOP/image": flops / 1e9, "TFLOP/s achieved": flops * batch_size / step_s / 1e12}


def _digits(x: float, significant: int = 4) -> str:
    """x with about `significant` significant digits, never in scientific notation (20670, 8.052, 0.3870)."""
    if not math.isfinite(x) or x == 0:
        return str(x)
    return f"{x:.{max(0, significant - 1 - math.floor(math.log10(abs(x))))}f}"


def markdown_table(rows: list[dict], peak_tflops: float) -> str:
    """The rows as a markdown table; utilisation is 'n/a' without a peak."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        peak = peak_tflops * row["devices"]
        util = _digits(100 * row["TFLOP/s achieved"] / peak, 3) + " %" if peak_tflops > 0 else "n/a"
        cells = [row["config"], row["method"], str(row["batch"]), str(row["devices"]), f"{row['compile s']:.1f}",
                 *(_digits(row[k]) for k in ("step ms", "images/s", "GFLOP/image", "TFLOP/s achieved")), util]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="224rgb,120x12", help=f"comma-separated, of {list(CONFIGS)}")
    parser.add_argument("--methods", default="an,adagc")
    parser.add_argument("--batch_per_device", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps, after compilation and warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak_tflops", type=float, default=0.0,
                        help="dense bf16 peak of ONE device in TFLOP/s (table in the docstring); 0 = no utilisation")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(models.DTYPES))
    parser.add_argument("--model", default=None, choices=sorted(models.MODELS),
                        help="replace the configs' ResNet-50 (for quick checks; default: the config's)")
    parser.add_argument("--image_size", type=int, default=None, help="replace the configs' input size")
    args = parser.parse_args(argv)
    names, method_names = args.configs.split(","), args.methods.split(",")
    for name in names:
        if name not in CONFIGS:
            parser.error(f"--configs: unknown {name!r}; valid: {list(CONFIGS)}")
    for method in method_names:
        if method not in methods.METHODS:
            parser.error(f"--methods: unknown {method!r}; valid: {sorted(methods.METHODS)}")
    devices = jax.devices()
    print(f"backend {jax.default_backend()}, {len(devices)} device(s): {devices[0].device_kind}; "
          f"{args.steps} timed steps after {args.warmup} warm-up; dtype {args.dtype}")
    rows = []
    for name in names:
        for method in method_names:
            config = bench_config(name, method, args.batch_per_device * len(devices), args.dtype, args.model,
                                  args.image_size)
            rows.append(measure(config, name, method, args.steps, args.warmup))
            print(f"  {name} {method}: {_digits(rows[-1]['images/s'])} images/s", flush=True)
    print(markdown_table(rows, args.peak_tflops))
    return rows


if __name__ == "__main__":
    main()
