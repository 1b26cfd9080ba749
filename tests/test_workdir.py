"""adagc_jax.workdir: one run per workdir (a real second process), writable workdirs, resuming with another config."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mounted_tmpfs

from adagc_jax import errors, workdir
from configs import default

REPO = Path(__file__).resolve().parents[1]


def config_json(**changes):
    """The JSON form of configs/default.py (what train.py stores with each checkpoint), with dotted changes."""
    flat = json.loads(default.get_config().to_json_best_effort())
    for key, value in changes.items():
        node = flat
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return flat


# -- lock ---------------------------------------------------------------------------------------------------------

def test_lock_creates_the_workdir_records_the_holder_and_empties_on_release(tmp_path):
    wd = tmp_path / "not" / "yet" / "there"
    lock = workdir.WorkdirLock(str(wd))
    assert lock.acquire() is None and lock.held
    record = json.loads((wd / ".lock").read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["started"] and record["command"]
    lock.release()
    assert not lock.held and (wd / ".lock").read_text() == ""
    with workdir.WorkdirLock(str(wd)) as again:  # a clean release leaves nothing to take over
        assert again.notice is None
    assert (wd / ".lock").read_text() == ""


def test_second_lock_in_the_same_process_is_refused(tmp_path):
    with workdir.WorkdirLock(str(tmp_path)):
        with pytest.raises(errors.WorkdirError, match=rf"in use by another run \(PID {os.getpid()} on host"):
            workdir.WorkdirLock(str(tmp_path)).acquire()


HOLDER = """
import sys, time
from adagc_jax.workdir import WorkdirLock
lock = WorkdirLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_second_process_fails_fast_and_a_killed_holder_is_taken_over(tmp_path):
    wd = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(wd)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(errors.WorkdirError) as info:
            workdir.WorkdirLock(str(wd)).acquire()
        assert time.monotonic() - start < 5.0  # LOCK_NB: refused at once, never waits for the holder
        message = str(info.value)
        assert f"PID {holder.pid} on host {socket.gethostname()}, started " in message
        assert str(wd) in message and "another --workdir" in message and "\n" not in message

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert json.loads((wd / ".lock").read_text())["pid"] == holder.pid  # left behind by the killed run
        lock = workdir.WorkdirLock(str(wd))
        notice = lock.acquire()
        assert notice is not None and f"PID {holder.pid}" in notice and "no longer running" in notice
        assert json.loads((wd / ".lock").read_text())["pid"] == os.getpid()
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()


# -- writable -----------------------------------------------------------------------------------------------------

