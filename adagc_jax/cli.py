"""What launch.py runs: flag parsing that reports unknown config keys clearly, and the one error path: a user error
(adagc_jax.errors) is printed as one paragraph with its exit code, without a traceback unless --debug or
ADAGC_DEBUG=1 asks for it; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import traceback

from absl import flags

from adagc_jax import config_utils, errors
from adagc_jax.errors import ConfigError, DeviceError, Interrupted, UserError


def parse_flags(argv):
    """absl's parser, preceded by a check of every --config.<key> against the config file's keys."""
    try:
        config_utils.check_overrides(argv[1:])
    except UserError as e:
        sys.exit(report(e, debug=_debug_requested(argv)))
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"flag error: {e}\nUsage: python launch.py --config configs/<file>.py --workdir <dir> "
              "[--config.<key>=<value> ...]", file=sys.stderr)
        sys.exit(2)


def _debug_requested(argv) -> bool:
    return "--debug" in argv or os.environ.get("ADAGC_DEBUG", "") not in ("", "0")


def report(error: UserError, debug: bool = False) -> int:
    """Prints a user error (with its traceback when debugging) and returns its exit code."""
    if debug:
        traceback.print_exception(error)
    print(f"\n{error.label}: {error}", file=sys.stderr)
    return error.exit_code


# Lines TensorFlow's C++ core prints while it loads, whatever TF_CPP_MIN_LOG_LEVEL says (they are logged before any
# setting applies; no environment variable silences them, and turning oneDNN off to hide one would change results).
TF_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions", "To enable the following instructions:",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory", "Unable to register cuBLAS factory",
    "Could not find cuda drivers", "TF-TRT Warning: Could not find TensorRT",
)


@contextlib.contextmanager
def tf_startup_quiet():
    """Captures file descriptor 2 while TensorFlow is first imported and writes back every line that is not known
    start-up noise (so real errors still show)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(noise in line for noise in TF_STARTUP_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


class _CheckpointFailureEcho(logging.Filter):
    """Drops what orbax and asyncio log when a checkpoint write or read fails (a full disk, a damaged file): the
    traceback of every orbax thread and of every task the failure abandoned, 40-200 lines that bury the one
    paragraph the run prints for the same failure (checkpoint.py turns it into a WorkdirError or a fallback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "asyncio" or f"{os.sep}orbax{os.sep}" in record.pathname)


def _quiet_unraisable(unraisable) -> None:
    """Exceptions Python can only print ("Exception ignored in ..."), less two that carry nothing for the user: Ctrl-C
    landing in a finaliser (errors.stop_on_signal has recorded it; the loop stops after the current step) and
    tensorstore callbacks reaching orbax's event loop after a failed checkpoint read closed it."""
    error = unraisable.exc_value
    if isinstance(error, KeyboardInterrupt) or (isinstance(error, RuntimeError)
                                                and str(error) == "Event loop is closed"):
        return
    sys.__unraisablehook__(unraisable)


def quiet_library_echoes() -> None:
    """What a run without --debug leaves out of stderr (see the two above)."""
    for name in ("absl", "asyncio"):
        logging.getLogger(name).addFilter(_CheckpointFailureEcho())
    sys.unraisablehook = _quiet_unraisable


MODES = ("train", "predict", "eval")
MANUAL_CLUSTER_KEYS = ("coordinator_address", "num_processes", "process_id")


def run(config, workdir: str, multihost: bool = False, debug: bool = False, mode: str = "train",
        options: dict | None = None, cluster: dict | None = None) -> int:
    """Returns the exit code of one command:

    mode 'train': trains and evaluates one run (config.runner='train') or a sweep of runs ('sweep');
    mode 'predict': predicts new images with the finished run in `workdir` (options: input, output, threshold,
      top_k; adagc_jax/predict.py);
    mode 'eval': re-evaluates the finished run in `workdir` on a split (options: split) and prints the metrics.
    For 'predict' and 'eval' the config is optional: the run's own config.json is used.
    `cluster`: a manual multi-process job (coordinator_address, num_processes, process_id, heartbeat_timeout_s;
    parallel.initialize_distributed); `multihost` alone lets JAX detect the cluster.
    """
    from absl import logging

    options = options or {}
    with tf_startup_quiet():
        from adagc_jax import parallel, predict, train  # after flag parsing: importing jax/TF is slow

    # Orbax and TFDS log every save/read at INFO through absl, and TFDS repeats a deprecation WARNING of its own
    # internals for every feature; the run prints its own one line per epoch and raises real problems as errors.
    logging.set_verbosity(logging.ERROR)
    # Ctrl-C, and a scheduler's SIGTERM alike, stop the run: the last checkpoint is kept and the message says so.
    errors.clear_stop_request()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, errors.stop_on_signal)
    debug = debug or _debug_requested([])
    if not debug:
        quiet_library_echoes()
    try:
        cluster = dict(cluster or {})
        if multihost or any(cluster.get(k) is not None for k in MANUAL_CLUSTER_KEYS):
            parallel.initialize_distributed(**cluster)
        config_utils.lookup(MODES, mode, "--mode")
        if mode == "predict":
            predict.predict_command(workdir, config, options.get("input"), options.get("output"),
                                    options.get("threshold", 0.5), options.get("top_k", 0))
        elif mode == "eval":
            predict.eval_command(workdir, config, options.get("split", "test"))
        elif config is None:
            raise ConfigError("--mode=train needs --config (configs/<file>.py[:args]); only --mode=predict and "
                              "--mode=eval read the run's own config from --workdir.")
        elif config.runner == "sweep":  # configs/benchmark.py: every selected method and seed, then one table
            from adagc_jax import sweep

            sweep.run(config, workdir)
        else:
            config_utils.lookup(("train", "sweep"), config.runner, "runner")
            train.train_and_evaluate(config, workdir)
    except KeyboardInterrupt:
        if mode != "train":  # nothing of the run changes; a half-written CSV is removed
            return report(Interrupted(f"--mode={mode} stopped; the run in {workdir} is unchanged."), debug)
        return report(Interrupted(_interrupted_message(workdir)), debug)
    except UserError as e:
        return report(e, debug)
    except Exception as e:  # pylint: disable=broad-except  # only a lost peer is a user error; a bug re-raises
        lost = parallel.lost_peer(e)
        if lost is None:
            raise
        code = report(DeviceError(_lost_peer_message(workdir, lost, e)), debug)
        # Without this the interpreter's exit would wait in JAX's coordination-service shutdown for the lost
        # process (until its heartbeat timeout, then an abort): leave at once with the user error's code.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return 0


