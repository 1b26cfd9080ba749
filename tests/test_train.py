"""End-to-end tests of the trainer on the built-in dataset: results, files, exact resume after a kill,
multi-device equality, no retrace, and the clear errors of ARCHITECTURE.md / issue 2."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, run_python, tiny_config, tiny_flags

from adagc_jax import config_utils, input_pipeline, methods, parallel, train, train_step
from adagc_jax.errors import DeviceError


def test_end_to_end_an(data_dir, tmp_path):
    workdir = tmp_path / "run"
    # The test curve, the training-set diagnostics and the student's validation curve every 2 epochs: here only at
    # the last (epoch 2).
    results = train.train_and_evaluate(tiny_config(data_dir, **{"eval.curves_every_epochs": 2}), str(workdir))

    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["test"]["mAP"] == pytest.approx(results["test"]["mAP"])
    assert set(on_disk) >= {"test", "val", "history", "trigger", "config", "versions", "wall_time_s", "train_time_s",
                            "timing", "steps_per_s"}
    for split, n in (("test", 72), ("val", 40)):
        block = on_disk[split]
        assert block["reported_model"] == "teacher"
        assert block["mAP"] == block["teacher"]["mAP"]
        assert 0.0 <= block["student"]["mAP"] <= 1.0
        # The WHOLE split was evaluated although 72 and 40 are not multiples of the eval batch (32).
        assert block["teacher"]["num_images"] == n and block["student"]["num_images"] == n
    history = on_disk["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        for key in ("train_loss", "gc_weight", "trigger_signal", "val_mAP", "images_per_s"):
            assert h[key] is not None and np.isfinite(h[key]), key
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert not {"test_mAP", "train_mAP", "train_fn_recall", "val_student_mAP"} & set(history[0])
    assert 0.0 < history[1]["val_student_mAP"] < 1.0  # the student's validation curve: on curve epochs
    assert all(0.0 < history[1][key] < 1.0 for key in ("test_mAP", "train_mAP", "train_observed_fit"))
    assert on_disk["steps_per_s"] > 0 and on_disk["config"]["method"] == "an"
    # 128 training images at batch 32: 4 steps per epoch.
    assert on_disk["wall_time_s"] > on_disk["train_time_s"] > 0 and len(on_disk["trigger"]["signal"]) == 2
    assert set(on_disk["timing"]) == {"setup_s", "train_s", "eval_s", "checkpoint_s", "plot_s"}
    assert on_disk["wall_time_s"] == pytest.approx(sum(on_disk["timing"].values()))
    # Waiting for the input pipeline is part of each epoch's training time.
    assert all(0.0 <= h["epoch_input_wait_s"] <= h["epoch_train_s"] for h in history)
    assert on_disk["input_wait_s"] == pytest.approx(sum(h["epoch_input_wait_s"] for h in history))

    # Model selection (BASELINES.md section 2): both protocols beside the final model; `select` is 'final'.
    assert on_disk["select"] == "final" and on_disk["test"] == on_disk["final"]["test"]
    assert on_disk["final"]["epoch"] == 2 and on_disk["early_stopped_epoch"] is None
    best = on_disk["best_val"]
    assert best["epoch"] == max(history, key=lambda h: (h["val_mAP"], -h["epoch"]))["epoch"]
    assert best["selected_by"] == "val_mAP (complete labels)"
    # The kept best checkpoint IS that epoch's model: its validation mAP is the one the history recorded.
    assert best["val"]["mAP"] == pytest.approx(history[best["epoch"] - 1]["val_mAP"], abs=1e-9)
    assert set(best["test"]) == set(on_disk["test"])
    single = on_disk["best_val_single_positive"]
    assert single["epoch"] == max(history, key=lambda h: (h["val_single_positive_mAP"], -h["epoch"]))["epoch"]
    assert single["epochs_after_complete_label_choice"] == single["epoch"] - best["epoch"]
    assert all(0.0 < h["val_single_positive_mAP"] < 1.0 for h in history)

    assert (workdir / "training.png").stat().st_size > 1000
    assert (workdir / "config.json").exists()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]


@pytest.mark.parametrize("method_name", ["an", "adagc"])
def test_step_does_not_retrace(data_dir, method_name, make_experiment):
    """A new epoch (new knob values, new sums; for AdaGC: GC switched on by gc_weight 0 -> 1) reuses the compiled
    step; a new batch shape would retrace and is refused by the guard, which shows the guard is live."""
    config = tiny_config(data_dir, method=method_name, **{"model.widths": (8,)})
    exp = make_experiment(config, num_classes=12, num_train=16, image_shape=(8, 8, 3))
    state, step, mesh = exp.initial_state(np.zeros((16, 12), np.float32)), exp.train_step, exp.mesh

    def batch(b):
        rng = np.random.default_rng(b)
        observed = np.eye(12, dtype=np.float32)[rng.integers(0, 12, b)]
        return parallel.shard_batch({"image": rng.normal(size=(b, 8, 8, 3)).astype(np.float32),
                                     "observed": observed, "labels": observed,
                                     "id": np.arange(b, dtype=np.int32)}, mesh)

    for epoch, gc_weight in ((1, 0.0), (2, 1.0), (3, 0.5)):
        knobs, sums = exp.knobs(epoch, gc_weight), exp.init_sums()
        for _ in range(2):
            state, sums = step(state, sums, batch(8), knobs)
    assert int(state.step) == 6
    with pytest.raises(train_step.RetraceError, match="traced 2 times"):
        step(state, sums, batch(4), knobs)


def _results(workdir):
    return json.loads((workdir / "results.json").read_text())


@pytest.mark.parametrize("method_name", ["an", "adagc"])
def test_resume_after_kill_gives_identical_results(data_dir, tmp_path, method_name):
    """A run SIGKILLed after its first checkpoint and started again with the same command finishes exactly like an
    uninterrupted run. For AdaGC the trigger fires after epoch 1, so the resumed epochs need the restored teacher,
    prediction memory, visit counts and trigger state to reproduce the uninterrupted run."""
    extra = {}
    if method_name == "adagc":
        extra = {"trigger.rule": "fixed", "trigger.epoch": 1}
    flags = tiny_flags(data_dir, num_epochs=3, method=method_name, **{"eval.select": "best_val", **extra})
    base = [os.path.join(REPO, "launch.py"), "--config", os.path.join(REPO, "configs", "default.py")] + flags

    straight = tmp_path / "straight"
    done = run_python(base + ["--workdir", str(straight)])
    assert done.returncode == 0, done.stderr[-3000:]

    resumed = tmp_path / "resumed"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable] + base + ["--workdir", str(resumed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = resumed / "checkpoints" / "1" / "_CHECKPOINT_METADATA"
    deadline = time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first checkpoint never appeared"
    assert not (resumed / "results.json").exists(), "the run finished before it could be killed"

    again = run_python(base + ["--workdir", str(resumed)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resumed from" in again.stdout

    a, b = _results(straight), _results(resumed)
    for split in ("test", "val"):
        for model in ("teacher", "student"):
            for key in ("mAP", "micro_F1", "ranking_loss", "hamming_loss"):
                assert b[split][model][key] == pytest.approx(a[split][model][key], abs=1e-6), (split, model, key)
    for key in ("train_loss", "gc_weight", "pseudo_label_recall", "train_mAP"):
        np.testing.assert_allclose([h.get(key, 0.0) or 0.0 for h in b["history"]],
                                   [h.get(key, 0.0) or 0.0 for h in a["history"]], rtol=0, atol=1e-6, err_msg=key)
    assert b["trigger"] == a["trigger"]
    # eval.select=best_val: the reported blocks are the best validation epoch's, identical after the kill.
    assert b["select"] == "best_val" and b["test"] == b["best_val"]["test"]
    for name in ("best_val", "best_val_single_positive", "final"):
        assert b[name]["epoch"] == a[name]["epoch"], name
        for model in ("teacher", "student"):
            assert b[name]["test"][model]["mAP"] == pytest.approx(a[name]["test"][model]["mAP"], abs=1e-6), name


def test_early_stop_with_best_epoch_1_leaves_a_complete_resumable_run(data_dir, tmp_path):
    """eval.early_stop_points: this tiny run's validation mAP falls after epoch 1 (0.455 -> 0.453), so with 0.1
    points it stops after epoch 2 with epoch 1 the best; results.json, plots and a checkpoint of the stop epoch are
    there, and running it again trains nothing more and reports the same."""
    config = tiny_config(data_dir, num_epochs=5, **{"eval.early_stop_points": 0.1, "eval.train_diagnostics": False})
    workdir = tmp_path / "run"
    first = train.train_and_evaluate(config, str(workdir))
    assert first["early_stopped_epoch"] == 2 and first["final"]["epoch"] == 2
    assert first["best_val"]["epoch"] == 1 and [h["epoch"] for h in first["history"]] == [1, 2]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
    assert (workdir / "training.png").exists() and (workdir / "diagnostics.png").exists()
    assert os.listdir(workdir / "best_val") == ["1"]
    again = train.train_and_evaluate(config, str(workdir))
    assert [h["epoch"] for h in again["history"]] == [1, 2]
    for name in ("final", "best_val", "best_val_single_positive"):
        assert again[name]["test"]["mAP"] == pytest.approx(first[name]["test"]["mAP"], abs=1e-9)


def test_four_devices_match_one_device(data_dir, tmp_path):
    """Data parallelism over 4 (forced, conftest) CPU devices gives the 1-device loss trajectory for the same global
    batch; a global batch the devices cannot split is refused clearly."""
    assert jax.device_count() == 4, jax.devices()
    out = {}
    for n in (1, 4):
        r = train.train_and_evaluate(tiny_config(data_dir, num_devices=n), str(tmp_path / f"d{n}"))
        out[n] = {"loss": [h["train_loss"] for h in r["history"]], "val": [h["val_mAP"] for h in r["history"]]}
    np.testing.assert_allclose(out[4]["loss"], out[1]["loss"], rtol=1e-4)
    np.testing.assert_allclose(out[4]["val"], out[1]["val"], atol=2e-3)
    with pytest.raises(DeviceError, match="batch_size=30 is not divisible by the 4 devices"):
        train.train_and_evaluate(tiny_config(data_dir, batch_size=30, num_devices=4), str(tmp_path / "bad"))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    """A loss that turns NaN in epoch 2 stops the run at that step; epoch 1's checkpoint survives, untouched."""
    an = methods.METHODS["an"]

    def nan_from_epoch_2(logits, targets, ctx):
        loss, aux = an.loss(logits, targets, ctx)
        return jnp.where(ctx.knobs["epoch"] >= 2, jnp.nan, loss), aux

    monkeypatch.setitem(methods.METHODS, "nan_test", methods.Method("nan_test", "test only", nan_from_epoch_2))
    workdir = tmp_path / "nan"
    with pytest.raises(train.NonFiniteLossError) as err:
        train.train_and_evaluate(tiny_config(data_dir, method="nan_test"), str(workdir))
    # 4 steps per epoch: the first step of epoch 2 is step 5.
    assert "non-finite loss at step 5 (epoch 2)" in str(err.value)
    assert "last good checkpoint (epoch 1)" in str(err.value)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1"]
    assert not (workdir / "results.json").exists()


