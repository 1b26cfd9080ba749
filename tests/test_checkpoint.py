"""adagc_jax.checkpoint on small pytrees (no training): round trip, a damaged newest checkpoint, write errors."""

import errno
import gc
import glob
import os

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import mounted_tmpfs

from adagc_jax import checkpoint, errors

# A failed TensorStore read leaves orbax's sibling read coroutines un-awaited; pytest reports them as unraisable
# warnings (a plain Python run prints nothing). They are expected in the damaged-checkpoint tests.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_abandoned_reads():
    """Collects those coroutines here, under the filter above, not during a later test file."""
    yield
    gc.collect()


def state(scale: float, n: int = 1000):
    return {"params": {"w": jnp.arange(n, dtype=jnp.float32) * scale, "b": jnp.full((3,), scale, jnp.float32)},
            "step": jnp.asarray(int(scale), jnp.int32)}


def save(ck, epoch, n=1000):
    ck.save(epoch, state(float(epoch), n), {"epoch": epoch, "history": [{"epoch": epoch}]},
            {"observed": np.full((4, 2), epoch, np.float32)})


def truncate_largest_state_file(workdir, epoch):
    """Cuts the biggest data file of a checkpoint's state in half (a copy or a disk that failed midway)."""
    files = [f for f in glob.glob(os.path.join(workdir, "checkpoints", str(epoch), "state", "**", "*"),
                                  recursive=True) if os.path.isfile(f)]
    largest = max(files, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)
    return largest


@pytest.fixture
def two_epochs(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path), keep=2)
    for epoch in (1, 2):
        save(ck, epoch)
    yield tmp_path, ck
    ck.close()


def test_round_trip_latest_and_keep(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path), keep=2)
    assert ck.latest_epoch() is None and ck.restore_latest(state(0.0)) is None and ck.latest_host() is None
    for epoch in (1, 2, 3):
        save(ck, epoch)
    assert ck.latest_epoch() == 3 and ck.all_epochs() == [2, 3]  # keep=2
    restored_state, host, tables = ck.restore(2, state(0.0))  # the old method still works
    np.testing.assert_array_equal(restored_state["params"]["w"], np.arange(1000) * 2.0)
    assert host["epoch"] == 2 and tables["observed"][0, 0] == 2
    assert ck.read_host(3)["history"] == [{"epoch": 3}] and ck.latest_host() == (3, ck.read_host(3))
    restored = ck.restore_latest(state(0.0))
    assert (restored.epoch, restored.notices, restored.host["epoch"]) == (3, [], 3)
    np.testing.assert_array_equal(restored.state["params"]["b"], [3.0, 3.0, 3.0])
    ck.close()


def test_damaged_newest_checkpoint_falls_back_and_is_moved_aside(two_epochs):
    workdir, ck = two_epochs
    truncate_largest_state_file(workdir, 2)
    with pytest.raises(Exception, match="OUT_OF_RANGE|Encountered error"):  # what resuming used to show
        ck.restore(2, state(0.0))
    restored = ck.restore_latest(state(0.0))
    assert restored.epoch == 1
    np.testing.assert_array_equal(restored.state["params"]["w"], np.arange(1000) * 1.0)
    moved = workdir / "damaged_checkpoints" / "2"
    assert len(restored.notices) == 1
    assert "epoch 2 cannot be read" in restored.notices[0] and str(moved) in restored.notices[0]
    assert "resumed from epoch 1" in restored.notices[0] and "\n" not in restored.notices[0]
    assert moved.is_dir() and not (workdir / "checkpoints" / "2").exists()
    assert ck.latest_epoch() == 1 and ck.all_epochs() == [1]
    # The resumed run writes epoch 2 again (orbax refuses a step that exists, hence the move).
    save(ck, 2)
    again = ck.restore_latest(state(0.0))
    assert again.epoch == 2 and again.notices == []
    np.testing.assert_array_equal(again.state["params"]["w"], np.arange(1000) * 2.0)


def test_damaged_host_part_is_skipped_by_latest_host(two_epochs):
    workdir, ck = two_epochs
    (workdir / "checkpoints" / "2" / "host" / "metadata").write_text('{"epoch": 2, "hist')
    assert ck.latest_host()[0] == 1
    restored = ck.restore_latest(state(0.0))
    assert restored.epoch == 1 and "epoch 2 cannot be read" in restored.notices[0]


def test_no_readable_checkpoint_names_the_folder_and_moves_nothing(two_epochs):
    workdir, ck = two_epochs
    for epoch in (1, 2):
        truncate_largest_state_file(workdir, epoch)
    with pytest.raises(errors.WorkdirError) as info:
        ck.restore_latest(state(0.0))
    message = str(info.value)
    assert f"no checkpoint in {workdir / 'checkpoints'} can be read" in message and "\n" not in message
    assert "epoch 2: " in message and "epoch 1: " in message and "new --workdir" in message
    assert "Traceback" not in message and "'driver'" not in message  # not TensorStore's spec dump
    assert ck.all_epochs() == [1, 2] and not (workdir / "damaged_checkpoints").exists()


def test_a_changed_model_is_not_mistaken_for_damage(two_epochs):
    """Every checkpoint fails to restore into another structure: nothing may be moved aside."""
    workdir, ck = two_epochs
    with pytest.raises(errors.WorkdirError, match="config changed"):
        ck.restore_latest(state(0.0, n=500))
    assert ck.all_epochs() == [1, 2] and not (workdir / "damaged_checkpoints").exists()


@pytest.mark.parametrize("code, reason, fix", [
    (errno.ENOSPC, "no space left on the device", "Free disk space"),
    (errno.EROFS, "the filesystem is read-only", "Make the workdir writable"),
    (errno.EACCES, "permission denied", "Make the workdir writable"),
])
def test_write_error_during_save_is_a_workdir_error(two_epochs, monkeypatch, code, reason, fix):
    workdir, ck = two_epochs

    def failing_save(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(workdir / "checkpoints" / "3.orbax-checkpoint-tmp"))

    monkeypatch.setattr(ck._manager, "save", failing_save)
    with pytest.raises(errors.WorkdirError) as info:
        save(ck, 3)
    message = str(info.value)
    assert message.startswith(f"cannot write the checkpoint of epoch 3 to {workdir / 'checkpoints'}: {reason} (")
    assert "MiB free there)" in message and fix in message
    assert "previous checkpoint (epoch 2) is intact" in message and "\n" not in message


def test_other_save_errors_keep_their_traceback(two_epochs, monkeypatch):
    _, ck = two_epochs
    monkeypatch.setattr(ck._manager, "save", lambda *a, **k: (_ for _ in ()).throw(TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):
        save(ck, 3)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    with mounted_tmpfs(mount, "size=256k"):
        yield mount


def test_real_disk_full(tiny_disk):
    ck = checkpoint.Checkpointer(str(tiny_disk / "run"), keep=2)
    save(ck, 1, n=100)  # fits
    with pytest.raises(errors.WorkdirError) as info:
        save(ck, 2, n=200_000)  # 800 kB of float32 do not
    message = str(info.value)
    assert message.startswith(f"cannot write the checkpoint of epoch 2 to {tiny_disk / 'run' / 'checkpoints'}: "
                              "no space left on the device (")
    assert "previous checkpoint (epoch 1) is intact" in message
    # The half-written temporary folder is gone (its space given back) and epoch 1 still restores.
    assert sorted(os.listdir(tiny_disk / "run" / "checkpoints")) == ["1"]
    restored = ck.restore_latest(state(0.0, n=100))
    assert restored.epoch == 1 and restored.notices == []
    ck.close()
