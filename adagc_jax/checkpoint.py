"""Orbax checkpoints of a run: device state + host state (epoch, trigger, history) + the observed-label table.

One checkpoint per completed epoch (every `checkpoint.every_epochs`), numbered by the epoch, the last
`checkpoint.keep` kept. Resume is automatic: a run started again in the same workdir continues from the latest
checkpoint. Saves are synchronous and orbax commits them atomically (a temporary folder renamed at the end), so a
run killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, workdir: str, keep: int):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)), enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def save(self, epoch: int, state, host: dict, tables: dict) -> None:
        """`host` must be JSON-serialisable; `tables` are numpy arrays (e.g. the observed labels)."""
        self._manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            host=ocp.args.JsonSave(host),
            tables=ocp.args.StandardSave({k: np.asarray(v) for k, v in tables.items()})), force=True)
        self._manager.wait_until_finished()

    def restore(self, epoch: int, state_like):
        """Restores into the structure, dtypes and shardings of `state_like` (a live or abstract TrainState)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), host=ocp.args.JsonRestore(),
            tables=ocp.args.StandardRestore()))
        return restored.state, restored.host, {k: np.asarray(v) for k, v in restored.tables.items()}

    def close(self) -> None:
        self._manager.close()
