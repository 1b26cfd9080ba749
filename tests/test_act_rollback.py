"""The `act` trigger's rollback in the loop (METHOD.md 6b): the run restores the state saved after the trigger
epoch F and continues with GC from F + 1, keeping the discarded epochs in the history; a run stopped before the
detection, between the detection and the restore, or after the rollback resumes to the same results.json.

The stop is simulated in-process by an exception at the exact point (the checkpoints on disk are then what a kill -9
at that moment leaves, since saves are synchronous); tests/test_train.py kills a real process with SIGKILL.
On this tiny config (seed 0) the observed_top1 signal with act_windows=(2,) is detected after epoch 7 with F = 2.
"""

import json

import pytest
from conftest import tiny_config

from adagc_jax import checkpoint, train

ACT = {"method": "adagc", "num_epochs": 9, "trigger.rule": "act", "trigger.signal": "observed_top1",
       "trigger.act_windows": (2,), "trigger.max_epochs": 9, "eval.test_every_epoch": False,
       "eval.train_diagnostics": False}
DETECTED, FIRED = 7, 2


class Stop(Exception):
    """Stands for a kill at one point of the run."""


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("act_straight")
    train.train_and_evaluate(tiny_config(data_dir, **ACT), str(workdir))
    return json.loads((workdir / "results.json").read_text())


def test_act_rolls_back_to_the_trigger_epoch(straight, data_dir):
    trigger = straight["trigger"]
    assert (trigger["detected_epoch"], trigger["fired_epoch"]) == (DETECTED, FIRED)
    assert trigger["rolled_back_epochs"] == DETECTED - FIRED
    epochs = [(h["epoch"], bool(h.get("rolled_back"))) for h in straight["history"]]
    # Warm-up 1..7 (3..7 discarded, kept in the history), then 3..9 again with GC on.
    assert epochs == ([(e, False) for e in (1, 2)] + [(e, True) for e in range(3, 8)]
                      + [(e, False) for e in range(3, 10)])
    kept = [h for h in straight["history"] if not h.get("rolled_back")]
    assert [h["gc_weight"] for h in kept] == [0.0, 0.0] + [1.0] * 7
    assert all(h["gc_weight"] == 0.0 for h in straight["history"] if h.get("rolled_back"))
    # The first GC epoch after the rollback starts from epoch 2's state, not from epoch 7's.
    first_gc = kept[2]
    assert first_gc["train_loss"] != next(h for h in straight["history"] if h["epoch"] == 3)["train_loss"]


def _stop_once(monkeypatch, target, name, when):
    original = getattr(target, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if when == "before" and calls["n"] == 1:
            raise Stop(name)
        result = original(*args, **kwargs)
        if when == "after" and calls["n"] == 1:
            raise Stop(name)
        return result

    monkeypatch.setattr(target, name, wrapped)


@pytest.mark.parametrize("point", ["before_detection", "between_detection_and_restore", "after_rollback"])
def test_stopped_act_run_resumes_to_the_same_results(point, straight, data_dir, tmp_path, monkeypatch):
    workdir = str(tmp_path / point)
    with monkeypatch.context() as patch:
        if point == "before_detection":  # during epoch 5 (checkpoints 1-4 on disk, nothing detected yet)
            original = train.train_epoch

            def stop_in_epoch_5(run, epoch, gc_weight):
                if epoch == 5:
                    raise Stop("epoch 5")
                return original(run, epoch, gc_weight)

            patch.setattr(train, "train_epoch", stop_in_epoch_5)
        elif point == "between_detection_and_restore":  # epoch 7's checkpoint is written, no rollback yet
            _stop_once(patch, train, "rollback", "before")
        else:  # state restored, later checkpoints deleted, epoch 3 (with GC) not yet saved
            _stop_once(patch, checkpoint.Checkpointer, "delete_after", "after")
        with pytest.raises(Stop):
            train.train_and_evaluate(tiny_config(data_dir, **ACT), workdir)
    resumed = train.train_and_evaluate(tiny_config(data_dir, **ACT), workdir)

    for split in ("test", "val"):
        for model in ("teacher", "student"):
            assert resumed[split][model]["mAP"] == pytest.approx(straight[split][model]["mAP"], abs=1e-6)
    for key in ("fired_epoch", "detected_epoch", "rolled_back_epochs", "signal"):
        assert resumed["trigger"][key] == straight["trigger"][key], key
    assert [(h["epoch"], bool(h.get("rolled_back")), h["train_loss"]) for h in resumed["history"]] == \
        pytest.approx([(h["epoch"], bool(h.get("rolled_back")), h["train_loss"]) for h in straight["history"]],
                      abs=1e-6)
