"""The run's workdir: one run at a time, writable, and resumed only with a config that trains the same model.

Three independent checks, each raising errors.WorkdirError with one paragraph a user can act on:

* `WorkdirLock`: an exclusive `fcntl.flock` on `<workdir>/.lock`, held open for the life of the run. The kernel
  drops a flock when its process dies (kill -9 included), so a lock left by a dead run is never "held": staleness
  needs no PID probing or timeouts. The file itself only carries pid / host / start time / command for the
  message a second run prints; a non-empty file found by a run that does get the lock was left by a run that
  ended without releasing it (killed), which the new run reports in one line and takes over.
* `check_writable`: the workdir can be created and written (not under a regular file, not read-only).
* `compare_configs` / `check_resume`: the config saved with the checkpoints against the current one. Keys that
  cannot change the trained model may differ; `num_epochs` may change as long as it does not fall below the
  resumed epoch (a cosine schedule then differs from the resumed epoch on, which the notice says); anything else
  is refused unless the user forces it (`--config.resume=force`), in which case the caller records the list.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Mapping

from adagc_jax.errors import WorkdirError

LOCK_NAME = ".lock"

# Keys (exact, or a prefix ending in '.') whose value cannot change the trained model: logging, how often
# checkpoints are written and how many are kept, what is evaluated and how often (evaluation never feeds back
# into training: the trigger signals are training statistics), where the data live and how they are prepared
# (in-process or with Beam: the same examples), how a resume is done, how many devices share the work and the
# evaluation batch size.
MODEL_NEUTRAL_KEYS = (
    "log.", "checkpoint.every_epochs", "checkpoint.keep", "eval.test_every_epoch", "eval.train_diagnostics",
    "eval.curves_every_epochs", "eval.every_epochs", "eval.stall_epochs", "eval.select", "eval.device_cache_mb",
    "dataset.data_dir", "dataset.manual_dir", "dataset.beam_options", "resume", "runner", "num_devices",
    "eval_batch_size",
)

ABSENT = "<absent>"  # the value compare_configs shows for a key one config lacks


# -- one run per workdir ------------------------------------------------------------------------------------------

class WorkdirLock:
    """Exclusive lock of a workdir for one run. Use as a context manager, or `acquire()` ... `release()`.

    `acquire()` creates the workdir if needed and returns a one-line notice when it took over a lock file left by
    a run that was killed (None otherwise; also kept in `.notice`). A second process fails at once with a
    WorkdirError naming the PID, host and start time of the holder.

    Take it in the main process only (process 0 of a multi-host run): the other processes of the same run would
    otherwise collide with it on a shared filesystem. flock on NFS is emulated by POSIX locks (Linux >= 2.6.12),
    which the server releases when the client dies.
    """

    def __init__(self, workdir: str):
        self.workdir = os.path.abspath(os.path.expanduser(workdir))
        self.path = os.path.join(self.workdir, LOCK_NAME)
        self.notice: str | None = None
        self._fd: int | None = None

    def acquire(self) -> str | None:
        if self._fd is not None:
            return self.notice
        check_writable(self.workdir)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise WorkdirError(_unwritable_message(self.path, e).replace("workdir", "lock file", 1)) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirError(
                f"workdir {self.workdir} is in use by another run ({_describe(holder)}; lock file {self.path}). "
                "Two runs writing the same checkpoints would corrupt each other. Wait for that run to finish or "
                "stop it, or give this run another --workdir.") from None
        except OSError as e:
            os.close(fd)
            raise WorkdirError(
                f"cannot lock workdir {self.workdir}: {e.strerror or e} (lock file {self.path}). The filesystem may "
                "not support file locks; use a workdir on a local disk.") from e
        previous = _read_holder(fd)
        self.notice = None
        if previous:
            self.notice = (f"took over the lock of workdir {self.workdir} left by a run that is no longer running "
                           f"({_describe(previous)})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_record()).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self.notice

    def release(self) -> None:
        """Empties the lock file (a clean end: the next run prints no take-over notice) and drops the lock. The
        file is kept, not deleted: deleting it would let a run that opened it just before lock a file that a
        third run no longer sees."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # an unwritable lock file only costs a take-over notice next time
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": shlex.join(sys.argv)}


