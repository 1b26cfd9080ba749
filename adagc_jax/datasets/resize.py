"""Bilinear resampling in numpy for the dataset builders (reBEN's 20 m and 60 m bands, UCM's few off-size tiles):
exact float64, no per-call TensorFlow op dispatch, the same half-pixel convention as tf.image.resize."""

from __future__ import annotations

import numpy as np


def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) matrix of 1-D bilinear interpolation with half-pixel centres.

    Source coordinate of output pixel i: (i + 0.5) * in / out - 0.5, clamped to the edge
    pixels. This is tf.image.resize(method='bilinear', antialias=False) and
    torch.nn.functional.interpolate(mode='bilinear', align_corners=False).
    """
    source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    source = np.clip(source, 0.0, in_size - 1)
    lower = np.floor(source).astype(np.int64)
    upper = np.minimum(lower + 1, in_size - 1)
    frac = source - lower
    weights = np.zeros((out_size, in_size))
    np.add.at(weights, (np.arange(out_size), lower), 1.0 - frac)
    np.add.at(weights, (np.arange(out_size), upper), frac)
    return weights


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (H, W) or (H, W, C) array, in float64 (no rounding).

    Separable: rows then columns, as two small matrix products (exact float64, no per-call
    TensorFlow op dispatch, identical to tf.image.resize bilinear up to float32 rounding).
    """
    rows = bilinear_weights(image.shape[0], height)
    cols = bilinear_weights(image.shape[1], width)
    resized_rows = np.tensordot(rows, image.astype(np.float64), axes=(1, 0))   # (h, W, ...)
    return np.moveaxis(np.tensordot(cols, resized_rows, axes=(1, 1)), 0, 1)   # (h, w, ...)


def round_to_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """Round half-to-even and clip into an integer dtype's range."""
    info = np.iinfo(dtype)
    return np.clip(np.rint(values), info.min, info.max).astype(dtype)
