"""Tests of adagc_jax.mixup (METHOD.md section 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from adagc_jax.mixup import mixup

B, C = 8, 5


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.normal(size=(B, 4, 4, 3)).astype(np.float32))
    # 'id' is a one-hot of the row number: its mixed version reveals lam and perm.
    targets = {'id': jnp.eye(B, dtype=jnp.float32),
               'target': jnp.asarray(rng.uniform(size=(B, C)).astype(np.float32))}
    return images, targets


def _recover_perm(mixed_id, lam):
    # mixed_id[i] = lam e_i + (1 - lam) e_perm(i), also when perm(i) == i.
    return np.argmax(np.asarray(mixed_id) - lam * np.eye(len(mixed_id)), axis=1)


def test_alpha_zero_is_identity_with_lam_exactly_one():
    images, targets = _batch()
    jitted = jax.jit(mixup, static_argnames='alpha')
    for fn in (mixup, jitted):
        mixed_images, mixed_targets, lam = fn(jax.random.key(0), images, targets, alpha=0.0)
        assert float(lam) == 1.0
        np.testing.assert_array_equal(mixed_images, images)
        jax.tree.map(np.testing.assert_array_equal, mixed_targets, targets)


@pytest.fixture(scope='module')
def mixed_over_many_keys():
    """Mixup of one batch under 4000 keys, alpha = 1, compiled once for both tests below."""
    images, targets = _batch()
    keys = jax.random.split(jax.random.key(7), 4000)
    mixed = jax.jit(jax.vmap(lambda key: mixup(key, images, targets, alpha=1.0)))(keys)
    return images, targets, jax.tree.map(np.asarray, mixed)


def test_images_and_targets_share_lam_and_perm(mixed_over_many_keys):
    images, targets, (all_images, all_targets, all_lams) = mixed_over_many_keys
    images, target = np.asarray(images), np.asarray(targets['target'])
    for k in range(20):
        lam = float(all_lams[k])
        assert 0.0 < lam < 1.0  # a real mix, so the checks below are not vacuous
        perm = _recover_perm(all_targets['id'][k], lam)
        assert sorted(perm) == list(range(B))  # a permutation of the batch
        np.testing.assert_allclose(all_targets['id'][k], lam * np.eye(B) + (1 - lam) * np.eye(B)[perm],
                                   atol=1e-6)
        np.testing.assert_allclose(all_images[k], lam * images + (1 - lam) * images[perm], atol=1e-6)
        np.testing.assert_allclose(all_targets['target'][k], lam * target + (1 - lam) * target[perm],
                                   atol=1e-6)
    # Different keys, different permutations.
    perms = {tuple(_recover_perm(all_targets['id'][k], float(all_lams[k]))) for k in range(20)}
    assert len(perms) > 10


def test_lam_mean_for_alpha_one_is_one_half(mixed_over_many_keys):
    lams = mixed_over_many_keys[2][2]
    assert lams.shape == (4000,)
    assert np.all((lams >= 0) & (lams <= 1))
    # Beta(1, 1) is uniform: mean 1/2 (std of the mean 0.0046), variance 1/12.
    assert abs(lams.mean() - 0.5) < 0.02
    assert abs(lams.var() - 1 / 12) < 0.01


def test_invalid_arguments():
    images, targets = _batch()
    with pytest.raises(ValueError, match='>= 0'):
        mixup(jax.random.key(0), images, targets, alpha=-1.0)
    with pytest.raises(ValueError, match='floating'):
        mixup(jax.random.key(0), images.astype(jnp.int32), targets, alpha=1.0)


@pytest.mark.parametrize('axis_type', ['Auto', 'Explicit'])
def test_mixup_stays_within_each_device_shard(axis_type):
    """On 4 devices (forced in conftest), Mixup mixes rows of the same device shard only, with one lam for all."""
    assert jax.device_count() == 4, jax.devices()
    b, per_shard = 16, 4
    shard_of = np.arange(b) // per_shard
    mesh = jax.make_mesh((4,), ('data',), axis_types=(getattr(AxisType, axis_type),))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    step = jax.jit(lambda key, x, t: mixup(key, x, t, alpha=1.0, mesh=mesh),
                   in_shardings=(replicated, sharded, sharded), out_shardings=(sharded, sharded, replicated))
    # Images and the 'id' target are both one-hots of the row number.
    eye = np.eye(b, dtype=np.float32)
    for seed in range(3):
        x, t, lam = step(jax.random.key(seed), jax.device_put(eye, sharded), {'id': jax.device_put(eye, sharded)})
        lam, mixed_images, mixed_id = float(lam), np.asarray(x), np.asarray(t['id'])
        assert 0.0 < lam < 1.0
        np.testing.assert_array_equal(mixed_images, mixed_id)  # same lam, same perm
        # Convex combinations: nonnegative weights summing to 1 ...
        assert np.all(mixed_images >= 0)
        np.testing.assert_allclose(mixed_images.sum(axis=1), 1.0, atol=1e-6)
        # ... of rows of the SAME shard only.
        for i in range(b):
            assert np.all(shard_of[np.nonzero(mixed_images[i])[0]] == shard_of[i]), (axis_type, i)
        # One lam on every device: each row keeps weight lam on itself.
        perm = _recover_perm(mixed_id, lam)
        np.testing.assert_allclose(mixed_id, lam * np.eye(b) + (1 - lam) * np.eye(b)[perm], atol=1e-6)
        # Each device draws its own permutation (the device index is folded into the key).
        local_perms = [tuple(perm[s * per_shard:(s + 1) * per_shard] - s * per_shard) for s in range(b // per_shard)]
        assert len(set(local_perms)) > 1, local_perms
