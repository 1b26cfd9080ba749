"""Per-shard Mixup of images and calibrated targets: METHOD.md section 5.

    lam ~ Beta(alpha, alpha),   x~ = lam x + (1 - lam) x[perm]

with ONE lam per step and the same lam and perm for the images and for every
(B, C) target array (o~, yhat~ or q~; see gc.calibrated_targets). Under data
parallelism the permutation stays within each device's shard of the batch, so
Mixup needs no cross-device traffic.
"""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


def _mix_shard(perm_key, shard_index, lam, images, targets):
    """Mixes one shard's rows with a permutation of the same shard's rows."""
    # Folding in the shard index gives each device its own permutation from the
    # one replicated key; shard 0 (and the no-mesh case) share the same stream.
    key = jax.random.fold_in(perm_key, shard_index)
    perm = jax.random.permutation(key, images.shape[0])

    def mix(x):
        lam_x = lam.astype(x.dtype)
        return lam_x * x + (1 - lam_x) * x[perm]

    return mix(images), jax.tree.map(mix, targets)


def mixup(rng, images, targets, alpha, mesh=None):
    """Mixup of a batch (METHOD.md section 5).

    Args:
      rng: PRNG key, the same on every device (replicated).
      images: (B, ...) floating images.
      targets: dict of (B, C) floating arrays, each mixed like the images.
      alpha: static Python float, Beta(alpha, alpha) concentration. 0 disables
        Mixup: the inputs come back unchanged and lam = 1 exactly (no Beta draw).
      mesh: optional jax Mesh with an axis 'data' over which the batch is
        sharded. With more than one device the permutation is drawn within each
        device's shard (jax.shard_map); without a mesh, or with one device, it
        is a permutation of the whole batch.

    Returns:
      (mixed images, mixed targets, lam), lam a float32 scalar.
    """
    alpha = float(alpha)  # static: decides below whether to draw at all
    if alpha < 0:
        raise ValueError(f'mixup alpha must be >= 0 (0 disables Mixup), got {alpha}.')
    if mesh is not None and 'data' not in mesh.axis_names:
        raise ValueError(f"mixup shards over the mesh axis 'data'; mesh axes: {mesh.axis_names}.")
    for x in jax.tree.leaves((images, targets)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f'mixup needs floating arrays, got dtype {x.dtype}.')
    if alpha == 0:
        return images, targets, jnp.float32(1.0)

    lam_key, perm_key = jax.random.split(rng)
    # One lam per step, drawn outside the per-shard function so that every
    # device uses the same value.
    lam = jax.random.beta(lam_key, alpha, alpha, dtype=jnp.float32)

    if mesh is None or mesh.shape['data'] == 1:
        mixed_images, mixed_targets = _mix_shard(perm_key, 0, lam, images, targets)
        return mixed_images, mixed_targets, lam

    def per_shard(perm_key, lam, images, targets):
        return _mix_shard(perm_key, jax.lax.axis_index('data'), lam, images, targets)

    mixed_images, mixed_targets = jax.shard_map(
        per_shard, mesh=mesh,
        in_specs=(P(), P(), P('data'), P('data')),
        out_specs=(P('data'), P('data')))(perm_key, lam, images, targets)
    return mixed_images, mixed_targets, lam