def _last_checkpoint(workdir: str) -> tuple[int, str] | None:
    """(epoch, folder) of the run's newest checkpoint; None before the first one."""
    checkpoints = os.path.join(os.path.abspath(workdir), "checkpoints")
    epochs = sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit()) if os.path.isdir(checkpoints) else []
    return (epochs[-1], checkpoints) if epochs else None


def _interrupted_message(workdir: str) -> str:
    last = _last_checkpoint(workdir)
    if last is None:
        return (f"the run in {workdir} stopped before its first checkpoint; the same command starts it again "
                "from the beginning.")
    return (f"the run in {workdir} stopped; its last checkpoint is epoch {last[0]} ({last[1]}). Run the same "
            "command again to resume from there (the resumed run finishes with the same results).")


def _lost_peer_message(workdir: str, lost: str, error: Exception) -> str:
    import jax

    last = _last_checkpoint(workdir)
    kept = (f"the last checkpoint, epoch {last[0]} ({last[1]}), is kept" if last else
            "no checkpoint had been written yet")
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return (f"{lost} of this {jax.process_count()}-process job stopped or cannot be reached ({first_line}); "
            f"process {jax.process_index()} stops too. In {workdir} {kept}: start all {jax.process_count()} "
            "processes again with the same commands to resume from it.")
