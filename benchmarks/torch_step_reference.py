"""The `an` train step of configs/synthetic_memorization.py written in PyTorch eager: the reference issue 14 compares
the JAX step with (measures and prints; asserts nothing).

PyTorch is NOT a project requirement. Run this in a throwaway venv outside the repository (the CPU wheel; the
default wheel of some indexes is a CUDA build):

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchenv/bin/python benchmarks/torch_step_reference.py --threads 2 --steps 30 --repeats 3

and, alternately in the same sitting, the JAX step:

  JAX_PLATFORMS=cpu python benchmarks/step_cost.py --config configs/synthetic_memorization.py --methods an,adagc

The same step as the project's `an`: SmallCNN widths 32-64-128, two 3x3 convs (no bias) per stage, each followed by
BatchNorm (momentum 0.1 in PyTorch's convention = flax's 0.9, eps 1e-5) and ReLU, a 2x2/2 max-pool with ceil_mode
(flax's 'SAME'), global average pool, a Linear head (kernel ~ N(0, 0.01^2), zero bias); binary cross-entropy with
logits against the assume-negative targets (the observed positive is 1, every other class 0), mean over entries;
Adam at lr 1e-3; then the weight EMA (m_w = 0.99) of parameters and BatchNorm statistics into a teacher copy.
Batch 64, 48 px, 3 bands, 12 classes, one fixed random batch (no input pipeline), channels-last memory format
(faster here than NCHW; --channels_first to compare). Steps after 3 warm-up steps; the median of the repeats.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from torch import nn


def small_cnn(num_classes: int = 12, widths=(32, 64, 128), convs_per_stage: int = 2, bands: int = 3) -> nn.Module:
    layers, channels = [], bands
    for width in widths:
        for _ in range(convs_per_stage):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width, momentum=0.1,
                                                                                           eps=1e-5), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    head = nn.Linear(channels, num_classes)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--channels_first", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.contiguous_format if args.channels_first else torch.channels_last

    student = small_cnn().to(memory_format=fmt)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(args.batch, 3, args.size, args.size)).astype(np.float32))
    images = images.contiguous(memory_format=fmt)
    targets = torch.from_numpy(np.eye(12, dtype=np.float32)[rng.integers(0, 12, args.batch)])
    student_tensors = list(student.parameters()) + [b for b in student.buffers() if b.dtype.is_floating_point]
    teacher_tensors = list(teacher.parameters()) + [b for b in teacher.buffers() if b.dtype.is_floating_point]

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(student(images), targets)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(teacher_tensors, student_tensors, 1.0 - 0.99)  # t += (1 - m) (s - t)
        return loss

    for _ in range(3):
        step()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        loss.item()
        rates.append(args.steps * args.batch / (time.perf_counter() - start))
    print(f"torch {torch.__version__} an step, {args.threads} threads, batch {args.batch}, {args.size} px, "
          f"{'NCHW' if args.channels_first else 'channels_last'}: {statistics.median(rates):.1f} images/s "
          f"(repeats: {', '.join(f'{r:.1f}' for r in rates)})")


if __name__ == "__main__":
    main()