def test_unknown_method_lists_valid_ones(data_dir):
    with pytest.raises(config_utils.ConfigError, match=r"method='foo' is not valid; valid values: \[.*'an'.*'full'"):
        train.train_and_evaluate(tiny_config(data_dir, method="foo"), "/tmp/never")


def test_missing_manual_dir_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path)
    config.dataset.name = "aid_multilabel"
    config.dataset.builder_config = {}
    config.dataset.manual_dir = str(tmp_path / "does_not_exist")
    with pytest.raises(input_pipeline.DatasetError, match="does not exist") as err:
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert "images_tr" in str(err.value)  # the expected layout is named
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_unknown_config_key_and_method(tmp_path):
    base = ["launch.py", "--config", "configs/default.py", "--workdir", str(tmp_path / "w")]
    proc = run_python(base + ["--config.optimizer.learning_rat=0.1"])
    assert proc.returncode == 2
    assert "unknown config key 'optimizer.learning_rat'" in proc.stderr
    assert "Did you mean optimizer.learning_rate" in proc.stderr and "Valid keys:" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_python(base + ["--config.method=nope", "--config.dataset.data_dir=" + str(tmp_path)])
    assert proc.returncode == 2
    assert "method='nope' is not valid; valid values:" in proc.stderr and "Traceback" not in proc.stderr
