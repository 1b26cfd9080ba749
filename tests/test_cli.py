"""launch.py as a hostile user meets it: every mistake is one clear paragraph with its exit code (README table), no
traceback unless --debug; a workdir belongs to one run (a second process and a changed config are refused fast and
touch nothing); Ctrl-C says which checkpoint a re-run resumes from; values wrong from the start fail before any
work."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, mounted_tmpfs, run_python, tiny_config, tiny_flags

from adagc_jax import cli, config_checks, config_utils, errors, train
from adagc_jax.errors import ConfigError

LAUNCH = [os.path.join(REPO, "launch.py"), "--config", os.path.join(REPO, "configs", "default.py")]


def _launch(workdir, *flags):
    return run_python(LAUNCH + ["--workdir", str(workdir), *flags])


def _popen(workdir, flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable] + LAUNCH + ["--workdir", str(workdir), *flags], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, seconds=600):
    deadline = time.time() + seconds
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


@pytest.mark.parametrize("key,value,match", [
    ("eval.every_epochs", 0, r"eval.every_epochs=0 is out of range: it must be an integer in \[1, inf\]"),
    ("checkpoint.every_epochs", 0, "checkpoint.every_epochs=0 is out of range"),
    ("optimizer.learning_rate", 0.0, r"must be a number in \(0, 10\]"),
    ("optimizer.learning_rate", -1e-3, "optimizer.learning_rate=-0.001 is out of range"),
    ("optimizer.learning_rate", 1e6, "optimizer.learning_rate=1000000.0 is out of range"),
    ("optimizer.learning_rate", float("nan"), "optimizer.learning_rate=nan is not a finite number"),
    ("optimizer.learning_rate", float("inf"), "optimizer.learning_rate=inf is not a finite number"),
    ("ema.m_p", 1.5, "ema.m_p=1.5 is out of range"),
    ("gc.mode", "soft", r"gc.mode='soft' is not valid; valid values: \['expected', 'hard', 'reweight'\]"),
    ("trigger.rule", "slow", "trigger.rule='slow' is not valid"),
    ("num_devices", 0, "num_devices=0 is out of range"),
    ("model.widths", (8, 0), "model.widths"),
])
def test_values_wrong_from_the_start_fail_before_any_work(tmp_path, key, value, match):
    config = tiny_config(tmp_path)
    config_utils.set_keys(config, {key: value})
    with pytest.raises(ConfigError, match=match):
        config_checks.validate_config(config)


def test_every_range_key_exists_in_the_default_config():
    """The range table names real keys (a typo there would silently check nothing)."""
    keys = set(config_utils.flat_keys(tiny_config("/tmp")))
    assert set(config_checks.RANGES) - keys == set()
    assert set(config_checks.CHOICES) - keys == set()


def test_cli_config_errors_are_one_paragraph_without_traceback(tmp_path):
    proc = _launch(tmp_path / "w", "--config.optimizer.learning_rate=nan")
    assert proc.returncode == 2
    assert "config error: optimizer.learning_rate=nan is not a finite number" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "w" / "config.json.tmp") and not os.path.exists(tmp_path / "w")
    # TensorFlow's start-up lines are filtered.
    assert "oneDNN custom operations" not in proc.stderr and "absl::InitializeLog" not in proc.stderr

    debug = _launch(tmp_path / "w", "--config.optimizer.learning_rate=nan", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_a_workdir_belongs_to_one_run_and_ctrl_c_says_where_to_resume(data_dir, tmp_path):
    """A second process on a busy workdir fails at once naming the holder; Ctrl-C stops the first, naming the
    checkpoint to resume from; a changed config is refused with the differing keys and touches nothing; the first
    command resumes (here continued to one epoch past the checkpoint)."""
    workdir = tmp_path / "run"
    flags = tiny_flags(data_dir, **{"eval.train_diagnostics": False, "eval.test_every_epoch": False})
    first = _popen(workdir, flags + ["--config.num_epochs=200"])
    _wait_for(workdir / "checkpoints" / "1" / "_CHECKPOINT_METADATA", first)
    start = time.time()
    second = _launch(workdir, *flags, "--config.num_epochs=200")
    assert first.poll() is None, "the first run ended before the second one started"
    assert second.returncode == 5, second.stderr[-2000:]
    assert time.time() - start < 60
    assert f"is in use by another run (PID {first.pid}" in second.stderr and "Traceback" not in second.stderr

    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, err[-3000:]
    assert "interrupted: the run in" in err and "its last checkpoint is epoch" in err
    assert "Run the same command again to resume" in err and "Traceback" not in err
    checkpoints = sorted(os.listdir(workdir / "checkpoints"))
    latest = max(int(c) for c in checkpoints if c.isdigit())

    changed = _launch(workdir, *flags, "--config.num_epochs=200", "--config.method=full", "--config.seed=1")
    assert changed.returncode == 5
    assert "workdir error: the checkpoints in" in changed.stderr
    assert 'method: "an" (saved) -> "full" (now)' in changed.stderr and "seed: 0 (saved) -> 1 (now)" in changed.stderr
    assert "--config.resume=force" in changed.stderr and "Traceback" not in changed.stderr
    assert sorted(os.listdir(workdir / "checkpoints")) == checkpoints

    again = _launch(workdir, *flags, f"--config.num_epochs={latest + 1}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Resumed from {workdir / 'checkpoints'} at epoch {latest}" in again.stdout
    assert "num_epochs changed from 200 to" in again.stdout
    results = json.loads((workdir / "results.json").read_text())
    assert [h["epoch"] for h in results["history"]] == list(range(1, latest + 2))
    assert results["resumes"] == [{"epoch": latest, "num_epochs": [200, latest + 1]}]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt itself
def test_a_ctrl_c_swallowed_by_a_callback_still_stops_the_run(data_dir, tmp_path):
    """Python prints a KeyboardInterrupt raised inside a __del__ or weakref callback as "Exception ignored" and goes
    on (this test's subprocess twin once ran to the end in CI after Ctrl-C); the recorded request still stops the
    run after the step that was running, and nothing of it is lost."""

    class FinalisedWhenTheSignalArrives:
        def __del__(self):
            errors.stop_on_signal(signal.SIGINT, None)

    FinalisedWhenTheSignalArrives()  # the KeyboardInterrupt is printed and ignored, the request is recorded
    try:
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(tiny_config(data_dir, num_epochs=3), str(tmp_path / "run"))
    finally:
        errors.clear_stop_request()
    assert not (tmp_path / "run" / "results.json").exists()
    assert cli._interrupted_message(str(tmp_path / "run")).startswith(f"the run in {tmp_path / 'run'} stopped before")


def test_checkpoint_failures_reach_the_user_as_one_paragraph(data_dir, tmp_path):
    """A damaged newest checkpoint and a full disk: orbax and asyncio log a traceback for every thread and task the
    failure abandons (40-200 lines before the fix); stderr holds only the run's own message."""
    flags = tiny_flags(data_dir, **{"eval.train_diagnostics": False, "eval.test_every_epoch": False})
    workdir = tmp_path / "run"
    assert _launch(workdir, *flags).returncode == 0
    # The data files the checkpoint's manifest reads (state/d); ocdbt.process_0/ holds the pre-merge copies.
    files = [p for p in (workdir / "checkpoints" / "2" / "state" / "d").iterdir() if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    os.truncate(biggest, biggest.stat().st_size // 2)
    resumed = _launch(workdir, *flags, "--config.num_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "the checkpoint of epoch 2 cannot be read" in resumed.stdout and "resumed from epoch 1" in resumed.stdout
    assert "Traceback" not in resumed.stderr and "Event loop is closed" not in resumed.stderr

    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted_tmpfs(disk, "size=320k"):
        full = _launch(disk / "run", *flags)
    assert full.returncode == 5
    assert "workdir error: cannot write the checkpoint of epoch 1" in full.stderr and "no space left" in full.stderr
    assert "Traceback" not in full.stderr and "Task exception was never retrieved" not in full.stderr