def test_workdir_that_is_a_file_or_under_a_file(tmp_path):
    afile = tmp_path / "results.txt"
    afile.write_text("x")
    with pytest.raises(errors.WorkdirError, match=r"results\.txt cannot be used: it is a file, not a folder"):
        workdir.check_writable(str(afile))
    with pytest.raises(errors.WorkdirError, match=rf"is under {afile}, which is a file"):
        workdir.WorkdirLock(str(afile / "sub" / "run")).acquire()
    assert workdir.check_writable(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write: chmod for a normal user, a read-only tmpfs for root (who ignores
    permission bits); skipped where neither works."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    with mounted_tmpfs(path, "ro,size=64k"):
        yield path


def test_read_only_workdir(read_only_dir):
    for target in (read_only_dir, read_only_dir / "new_run"):
        with pytest.raises(errors.WorkdirError) as info:
            workdir.check_writable(str(target))
        message = str(info.value)
        assert message.startswith(f"workdir {target} cannot be created or written: ")
        assert ("read-only filesystem" in message or "permission denied" in message) and "--workdir" in message
    with pytest.raises(errors.WorkdirError, match="cannot be created or written"):
        workdir.WorkdirLock(str(read_only_dir)).acquire()


# -- resuming with another config ---------------------------------------------------------------------------------

def test_compare_configs_flattens_and_lists_every_difference():
    saved = {"a": 1, "b": {"c": [1, 2], "d": {"e": "x"}}, "f": True, "gone": 3}
    current = {"a": 1.0, "b": {"c": (1, 2), "d": {"e": "y"}}, "f": 1, "new": {"k": 0}}
    assert workdir.compare_configs(saved, current) == [
        ("b.d.e", "x", "y"), ("f", True, 1), ("gone", 3, "<absent>"), ("new.k", "<absent>", 0)]
    assert workdir.compare_configs(config_json(), config_json()) == []


def test_resume_with_the_same_config_or_model_neutral_changes():
    same = workdir.check_resume(config_json(), config_json(), force=False, resumed_epoch=3)
    assert (same.neutral, same.num_epochs, same.forced, same.notices) == ([], None, [], [])
    assert same.history_record() == {}
    changes = {"log.every_steps": 50, "log.progress_bar": False, "checkpoint.keep": 5, "checkpoint.every_epochs": 2,
               "eval.every_epochs": 5, "eval.test_every_epoch": False, "eval.train_diagnostics": False,
               "dataset.data_dir": "/elsewhere", "dataset.manual_dir": "/data", "num_devices": 1,
               "eval_batch_size": 64, "dataset.beam_options": "direct_num_workers=2", "eval.device_cache_mb": 0}
    check = workdir.check_resume(config_json(), config_json(**changes), force=False, resumed_epoch=3)
    assert sorted(k for k, _, _ in check.neutral) == sorted(changes)
    assert check.forced == [] and check.num_epochs is None and check.history_record() == {}
    assert len(check.notices) == 1 and "log.every_steps 10 -> 50" in check.notices[0]
    # A key the saved config lacks (e.g. `resume`, added later) is neutral too.
    current = {**config_json(), "resume": "force"}
    assert [k for k, _, _ in workdir.check_resume(config_json(), current, force=False).neutral] == ["resume"]


def test_resume_with_a_model_changing_config_is_refused_unless_forced():
    saved = config_json()
    current = config_json(**{"optimizer.learning_rate": 0.01, "seed": 1, "log.every_steps": 3})
    with pytest.raises(errors.WorkdirError) as info:
        workdir.check_resume(saved, current, force=False, resumed_epoch=4, checkpoint_dir="/w/checkpoints")
    message = str(info.value)
    assert "/w/checkpoints" in message and "\n" not in message
    assert "optimizer.learning_rate: 0.001 (saved) -> 0.01 (now); seed: 0 (saved) -> 1 (now)" in message
    assert "log.every_steps" not in message
    assert "same config" in message and "new --workdir" in message and "--config.resume=force" in message

    forced = workdir.check_resume(saved, current, force=True, resumed_epoch=4)
    assert forced.forced == [("optimizer.learning_rate", 0.001, 0.01), ("seed", 0, 1)]
    assert forced.neutral == [("log.every_steps", 10, 3)]
    assert forced.history_record() == {"forced": {"optimizer.learning_rate": [0.001, 0.01], "seed": [0, 1]}}
    assert any("forced" in n and "optimizer.learning_rate, seed" in n for n in forced.notices)


def test_num_epochs_may_grow_or_shrink_down_to_the_resumed_epoch():
    grown = workdir.check_resume(config_json(), config_json(num_epochs=50), force=False, resumed_epoch=30)
    assert grown.num_epochs == (30, 50) and grown.forced == [] and grown.history_record() == {"num_epochs": [30, 50]}
    assert "learning-rate schedule" in grown.notices[0] and "from the resumed epoch on" in grown.notices[0]
    shrunk = workdir.check_resume(config_json(), config_json(num_epochs=12), force=False, resumed_epoch=12)
    assert shrunk.num_epochs == (30, 12)
    for force in (False, True):
        with pytest.raises(errors.WorkdirError, match=r"num_epochs=10 is below epoch 12.*new --workdir"):
            workdir.check_resume(config_json(), config_json(num_epochs=10), force=force, resumed_epoch=12)
