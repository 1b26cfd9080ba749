"""The AdaGC method inside the one jitted step (METHOD.md sections 2-6): memory bank from the teacher's clean-view
predictions, pseudo-labels, the (1 - w) L_AN + w L_GC blend, and an end-to-end run with its diagnostics."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fake_info, tiny_config

from adagc_jax import experiment, gc, parallel, train
from adagc_jax import train_step as ts

NUM_CLASSES, NUM_TRAIN = 5, 12


def _setup(data_dir, **overrides):
    config = tiny_config(data_dir, **{"method": "adagc", "model.widths": (4,), **overrides})
    # Constant learning rate without warm-up: the first step must move the student.
    with config.unlocked():
        config.optimizer.schedule = "constant"
        config.optimizer.warmup_epochs = 0.0
    exp = experiment.build(config, fake_info(NUM_CLASSES, NUM_TRAIN, (8, 8, 3)), steps_per_epoch=1,
                           mesh=parallel.make_mesh(1))
    state = exp.initial_state(np.zeros((NUM_TRAIN, NUM_CLASSES), np.float32))
    return config, exp.mesh, exp.model, exp.method, state, exp.train_step


def _batch(mesh, ids, seed=0):
    rng = np.random.default_rng(seed)
    b = len(ids)
    labels = (rng.random((b, NUM_CLASSES)) < 0.5).astype(np.float32)
    first = rng.integers(0, NUM_CLASSES, b)
    labels[np.arange(b), first] = 1.0
    observed = np.eye(NUM_CLASSES, dtype=np.float32)[first]
    host = {"image": rng.normal(size=(b, 8, 8, 3)).astype(np.float32), "observed": observed, "labels": labels,
            "id": np.asarray(ids, np.int32)}
    return host, parallel.shard_batch(host, mesh)


def _run(step, state, method, mesh, batch, gc_weight):
    knobs = parallel.replicate({"epoch": jnp.float32(1), "gc_weight": jnp.float32(gc_weight)}, mesh)
    sums = parallel.replicate(ts.init_sums(method.aux_keys), mesh)
    return step(state, sums, batch, knobs)


@pytest.mark.parametrize("gc_weight", [0.0, 1.0, 0.3])
def test_first_visit_writes_teacher_probs_and_loss_blends_an_and_gc(data_dir, gc_weight):
    config, mesh, model, method, state, step = _setup(data_dir, **{"mixup.alpha": 0.0})
    teacher_before = jax.device_get(state.teacher)
    student_before = jax.device_get(state.student_variables())
    host, batch = _batch(mesh, ids=[3, 7, 0, 11])
    new_state, sums = _run(step, state, method, mesh, batch, gc_weight)

    teacher_probs = jax.nn.sigmoid(model.apply(teacher_before, host["image"], train=False))
    memory = np.asarray(new_state.method_state["memory"])
    visits = np.asarray(new_state.method_state["visits"])
    # First visit: the memory row IS the teacher's prediction (no averaging with the zero initial value).
    np.testing.assert_allclose(memory[host["id"]], teacher_probs, atol=1e-6)
    assert visits.tolist() == [1 if i in (3, 7, 0, 11) else 0 for i in range(NUM_TRAIN)]
    untouched = np.setdiff1d(np.arange(NUM_TRAIN), host["id"])
    assert np.all(memory[untouched] == 0)

    # Without Mixup the step's loss is (1 - w) L_AN + w L_GC on the student's train-mode logits.
    logits, _ = model.apply(student_before, host["image"], train=True, mutable=["batch_stats"])
    pseudo = gc.pseudo_labels(teacher_probs, host["observed"])
    expected = ((1 - gc_weight) * gc.log_sigmoid_an_loss(logits, host["observed"])
                + gc_weight * gc.gc_loss(logits, host["observed"], pseudo))
    assert float(sums["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(sums["an_loss"]) == pytest.approx(float(gc.log_sigmoid_an_loss(logits, host["observed"])), rel=1e-5)


def test_second_visit_averages_with_m_p_and_teacher_follows_ema(data_dir):
    config, mesh, model, method, state, step = _setup(data_dir, **{"mixup.alpha": 0.0})
    host, batch = _batch(mesh, ids=[1, 2, 3, 4])
    state, _ = _run(step, state, method, mesh, batch, 1.0)
    first_memory = np.asarray(state.method_state["memory"])[host["id"]]
    teacher = jax.device_get(state.teacher)
    student = jax.device_get(state.student_variables())
    _, batch = _batch(mesh, ids=[1, 2, 3, 4])
    state, _ = _run(step, state, method, mesh, batch, 1.0)
    probs = jax.nn.sigmoid(model.apply(teacher, host["image"], train=False))
    m_p = config.ema.m_p
    np.testing.assert_allclose(np.asarray(state.method_state["memory"])[host["id"]],
                               m_p * first_memory + (1 - m_p) * probs, atol=1e-6)
    assert np.asarray(state.method_state["visits"])[host["id"]].tolist() == [2, 2, 2, 2]
    # The teacher moved toward the student by (1 - m_w) after the first update: it is neither of them.
    leaf_t = jax.tree.leaves(teacher["params"])[0]
    leaf_s = jax.tree.leaves(student["params"])[0]
    assert not np.allclose(leaf_t, leaf_s)


def test_prediction_ema_off_keeps_no_memory(data_dir):
    _, mesh, _, method, state, step = _setup(data_dir, **{"ema.predictions": False})
    assert state.method_state == {}
    _, batch = _batch(mesh, ids=[0, 1, 2, 3])
    state, sums = _run(step, state, method, mesh, batch, 1.0)
    assert np.isfinite(float(sums["loss"]))


def test_end_to_end_adagc_writes_diagnostics(data_dir, tmp_path):
    config = tiny_config(data_dir, method="adagc", num_epochs=3, **{"trigger.rule": "fixed", "trigger.epoch": 1})
    results = train.train_and_evaluate(config, str(tmp_path))
    history = results["history"]
    assert [h["gc_weight"] for h in history] == [0.0, 1.0, 1.0]
    assert results["trigger"]["fired_epoch"] == 1
    for h in history:
        assert 0.0 <= h["pseudo_label_recall"] <= 1.0
        assert 0.0 <= h["train_mAP"] <= 1.0 and 0.0 <= h["train_fn_recall"] <= 1.0
    assert results["test"]["reported_model"] == "teacher"
    assert (tmp_path / "diagnostics.png").stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text())["config"]["method"] == "adagc"
