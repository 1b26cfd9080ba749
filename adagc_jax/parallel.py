"""Devices, mesh and shardings: the only module that knows about devices (ARCHITECTURE.md style rule 5).

Data parallelism is `jax.jit` over a 1-D mesh with axis 'data': the train state is replicated, every batch is
one global array sharded along its first axis. Reductions over the batch (the loss mean, BatchNorm statistics,
scatters into the replicated memory bank) are therefore global: XLA inserts the collectives, so N devices compute
what one device computes on the same global batch. Multi-host runs use the same code path: every process feeds its
own slice of the global batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from adagc_jax.errors import DeviceError as DeviceConfigError

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh ('data',) over all (or the first `num_devices`) devices.

    Auto axis types: sharding propagates through the step without per-op annotations (Explicit axes would need an
    out_sharding on every scatter).
    """
    devices = jax.devices()
    if num_devices is not None:
        if num_devices > len(devices):
            raise DeviceConfigError(f"asked for {num_devices} devices but only {len(devices)} are visible")
        devices = devices[:num_devices]
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = "batch_size") -> int:
    """Returns the per-process batch size; raises a clear error when the devices cannot split the batch."""
    num_devices = mesh.devices.size
    if global_batch_size <= 0 or global_batch_size % num_devices:
        raise DeviceConfigError(
            f"{what}={global_batch_size} is not divisible by the {num_devices} devices of the mesh "
            f"({jax.devices()[0].platform}); choose a multiple of {num_devices}, "
            f"e.g. --config.{what}={max(num_devices, global_batch_size // num_devices * num_devices)}")
    return global_batch_size // jax.process_count()


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Host numpy (this process's slice) -> global jax.Arrays sharded along 'data'. An explicit transfer."""
    sharding = data_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def replicate(tree, mesh: Mesh):
    """Places a pytree (host or device) replicated on every device of the mesh. An explicit transfer."""
    return jax.device_put(tree, replicated(mesh))


def to_host(tree):
    """Global arrays -> numpy on every process (all-gather across processes when there are several)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def gather_host(tree):
    """This process's numpy slices -> the concatenation over all processes (a no-op with one process)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return tree


def is_main_process() -> bool:
    return jax.process_index() == 0
