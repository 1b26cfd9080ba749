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

from adagc_jax.errors import ConfigError
from adagc_jax.errors import DeviceError as DeviceConfigError

DATA_AXIS = "data"
DEFAULT_HEARTBEAT_TIMEOUT_S = 30


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
                           ) -> None:
    """Joins this process to a multi-process job (`jax.distributed.initialize`).

    With no address/count/id (plain --multihost) JAX detects the cluster itself (Cloud TPU, SLURM, Open MPI,
    Kubernetes); a manual cluster (e.g. N processes on one machine) gives all three. `heartbeat_timeout_s` bounds how
    long the coordination service waits for a silent process before it fails the job (JAX's default is 100 s).
    On CPU, JAX 0.10's default collectives (gloo) make the processes one job: no other setting is needed.
    """
    manual = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in manual) and any(v is None for v in manual):
        raise ConfigError("a manual multi-process job needs all of --coordinator_address=HOST:PORT, "
                          "--num_processes=N and --process_id=I (0..N-1) on every process; leave all three out to "
                          "let JAX detect the cluster (--multihost on Cloud TPU, SLURM, Kubernetes).")
    if coordinator_address is not None:
        host, _, port = coordinator_address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--coordinator_address={coordinator_address!r} must be HOST:PORT, e.g. "
                              "localhost:12355 (the address of process 0, reachable from every process).")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ConfigError(f"--process_id={process_id} must be in 0..{num_processes - 1} for "
                              f"--num_processes={num_processes} (each process of the job gets its own id).")
    if heartbeat_timeout_s < 1:
        raise ConfigError(f"--heartbeat_timeout={heartbeat_timeout_s} must be at least 1 second.")
    # The shutdown timeout stays JAX's (5 min): at a normal end the other processes wait there for process 0, which
    # writes the plots and results.json after the last collective.
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=int(heartbeat_timeout_s))


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
    if jax.process_count() > 1:
        # Process 0's devices first, then process 1's...: every process feeds rows [i * local, (i + 1) * local) of
        # the global batch (input_pipeline) and process_allgather concatenates in the same order.
        devices = sorted(devices, key=lambda d: (d.process_index, d.id))
        return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))
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
            f"({_describe_devices(mesh)}); it is the global batch, split evenly over every device of every "
            f"process: choose a multiple of {num_devices}, "
            f"e.g. --config.{what}={max(num_devices, global_batch_size // num_devices * num_devices)}")
    return global_batch_size // jax.process_count()


def _describe_devices(mesh: Mesh) -> str:
    platform = mesh.devices.flat[0].platform
    if jax.process_count() == 1:
        return platform
    per_process = mesh.devices.size // jax.process_count()
    return f"{jax.process_count()} processes x {per_process} {platform} device(s)"


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


# What a collective (gloo on CPU) or a coordination-service call raises when another process of the job is gone.
_LOST_PEER_SIGNS = ("Gloo", "Connection closed by peer", "Connection reset by peer", "heartbeat", "Barrier failed",
                    "coordination service")


def lost_peer(error: BaseException) -> str | None:
    """Which process(es) `error` says this multi-process job lost, e.g. 'process 1'; None for any other error.

    The collective's message names a peer's socket, not its process id; with two processes the lost one is the
    other one, with more the message names the candidates.
    """
    if jax.process_count() == 1:
        return None
    text, seen = "", set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text += f" {error}"
        error = error.__cause__ or error.__context__
    if not any(sign in text for sign in _LOST_PEER_SIGNS):
        return None
    others = [i for i in range(jax.process_count()) if i != jax.process_index()]
    return f"process {others[0]}" if len(others) == 1 else "one of processes " + ", ".join(map(str, others))
