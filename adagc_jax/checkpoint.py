"""Orbax checkpoints of a run: device state + host state (epoch, trigger, history) + the observed-label table.

One checkpoint per completed epoch (every `checkpoint.every_epochs`), numbered by the epoch, the last
`checkpoint.keep` kept. Resume is automatic: a run started again in the same workdir continues from the latest
checkpoint. Saves are synchronous and orbax commits them atomically (a temporary folder renamed at the end), so a
run killed while saving leaves the previous checkpoint intact.

What can go wrong with files is a user error (errors.WorkdirError), not a traceback:
  * a save that fails for lack of space, a read-only disk or permissions: the message names the folder, the free
    space and the fix; the half-written temporary folder is removed so that the space is given back;
  * a damaged checkpoint (e.g. a file cut short by a full disk or an interrupted copy): `restore_latest` falls
    back to the previous one and moves the damaged one aside (never deletes it); when none can be read, the
    message names the folder and how to start over.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import os
import re
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from adagc_jax.errors import WorkdirError

# TensorStore reports file errors as ValueError('RESOURCE_EXHAUSTED: ... No space left on device
# [os_error_code=\'28\']'), not OSError: the errno is read from the message.
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_ERRNO_BY_TEXT = (("No space left on device", errno.ENOSPC), ("Read-only file system", errno.EROFS),
                  ("Permission denied", errno.EACCES), ("Disk quota exceeded", errno.EDQUOT))
# Folder (inside the workdir) that damaged checkpoints are moved to.
DAMAGED_DIR = "damaged_checkpoints"


@dataclasses.dataclass
class Restored:
    """A restored checkpoint: its epoch, the device state, the host dict, the tables, and one line per damaged
    checkpoint that was skipped (to print)."""

    epoch: int
    state: object
    host: dict
    tables: dict
    notices: list


class Checkpointer:
    def __init__(self, workdir: str, keep: int | None):
        """`keep`: how many of the newest checkpoints orbax keeps; None keeps all (the `act` trigger's warm-up,
        which may roll back to any epoch; `prune` then trims them)."""
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:  # pylint: disable=broad-except  # only file errors are translated
            code = _io_errno(e)
            if code is None:
                raise
            raise WorkdirError(f"cannot create or read the checkpoint folder {self.directory}: {_reason(code)}. "
                               f"{_fix(code)}") from e

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def all_epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state, host: dict, tables: dict) -> None:
        """`host` must be JSON-serialisable; `tables` are numpy arrays (e.g. the observed labels). A write error
        (disk full, read-only, permissions) raises WorkdirError; the previous checkpoints are left as they were."""
        try:
            self._manager.save(epoch, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                host=ocp.args.JsonSave(host),
                tables=ocp.args.StandardSave({k: np.asarray(v) for k, v in tables.items()})), force=True)
            self._manager.wait_until_finished()
        except Exception as e:  # pylint: disable=broad-except  # only file errors are translated
            code = _io_errno(e)
            if code is None:
                raise
            self._remove_partial(epoch)
            raise WorkdirError(self._save_failed_message(epoch, code)) from e

    def restore(self, epoch: int, state_like):
        """Restores into the structure, dtypes and shardings of `state_like` (a live or abstract TrainState)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), host=ocp.args.JsonRestore(),
            tables=ocp.args.StandardRestore()))
        return restored.state, restored.host, {k: np.asarray(v) for k, v in restored.tables.items()}

    def read_host(self, epoch: int) -> dict:
        """The host dict of one checkpoint only (cheap: e.g. its config, to compare before restoring the state)."""
        return self._manager.restore(epoch, args=ocp.args.Composite(host=ocp.args.JsonRestore())).host

    def latest_host(self) -> tuple[int, dict] | None:
        """(epoch, host dict) of the newest checkpoint whose host part can be read; None when there is none."""
        for epoch in reversed(self.all_epochs()):
            try:
                return epoch, self.read_host(epoch)
            except Exception:  # pylint: disable=broad-except  # damaged: restore_latest reports it
                continue
        return None

    def restore_latest(self, state_like) -> Restored | None:
        """The newest checkpoint that can be read, None when there is no checkpoint.

        A checkpoint that fails to restore while an older one restores into the same `state_like` is damaged: it
        is moved to <workdir>/damaged_checkpoints/ (so that the resumed run can write that epoch again) and
        reported in `notices`. When none restores, WorkdirError: either all are damaged or the model changed,
        and the message says what to do in both cases; nothing is moved then.
        """
        epochs = list(reversed(self.all_epochs()))
        if not epochs:
            return None
        failures = []
        for epoch in epochs:
            try:
                state, host, tables = self.restore(epoch, state_like)
            except Exception as e:  # pylint: disable=broad-except  # TensorStore raises bare Exception/ValueError
                failures.append((epoch, e))
                continue
            notices = [self._set_aside(bad, err, epoch) for bad, err in failures]
            if failures:
                self._manager.reload()
            return Restored(epoch=epoch, state=state, host=host, tables=tables, notices=notices)
        listed = "; ".join(f"epoch {epoch}: {_first_line(err)}" for epoch, err in failures)
        raise WorkdirError(
            f"no checkpoint in {self.directory} can be read ({listed}). If the files were damaged (a full disk, an "
            f"interrupted copy), start over with a new --workdir, or delete {self.directory} to restart in this "
            "one. If the model's config changed since they were written, resume with the saved config (the "
            "workdir's config.json).")

    def delete_after(self, epoch: int) -> None:
        """Deletes every checkpoint of an epoch after `epoch` (a rollback discards them)."""
        for step in self.all_epochs():
            if step > epoch:
                self._manager.delete(step)

    def prune(self, keep: int) -> None:
        """Keeps the newest `keep` checkpoints only."""
        for step in self.all_epochs()[:-keep]:
            self._manager.delete(step)

    def close(self) -> None:
        self._manager.close()

    # -- helpers --------------------------------------------------------------------------------------------------
    def _step_dir(self, epoch: int) -> str:
        return os.path.join(self.directory, str(epoch))

    def _set_aside(self, epoch: int, err: Exception, resumed: int) -> str:
        """Moves a damaged checkpoint out of the checkpoint folder (process 0 only) and says so in one line."""
        source = self._step_dir(epoch)
        target = os.path.join(self.workdir, DAMAGED_DIR, str(epoch))
        suffix = 1
        while os.path.exists(target):
            target = os.path.join(self.workdir, DAMAGED_DIR, f"{epoch}_{suffix}")
            suffix += 1
        if jax.process_index() == 0:
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.move(source, target)
            except OSError as e:
                raise WorkdirError(
                    f"the checkpoint of epoch {epoch} in {self.directory} is damaged ({_first_line(err)}) and cannot "
                    f"be moved aside ({e.strerror or e}); delete {source} and run the same command again to resume "
                    f"from epoch {resumed}.") from e
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes("adagc_checkpoint_set_aside")
        return (f"the checkpoint of epoch {epoch} cannot be read ({_first_line(err)}); moved it to {target} and "
                f"resumed from epoch {resumed}")

    def _remove_partial(self, epoch: int) -> None:
        """Deletes the temporary folder of a save that failed (orbax would only clean it on the next start), so a
        full disk gets its space back at once."""
        if jax.process_index() != 0:
            return
        for path in glob.glob(os.path.join(self.directory, f"{epoch}.orbax-checkpoint-tmp*")):
            shutil.rmtree(path, ignore_errors=True)
        try:
            self._manager.reload()
        except Exception:  # pylint: disable=broad-except  # only refreshes the cached step list
            pass

    def _save_failed_message(self, epoch: int, code: int) -> str:
        kept = self.all_epochs()
        if kept:
            previous = (f"The previous checkpoint (epoch {kept[-1]}) is intact: run the same command again to "
                        f"resume from it.")
        else:
            previous = "No checkpoint had been written yet: the same command starts the run again."
        return (f"cannot write the checkpoint of epoch {epoch} to {self.directory}: {_reason(code)}"
                f"{_free_space(self.directory)}. {_fix(code)} {previous}")


