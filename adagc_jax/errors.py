"""User errors: one hierarchy, one exit code per kind, printed by `cli.run` as one paragraph without a traceback.

A user error is something the person running the code can fix (a config value, a dataset file, a workdir, the
devices); its message says what went wrong, which file or key, and how to fix it. Anything else is a bug and keeps
its traceback. `--debug` (or ADAGC_DEBUG=1) shows the traceback of user errors too.

Exit codes (documented in the README):
  2 config, 3 dataset, 4 training stopped (non-finite loss), 5 workdir / checkpoint / disk, 6 devices,
  130 interrupted (Ctrl-C; the last checkpoint is kept and the same command resumes).
"""

from __future__ import annotations

import threading


class UserError(Exception):
    """Base of every error a user can fix; `label` and `exit_code` are what the command line prints and returns."""

    label, exit_code = "error", 1

    def __init_subclass__(cls, label: str = "", exit_code: int = 0, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.label, cls.exit_code = label or cls.label, exit_code or cls.exit_code


# One line per kind: what it is (docstring), the label printed before the message, and the exit code.
class ConfigError(UserError, ValueError, label="config error", exit_code=2):
    """A config that cannot run; the message names the key and the valid choices or range."""


class DatasetError(UserError, label="dataset error", exit_code=3):
    """A dataset that cannot be found, prepared or read; the message names the file and what to do."""


class NonFiniteLossError(UserError, label="training stopped", exit_code=4):
    """The loss became NaN or inf; the run stopped and kept its last good checkpoint."""


class WorkdirError(UserError, label="workdir error", exit_code=5):
    """The workdir cannot be used: held by another run, written by another config, unwritable, full or damaged."""


class DeviceError(UserError, ValueError, label="device error", exit_code=6):
    """Devices or processes that cannot do the work as configured: a batch size they do not divide, or a process of
    a multi-process job that was lost (the others stop, the last checkpoint is kept)."""


class Interrupted(UserError, label="interrupted", exit_code=130):
    """Ctrl-C (SIGINT) or SIGTERM: the run stopped; the message says which checkpoint a re-run resumes from."""


# Python raises KeyboardInterrupt wherever the main thread happens to be; inside a weakref callback or a __del__ it
# is printed as "Exception ignored" and lost, and the run would go on to the end (seen in CI). The handler therefore
# also records the request, and the training loop checks it after every step.
_stop_requested = threading.Event()


def stop_on_signal(signum, frame) -> None:
    """SIGINT/SIGTERM handler: records the request, then interrupts whatever runs now."""
    _stop_requested.set()
    raise KeyboardInterrupt


def raise_if_stop_requested() -> None:
    """Called between steps and epochs: a stop request that an ignored-exception context swallowed still stops."""
    if _stop_requested.is_set():
        raise KeyboardInterrupt


def clear_stop_request() -> None:
    _stop_requested.clear()
