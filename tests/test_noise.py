"""Single-positive sampling: distribution, determinism per (seed, id), dominant, Cole et al.'s exact draw."""

import numpy as np
import pytest

from adagc_jax import noise


def _labels(n=2000, c=8, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.4).astype(np.float32)
    y[np.arange(n), rng.integers(0, c, n)] = 1.0  # at least one positive per row
    return y


def test_random_picks_exactly_one_positive_per_row():
    y = _labels()
    o = noise.single_positive(y, "random", seed=3)
    assert o.dtype == np.float32 and o.shape == y.shape
    np.testing.assert_array_equal(o.sum(1), 1.0)
    assert np.all(y[o == 1] == 1)


def test_random_is_uniform_among_positives():
    # Rows with exactly 4 positives at fixed columns: each must be chosen ~1/4 of the time.
    n = 8000
    y = np.zeros((n, 6), np.float32)
    y[:, [0, 2, 3, 5]] = 1
    o = noise.single_positive(y, "random", seed=11)
    freq = o.mean(0)[[0, 2, 3, 5]]
    # Binomial std at p=.25, n=8000 is 0.0048: 4 sigma.
    np.testing.assert_allclose(freq, 0.25, atol=0.02)


def test_draw_depends_only_on_seed_and_id():
    y = _labels(500)
    ids = np.arange(500)
    o = noise.single_positive(y, "random", seed=5, ids=ids)
    perm = np.random.default_rng(1).permutation(500)
    o_perm = noise.single_positive(y[perm], "random", seed=5, ids=ids[perm])
    np.testing.assert_array_equal(o_perm, o[perm])  # order of reading does not matter
    np.testing.assert_array_equal(noise.single_positive(y, "random", seed=5), o)  # identical on a rerun
    assert not np.array_equal(noise.single_positive(y, "random", seed=6), o)  # the seed matters


def test_rows_without_positives_stay_empty():
    y = _labels(10)
    y[3] = 0
    o = noise.single_positive(y, "random", seed=0)
    assert o[3].sum() == 0 and o.sum() == 9


def test_dominant():
    y = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], np.float32)
    o = noise.single_positive(y, "dominant", seed=0, dominant=np.array([1, 2, 0]))
    np.testing.assert_array_equal(o, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="not one of their positives"):
        noise.single_positive(y, "dominant", seed=0, dominant=np.array([2, 2, 0]))
    with pytest.raises(ValueError, match="needs the dataset's dominant"):
        noise.single_positive(y, "dominant", seed=0)


def test_unknown_noise_lists_valid():
    with pytest.raises(ValueError, match="random.*dominant"):
        noise.single_positive(_labels(4), "uniform", seed=0)


def test_cole_protocol_vector():
    # BASELINES.md section 10 "Protocol": RandomState(1200) observes columns 0, 1, 4, 5, 5.
    y = np.array([[1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 1],
                  [1, 0, 0, 0, 0, 1]])
    o = noise.cole_single_positive(y, seed=1200)
    np.testing.assert_array_equal(o.argmax(1), [0, 1, 4, 5, 5])
    np.testing.assert_array_equal(o.sum(1), 1)
