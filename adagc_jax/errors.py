"""User errors: one hierarchy, one exit code per kind, printed by `cli.run` as one paragraph without a traceback.

A user error is something the person running the code can fix (a config value, a dataset file, a workdir, the
devices); its message says what went wrong, which file or key, and how to fix it. Anything else is a bug and keeps
its traceback. `--debug` (or ADAGC_DEBUG=1) shows the traceback of user errors too.

Exit codes (documented in the README):
  2 config, 3 dataset, 4 training stopped (non-finite loss), 5 workdir / checkpoint / disk, 6 devices,
  130 interrupted (Ctrl-C; the last checkpoint is kept and the same command resumes).
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error a user can fix; `label` and `exit_code` are what the command line prints and returns."""

    label, exit_code = "error", 1


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message names the key and the valid choices or range."""

    label, exit_code = "config error", 2


class DatasetError(UserError):
    """A dataset that cannot be found, prepared or read; the message names the file and what to do."""

    label, exit_code = "dataset error", 3


class NonFiniteLossError(UserError):
    """The loss became NaN or inf; the run stopped and kept its last good checkpoint."""

    label, exit_code = "training stopped", 4


class WorkdirError(UserError):
    """The workdir cannot be used: held by another run, written by another config, unwritable, full or damaged."""

    label, exit_code = "workdir error", 5


class DeviceError(UserError, ValueError):
    """Devices or processes that cannot split the work as configured (e.g. a batch size they do not divide)."""

    label, exit_code = "device error", 6


class Interrupted(UserError):
    """Ctrl-C (SIGINT) or SIGTERM: the run stopped; the message says which checkpoint a re-run resumes from."""

    label, exit_code = "interrupted", 130
