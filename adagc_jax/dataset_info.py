"""DatasetInfo: what the model and the step need to know about a dataset (shapes, classes, split sizes, band
statistics). Its own module, free of TensorFlow, so that the core library and the benchmarks can describe data
without importing the input pipeline; input_pipeline re-exports it."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    class_names: tuple
    num_examples: dict  # split -> N
    image_shape: tuple  # (H, W, bands) as fed to the model
    mean: np.ndarray
    std: np.ndarray
