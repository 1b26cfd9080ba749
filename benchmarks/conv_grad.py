"""Milliseconds of one 3x3 conv's weight gradient: XLA's native route vs adagc_jax/conv.py's batch chunks, each
compiled with XLA:CPU's default options (convolutions in YNNPACK fusions: `ynn`) and with conv.COMPILER_OPTIONS
(XLA's own Eigen convolutions: `eigen`, what the small CNN's CPU path uses).

    python benchmarks/conv_grad.py                       # the six conv shapes of configs/synthetic_memorization.py
    python benchmarks/conv_grad.py --chunks 2,4,8,16 --repeats 9

Each shape's variants run interleaved (so a change in machine load hits all alike); the median is printed.
Measures and prints; asserts nothing. docs/performance.md explains the numbers.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from adagc_jax import conv  # noqa: E402

# (batch, pixels, Cin, Cout) of the memorisation network's convs (widths 32-64-128, two convs per stage).
SHAPES = ((64, 48, 3, 32), (64, 48, 32, 32), (64, 24, 32, 64), (64, 24, 64, 64), (64, 12, 64, 128),
          (64, 12, 128, 128))


def native_weight_gradient(x, grad_out):
    """The weight gradient as XLA's autodiff builds it (jax.vjp of the plain conv)."""
    kernel = jnp.zeros((3, 3, x.shape[-1], grad_out.shape[-1]), x.dtype)
    _, vjp = jax.vjp(lambda k: lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC")), kernel)
    return vjp(grad_out)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", default="4,8,16")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    variants = {"native": native_weight_gradient}
    for chunk in (int(c) for c in args.chunks.split(",")):
        variants[f"chunk{chunk}"] = functools.partial(conv.weight_gradient, batch_chunk=chunk)
    rng = np.random.default_rng(0)
    for batch, size, cin, cout in SHAPES:
        x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
        grad_out = jnp.asarray(rng.normal(size=(batch, size, size, cout)), jnp.float32)
        jitted = {f"{name}/{kind}": jax.jit(f, compiler_options=options) for name, f in variants.items()
                  for kind, options in (("ynn", {}), ("eigen", conv.COMPILER_OPTIONS))}
        for f in jitted.values():
            jax.block_until_ready(f(x, grad_out))
        times = {name: [] for name in jitted}
        for _ in range(args.repeats):
            for name, f in jitted.items():
                start = time.perf_counter()
                jax.block_until_ready(f(x, grad_out))
                times[name].append(time.perf_counter() - start)
        row = "  ".join(f"{name} {1e3 * np.median(t):7.1f}" for name, t in times.items())
        print(f"B={batch} {size}px {cin:3d}->{cout:3d}: {row}  (ms)", flush=True)


if __name__ == "__main__":
    main()
