"""Single-positive label sampling (METHOD.md section 1, DATASETS.md sections 4 and 7).

The observed matrix is drawn ONCE per run from the seed and each example's id and then stored: it is never
re-drawn between epochs or on resume. Because every draw depends only on (seed, split, id), the table does not
depend on the order in which examples are read, on the number of hosts, or on the batch size.
"""

from __future__ import annotations

import numpy as np

NOISE_TYPES = ("random", "dominant")

_SPLIT_CODES = {"train": 1, "validation": 2, "test": 3}
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a cheap, well-mixed 64-bit hash, vectorised over uint64 arrays."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def uniform_from_ids(ids: np.ndarray, seed: int, split: str = "train") -> np.ndarray:
    """One uniform number in [0, 1) per id, a pure function of (seed, split, id)."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; valid splits: {sorted(_SPLIT_CODES)}")
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    key = _splitmix64(np.uint64(seed & 0xFFFFFFFF) * np.uint64(4) + np.uint64(_SPLIT_CODES[split]))
    bits = _splitmix64(ids ^ key)
    # The top 53 bits give a double in [0, 1) with full precision.
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def single_positive(labels, noise: str, seed: int, dominant=None, ids=None, split: str = "train") -> np.ndarray:
    """Observed one-hot matrix (N, C) float32 with one positive per image.

    Args:
      labels: (N, C) full multi-hot labels (hidden in training).
      noise: 'random' (the positive is uniform among the image's positives) or 'dominant' (the dataset's dominant
        label of each image, e.g. the largest-area class).
      seed: the run's seed.
      dominant: (N,) int class index per image, required for 'dominant'.
      ids: (N,) example ids (default 0..N-1); each row's draw depends on (seed, split, id) only.
    Rows without any positive stay all-zero (they carry no observed label).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (N, C), got shape {labels.shape}")
    n, c = labels.shape
    positive = labels > 0
    observed = np.zeros((n, c), np.float32)
    if noise == "random":
        ids = np.arange(n) if ids is None else np.asarray(ids)
        if ids.shape != (n,):
            raise ValueError(f"ids must have shape ({n},), got {ids.shape}")
        num_pos = positive.sum(axis=1)
        u = uniform_from_ids(ids, seed, split)
        # Index of the chosen positive among the row's positives, in ascending class order.
        choice = np.minimum(np.floor(u * num_pos).astype(np.int64), np.maximum(num_pos - 1, 0))
        rank = np.cumsum(positive, axis=1) - 1  # rank of each positive within its row
        chosen = positive & (rank == choice[:, None])
        observed[chosen] = 1.0
    elif noise == "dominant":
        if dominant is None:
            raise ValueError("noise='dominant' needs the dataset's dominant label of every image")
        dominant = np.asarray(dominant, dtype=np.int64)
        if dominant.shape != (n,):
            raise ValueError(f"dominant must have shape ({n},), got {dominant.shape}")
        if np.any((dominant < 0) | (dominant >= c)):
            raise ValueError(f"dominant labels must lie in [0, {c}); got range [{dominant.min()}, {dominant.max()}]")
        not_positive = ~positive[np.arange(n), dominant]
        if np.any(not_positive & positive.any(axis=1)):
            bad = np.flatnonzero(not_positive & positive.any(axis=1))[:5]
            raise ValueError(f"the dominant label of rows {bad.tolist()} is not one of their positives")
        has_pos = positive.any(axis=1)
        observed[np.flatnonzero(has_pos), dominant[has_pos]] = 1.0
    else:
        raise ValueError(f"unknown noise type {noise!r}; valid noise types: {list(NOISE_TYPES)}")
    return observed


def cole_single_positive(labels, seed: int = 1200) -> np.ndarray:
    """Cole et al.'s draw (BASELINES.md section 1), reproduced call for call for datasets in a fixed row order.

    RandomState(seed); per row: shuffle the ascending positive indices and observe the first, then shuffle the
    negative indices (observing none, but the shuffle still consumes random state).
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    observed = np.zeros(labels.shape, np.float32)
    for i, row in enumerate(labels):
        idx_pos = np.flatnonzero(row == 1)
        rng.shuffle(idx_pos)
        observed[i, idx_pos[:1]] = 1.0
        idx_neg = np.flatnonzero(row != 1)
        rng.shuffle(idx_neg)
    return observed