def _io_errno(e: BaseException) -> int | None:
    """The errno of a file error anywhere in the exception's chain (OSError, or TensorStore's message); None when
    the exception is not a file error."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e.errno
        match = _OS_ERROR_CODE.search(str(e))
        if match:
            return int(match.group(1))
        for text, code in _ERRNO_BY_TEXT:
            if text in str(e):
                return code
        e = e.__cause__ or e.__context__
    return None


def _reason(code: int) -> str:
    return {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the filesystem is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted"}.get(code, f"{os.strerror(code)} (errno {code})")


def _fix(code: int) -> str:
    if code in (errno.ENOSPC, errno.EDQUOT):
        return ("Free disk space, lower --config.checkpoint.keep, or move the run to a --workdir on a larger disk "
                "(copy the workdir to resume there).")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "Make the workdir writable, or use a --workdir on a writable disk (copy the workdir to resume there)."
    return "Check the disk and the workdir, or use another --workdir."


def _free_space(path: str) -> str:
    probe = path
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return ""
    return f" ({free / 2**20:.1f} MiB free there)"


def _first_line(err: BaseException) -> str:
    """The first line of the innermost cause (TensorStore's outer message is a multi-line spec dump)."""
    inner, seen = err, {id(err)}
    while True:
        nxt = inner.__cause__ or (None if inner.__suppress_context__ else inner.__context__)
        if nxt is None or id(nxt) in seen:
            break
        inner = nxt
        seen.add(id(inner))
    text = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
    return text if len(text) <= 300 else text[:297] + "..."
