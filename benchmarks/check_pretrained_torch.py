"""Check that a torchvision ResNet file loaded with adagc_jax.pretrained gives torchvision's logits.

Needs PyTorch + torchvision, which are NOT project requirements: run the first step in a throwaway venv outside the
repository, the second in the project's environment. Nothing is downloaded: the torchvision models are randomly
initialised, and their BatchNorm running statistics are set to the statistics of a batch and then perturbed, so the
eval-mode logits depend on every part of the mapping (kernels, scales, shifts, running mean and variance, head).

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchvision safetensors numpy
  /tmp/torchvenv/bin/python benchmarks/check_pretrained_torch.py make /tmp/pretrained_check
  JAX_PLATFORMS=cpu python benchmarks/check_pretrained_torch.py check /tmp/pretrained_check

`make` writes {arch}.safetensors (the state dict, 1000 classes), {arch}_input.npy (a seeded 2x3x224x224 batch,
NCHW) and torchvision's eval logits {arch}_logits.npy (float32) and {arch}_logits64.npy (the same weights in
float64) for resnet18 and resnet50. `check` loads each file into the project's model with pretrained.load, runs it
in eval mode on the same batch (NHWC), in float32 and in float64, and prints the max absolute difference, the max
difference relative to the largest logit, and the max element-wise relative difference (all logits, and those of
at least 1% of the largest). float32 differs by rounding (different convolution algorithms); float64 shows whether
anything else differs: it would leave differences far above float64 rounding.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

# Run as a script from anywhere: the project root goes on the path for the `check` step.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ARCHS = ("resnet18", "resnet50")
BATCH, SIZE, SEED = 2, 224, 0


def make(directory: str) -> None:
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    os.makedirs(directory, exist_ok=True)
    x = np.random.default_rng(SEED).normal(size=(BATCH, 3, SIZE, SIZE)).astype(np.float32)
    for arch in ARCHS:
        model = getattr(torchvision.models, arch)(weights=None)  # random init: no download
        # Running statistics of real activations (momentum 1: the last batch's), then perturbed so that a swapped
        # mean/var or a dropped BN would show; random BN shifts and head bias for the same reason.
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.momentum = 1.0
                    module.bias.normal_(0.0, 0.1)
                    module.weight.uniform_(0.5, 1.5)
            model.train()
            model(torch.from_numpy(np.random.default_rng(SEED + 1).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32)))
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.add_(torch.randn_like(module.running_mean) * 0.1)
                    module.running_var.mul_(torch.empty_like(module.running_var).uniform_(0.7, 1.4))
            model.fc.bias.normal_(0.0, 0.1)
            model.eval()
            logits = model(torch.from_numpy(x)).numpy()
            save_file(model.state_dict(), os.path.join(directory, f"{arch}.safetensors"))
            # The same weights in float64: tells float32 rounding (which vanishes there) from a mapping error.
            logits64 = model.double()(torch.from_numpy(x).double()).numpy()
        np.save(os.path.join(directory, f"{arch}_input.npy"), x)
        np.save(os.path.join(directory, f"{arch}_logits.npy"), logits)
        np.save(os.path.join(directory, f"{arch}_logits64.npy"), logits64)
        print(f"{arch}: wrote {directory}/{arch}.safetensors, logits std {logits.std():.4g}, "
              f"max |logit| {np.abs(logits).max():.4g}")


def check(directory: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)  # for the float64 comparison; the float32 one is unaffected
    import jax.numpy as jnp

    from adagc_jax import models, pretrained

    for arch in ARCHS:
        variables = models.init_variables(models.get_model(arch, 1000), jax.random.key(0, impl="rbg"),
                                          (SIZE, SIZE, 3))
        variables = pretrained.load(os.path.join(directory, f"{arch}.safetensors"), variables, log=print)
        x = np.load(os.path.join(directory, f"{arch}_input.npy")).transpose(0, 2, 3, 1)  # NCHW -> NHWC
        model = models.get_model(arch, 1000, dtype=jnp.float32)
        forward = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False))
        logits = np.asarray(forward(variables, jnp.asarray(x)))
        _report(f"{arch} float32", logits, np.load(os.path.join(directory, f"{arch}_logits.npy")))

        # float64: the same (float32) weights cast to float64 and dtype=float64 compute the body in float64 (BatchNorm
        # included: it computes in its statistics' dtype); the pool and head are float32 by design (models.py), so
        # they are redone here in float64 from the last block's output.
        model = models.get_model(arch, 1000, dtype=jnp.float64)
        variables64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        last = f"stage3_block{model.stage_sizes[-1] - 1}"
        apply = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False, capture_intermediates=True,
                                                              mutable=["intermediates"]))
        _, state = apply(variables64, jnp.asarray(x, jnp.float64))
        features = np.asarray(state["intermediates"][last]["__call__"][0], np.float64).mean(axis=(1, 2))
        head = variables["params"]["head"]
        logits64 = features @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"], np.float64)
        _report(f"{arch} float64", logits64, np.load(os.path.join(directory, f"{arch}_logits64.npy")))


def _report(name: str, logits: np.ndarray, expected: np.ndarray) -> None:
    """Print how far `logits` are from torchvision's `expected`."""
    diff, scale = np.abs(logits - expected), np.abs(expected).max()
    # Element-wise relative differences blow up on logits near 0 (float32 rounding of a sum of large terms),
    # so they are also given over the logits of at least 1% of the largest.
    relative = diff / np.maximum(np.abs(expected), 1e-30)
    print(f"{name}: max |logit| {scale:.4g}; max abs diff {diff.max():.3g}; "
          f"max abs diff / max |logit| {diff.max() / scale:.3g}; "
          f"max element-wise relative diff {relative.max():.3g} (over |logit| >= 1% of max: "
          f"{relative[np.abs(expected) >= 0.01 * scale].max():.3g}); "
          f"allclose(rtol=1e-4, atol=1e-4 * max|logit|): "
          f"{np.allclose(logits, expected, rtol=1e-4, atol=1e-4 * scale)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("make", "check"))
    parser.add_argument("directory")
    args = parser.parse_args()
    make(args.directory) if args.step == "make" else check(args.directory)


if __name__ == "__main__":
    main()