def _read_holder(fd: int) -> dict:
    """The holder's record, {} for an empty file; a file being written at this very moment reads as partial."""
    try:
        raw = os.pread(fd, 65536, 0)
    except OSError:
        return {}
    if not raw.strip():
        return {}
    try:
        record = json.loads(raw)
    except ValueError:
        return {"unreadable": raw[:200].decode("utf-8", "replace")}
    return record if isinstance(record, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "its details are being written just now"
    if "unreadable" in holder:
        return f"lock file content not readable: {holder['unreadable']!r}"
    text = f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
    if holder.get("command"):
        text += f", command: {holder['command']}"
    return text


# -- writable -----------------------------------------------------------------------------------------------------

def check_writable(workdir: str) -> str:
    """Creates `workdir` if needed and checks that a file can be written in it; returns its absolute path."""
    path = os.path.abspath(os.path.expanduser(workdir))
    blocker = _file_in_the_way(path)
    if blocker is not None:
        what = "is a file" if blocker == path else f"is under {blocker}, which is a file"
        raise WorkdirError(
            f"workdir {path} cannot be used: it {what}, not a folder. Give --workdir a folder path (it is created "
            "if missing), or move that file away.")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise WorkdirError(_unwritable_message(path, e)) from e
    return path


def _file_in_the_way(path: str) -> str | None:
    """The path itself or the deepest existing ancestor when that is not a folder (None otherwise)."""
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    return None if os.path.isdir(probe) else probe


def _unwritable_message(path: str, e: OSError) -> str:
    reason = {
        errno.EROFS: "it is on a read-only filesystem",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "the disk quota is exceeded",
    }.get(e.errno, e.strerror or str(e))
    where = f" at {e.filename}" if e.filename and os.path.abspath(str(e.filename)) != path else ""
    code = f" (errno {e.errno}{where})" if e.errno else where
    return (f"workdir {path} cannot be created or written: {reason}{code}. Give --workdir a folder you can write "
            "to, or fix its permissions or free space.")


# -- resuming with another config ---------------------------------------------------------------------------------

def flatten(config: Mapping, prefix: str = "") -> dict:
    """{dotted key: leaf}; tuples become lists (a config's JSON form has lists), empty mappings are leaves."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items") and len(value):
            flat.update(flatten(value, name + "."))
        elif hasattr(value, "items"):
            flat[name] = {}
        else:
            flat[name] = _plain(value)
    return flat


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def compare_configs(saved: Mapping, current: Mapping) -> list[tuple]:
    """[(dotted key, saved value, current value)] of every leaf that differs, sorted by key; a key present in one
    config only shows '<absent>' on the other side."""
    a, b = flatten(saved), flatten(current)
    diffs = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, ABSENT), b.get(key, ABSENT)
        # True == 1 in Python; a flag that became a number (or back) still counts as a change.
        if left != right or isinstance(left, bool) != isinstance(right, bool):
            diffs.append((key, left, right))
    return diffs


def is_model_neutral(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in MODEL_NEUTRAL_KEYS)


@dataclasses.dataclass
class ResumeCheck:
    """What differs between the saved and the current config, for the caller to print and record.

    neutral: differences in keys that cannot change the trained model (allowed).
    num_epochs: (saved, current) when num_epochs changed (allowed down to the resumed epoch), else None.
    forced: differences that change the model, accepted because the user forced the resume.
    notices: one line each, to print.
    """

    neutral: list
    num_epochs: tuple | None
    forced: list
    notices: list

    def history_record(self) -> dict:
        """A JSON-serialisable record of the changes that affect training, for the run's history (empty if none)."""
        record = {}
        if self.num_epochs is not None:
            record["num_epochs"] = list(self.num_epochs)
        if self.forced:
            record["forced"] = {k: [a, b] for k, a, b in self.forced}
        return record


def check_resume(saved: Mapping, current: Mapping, force: bool, *, resumed_epoch: int | None = None,
                 checkpoint_dir: str = "the workdir") -> ResumeCheck:
    """Refuses (WorkdirError) to resume a run with a config that trains a different model.

    `saved` is the config stored with the checkpoint, `current` the one of this run (both the JSON form of the
    config), `resumed_epoch` the epoch of the checkpoint to resume from.
    """
    diffs = compare_configs(saved, current)
    neutral = [d for d in diffs if is_model_neutral(d[0])]
    epochs = next((d for d in diffs if d[0] == "num_epochs"), None)
    model = [d for d in diffs if not is_model_neutral(d[0]) and d[0] != "num_epochs"]
    notices = []
    num_epochs = None
    if epochs is not None:
        old, new = epochs[1], epochs[2]
        if resumed_epoch is not None and isinstance(new, int) and new < resumed_epoch:
            raise WorkdirError(
                f"num_epochs={new} is below epoch {resumed_epoch}, which the checkpoint in {checkpoint_dir} has "
                f"already completed (the run was started with num_epochs={old}). To continue that run, give "
                f"num_epochs >= {resumed_epoch}; to train {new} epochs from scratch, use a new --workdir.")
        num_epochs = (old, new)
        notices.append(
            f"num_epochs changed from {old} to {new}: training continues to epoch {new}; the learning-rate "
            f"schedule (e.g. cosine) and anything else derived from num_epochs change from the resumed epoch on")
    if model and not force:
        listed = "; ".join(f"{k}: {_show(a)} (saved) -> {_show(b)} (now)" for k, a, b in model)
        raise WorkdirError(
            f"the checkpoints in {checkpoint_dir} were written by a run with a different config, and resuming with "
            f"this one would train a different model. Differing keys: {listed}. To continue that run, use the same "
            "config (the saved one is in the checkpoint and in the workdir's config.json); to start over with the "
            "new config, use a new --workdir; if you know these keys cannot change the trained model, resume "
            "anyway with --config.resume=force (the differences are recorded in the run's history).")
    if model:
        notices.append("resuming with a config that differs in " + ", ".join(k for k, _, _ in model)
                       + " (forced; recorded in the history)")
    if neutral:
        notices.append("config changes that do not affect the trained model: "
                       + ", ".join(f"{k} {_show(a)} -> {_show(b)}" for k, a, b in neutral))
    return ResumeCheck(neutral=neutral, num_epochs=num_epochs, forced=model if force else [], notices=notices)


def _show(value) -> str:
    return value if value == ABSENT else json.dumps(value)
