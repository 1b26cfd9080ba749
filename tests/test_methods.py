"""The method registry through the REAL jitted step (METHOD.md section 8, BASELINES.md): every method runs, its loss
is the losses.py function on the same logits, a new epoch's knobs never retrace; ROLE's Z, LL-Cp's table and APL's
epoch-end pass update their state as BASELINES.md says; the benchmark runner writes its tables."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_OVERRIDES, fake_info

from adagc_jax import config_utils, experiment, loss_schedules, losses, methods, models, parallel

C, N, B, HW = 4, 16, 8, 8
CARDINALITY = 2.0  # the label cardinality passed to initial_state (EPR/ROLE's default k)


def _config(method, **overrides):
    from configs import default

    config = default.get_config(f"method={method}")
    config.model.widths = (4, 8)
    config.ema.weights = False
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_epochs = 0.0
    config.num_epochs = 4
    config_utils.set_keys(config, overrides)
    return config


def _data():
    rng = np.random.default_rng(0)
    labels = (rng.random((N, C)) < 0.5).astype(np.float32)
    positive = rng.integers(0, C, N)
    labels[np.arange(N), positive] = 1.0
    observed = np.eye(C, dtype=np.float32)[positive]
    images = rng.normal(size=(N, HW, HW, 3)).astype(np.float32)
    return images, observed, labels


@pytest.fixture(autouse=True)
def _init_once(monkeypatch):
    """Every test builds the same tiny network: initialise it once (each init is a fresh jit compilation)."""
    original = models.init_variables

    def cached(model, rng, image_shape):
        key = (repr(model), tuple(image_shape), np.asarray(rng).tobytes())
        if key not in _INIT_CACHE:
            _INIT_CACHE[key] = jax.device_get(original(model, rng, image_shape))
        return _INIT_CACHE[key]

    monkeypatch.setattr(models, "init_variables", cached)


_INIT_CACHE = {}


class Harness:
    """One method's real step (experiment.build, as a run builds it) on a 16-image table, batches of 8, with a
    randomised (non-zero) head."""

    def __init__(self, method_name, **overrides):
        self.config = _config(method_name, **overrides)
        exp = experiment.build(self.config, fake_info(C, N, (HW, HW, 3)), steps_per_epoch=2,
                               mesh=parallel.make_mesh(1))
        self.exp, self.method, self.mesh, self.model = exp, exp.method, exp.mesh, exp.model
        self.images, self.observed, self.labels = _data()
        state = exp.initial_state(self.observed, label_cardinality=CARDINALITY)
        # The head starts near zero: perturb every parameter so the logits are well apart (LL would see near-ties).
        noise = np.random.default_rng(1)
        params = jax.tree.map(lambda p: np.asarray(p) + 0.5 * noise.normal(size=p.shape).astype(np.float32),
                              jax.device_get(state.params))
        self.state = parallel.replicate(state.replace(params=params), self.mesh)
        self.step = exp.train_step

    def batch(self, ids):
        ids = np.asarray(ids)
        return {"image": self.images[ids], "observed": self.observed[ids], "labels": self.labels[ids],
                "id": ids.astype(np.int32)}

    def logits(self, batch):
        variables = {"params": self.state.params, "batch_stats": self.state.batch_stats}
        out, _ = self.model.apply(variables, jnp.asarray(batch["image"]), train=True, mutable=["batch_stats"])
        return np.asarray(out)

    def run(self, ids, epoch):
        """One step at `epoch`'s knobs; returns (pre-step logits, pre-step state on the host, step loss)."""
        batch = self.batch(ids)
        logits = self.logits(batch)
        before = jax.device_get(self.state)
        self.state, sums = self.step(self.state, self.exp.init_sums(), parallel.shard_batch(batch, self.mesh),
                                     self.exp.knobs(epoch, gc_weight=0.5))
        return logits, before, float(sums["loss"])


def _expected(name, config, logits, batch, before, epoch):
    """The losses.py value the step must reproduce on the same logits (None: not checked here)."""
    o, hp = batch["observed"], config.losses
    ids = batch["id"]
    table = before.method_state.get("observed") if isinstance(before.method_state, dict) else None
    if name == "an":
        return losses.mean_bc(losses.an(logits, o))
    if name == "full":
        return losses.mean_bc(losses.full(logits, batch["labels"]))
    if name == "an_ls":
        return losses.mean_bc(losses.an_ls(logits, o, hp.an_ls.ls_coef))
    if name == "wan":
        return losses.mean_bc(losses.wan(logits, o))
    if name == "epr":
        terms, regulariser = losses.epr(logits, o, CARDINALITY)
        return losses.mean_bc(terms) + regulariser
    if name == "role":
        terms, regulariser = losses.role(logits, o, before.method_params["label_logits"][ids], CARDINALITY)
        return losses.mean_bc(terms) + regulariser
    if name == "em":
        return losses.mean_bc(losses.em(logits, o, hp.em.alpha))
    if name == "em_apl":
        return losses.mean_bc(losses.em_apl(logits, table[ids], hp.em_apl.alpha, hp.em_apl.beta))
    if name in ("ll_r", "ll_ct"):
        rate = np.float32(loss_schedules.ll_rate(epoch, hp[name].delta_rel))
        return losses.mean_bc(losses.ll(logits, o, "R" if name == "ll_r" else "Ct", rate))
    if name == "ll_cp":
        rate = np.float32(0.0 if epoch == 1 else hp.ll_cp.delta_rel)
        return losses.mean_bc(losses.ll(logits, table[ids], "Ct", rate))
    if name == "hill":
        return losses.reduce(losses.hill(logits, o), "sum")
    if name == "splc":
        return losses.reduce(losses.splc(logits, o, epoch - 1), "sum")
    if name == "gr":  # the knob path (schedule on the host) against the all-in-one function
        return losses.mean_bc(losses.gr(logits, o, epoch, config.num_epochs))
    return None


def _check_role(h, steps):
    """Z moves: the batch rows at ~ lr_mult * lr, and rows OUTSIDE the batch too, through Adam's momentum."""
    (_, z0_state, _), (_, z1_state, _) = steps
    z0 = z0_state.method_params["label_logits"]
    z1 = z1_state.method_params["label_logits"]
    z2 = np.asarray(h.state.method_params["label_logits"])
    # Step 1 (rows 0..7): a first Adam step moves every entry with a gradient by ~ 10 * 1e-3; rows 8..15 (zero
    # gradient, zero moments) stay.
    np.testing.assert_allclose(np.abs(z1[:8] - z0[:8]), 1e-2, rtol=1e-3)
    np.testing.assert_array_equal(z1[8:], z0[8:])
    # Step 2 (rows 8..15): rows 0..7 are not in the batch, yet they move (dense Z, BASELINES.md pitfall 5).
    assert np.all(z2[8:] != z1[8:]) and np.all(z2[:8] != z1[:8])


def _check_ll_cp(h, steps):
    """Epoch 1 writes nothing; epoch 2 writes o = 1 where u > t; epoch 3 reads and keeps the corrections."""
    (_, s1, _), (logits2, s2, _), (_, s3, _) = steps
    ids = np.arange(8)
    np.testing.assert_array_equal(s2.method_state["observed"], h.observed)  # after epoch 1
    flips = np.asarray(losses.ll_cp_flips(logits2, h.observed[ids], np.float32(0.25)))
    # k = ceil(32 * 0.25) = 8; strictly above the 8th largest unobserved loss: 7 entries (no ties).
    assert flips.sum() == 7 and not np.any(flips & (h.observed[ids] == 1))
    table = s3.method_state["observed"]  # after epoch 2; epoch 3's loss was checked on it
    np.testing.assert_array_equal(table[ids], np.where(flips, 1.0, h.observed[ids]))
    np.testing.assert_array_equal(table[8:], h.observed[8:])
    assert np.all(np.asarray(h.state.method_state["observed"])[ids][flips] == 1.0)  # still there after epoch 3


# Per method: (overrides, [(batch ids, epoch), ...], extra check). Rates large enough that the 8 x 4 = 32 entries
# of a batch see some modification in epoch 2; LL-Cp sees the same images again to read its corrections.
FIRST, SECOND = range(0, 8), range(8, 16)
PLANS = {
    "ll_r": ({"losses.ll_r.delta_rel": 0.1}, None, None),
    "ll_ct": ({"losses.ll_ct.delta_rel": 0.1}, None, None),
    "ll_cp": ({"losses.ll_cp.delta_rel": 0.25}, [(FIRST, 1), (FIRST, 2), (FIRST, 3)], _check_ll_cp),
    "role": ({}, None, _check_role),
}


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_method_runs_and_matches_its_loss(name):
    overrides, plan, check = PLANS.get(name, ({}, None, None))
    h = Harness(name, **overrides)
    steps = []
    # Several epochs' knobs through ONE compiled step: the guard in make_train_step raises on a second trace.
    for ids, epoch in plan or [(FIRST, 1), (SECOND, 2)]:
        logits, before, loss = h.run(ids, epoch)
        assert np.isfinite(loss), (name, epoch)
        expected = _expected(name, h.config, logits, h.batch(ids), before, epoch)
        if expected is not None:
            np.testing.assert_allclose(loss, float(expected), rtol=2e-5, atol=1e-7, err_msg=f"{name} e{epoch}")
        steps.append((logits, before, loss))
    assert int(h.state.step) == len(steps)
    if check is not None:
        check(h, steps)


def test_registry_has_every_method_of_method_md_in_its_order():
    assert list(methods.METHODS) == ["adagc", "an", "an_ls", "wan", "epr", "role", "em", "em_apl", "ll_r", "ll_ct",
                                     "ll_cp", "hill", "splc", "gr", "full"]
    with pytest.raises(config_utils.ConfigError, match=r"method='nope' is not valid; valid values: \['adagc', 'an'"):
        config_utils.lookup(methods.METHODS, "nope", "method")


def test_knobs_follow_the_schedules():
    config = _config("gr")
    assert methods.METHODS["gr"].knobs(config, 1) == pytest.approx(
        dict(zip(("gr_w", "gr_b", "gr_mu", "gr_sigma"), (0.0, -2.0, 0.575, 1.625))))  # T = 4
    assert methods.METHODS["ll_r"].knobs(config, 2)["ll_rate"] == loss_schedules.ll_rate(2, 0.002)
    assert methods.METHODS["ll_cp"].knobs(config, 1)["ll_rate"] == 0.0
    assert methods.METHODS["ll_cp"].knobs(config, 5)["ll_rate"] == 0.002  # fixed, not growing
    assert methods.METHODS["splc"].knobs(config, 2)["splc_epoch"] == 1  # 0-based


def test_role_init_and_prior():
    h = Harness("role", **{"losses.role.expected_num_pos": 1.5})
    z = np.asarray(h.state.method_params["label_logits"])
    observed = h.observed == 1
    np.testing.assert_allclose(z[observed], np.log(0.995 / 0.005), rtol=1e-5)
    assert np.all(np.abs(z[~observed]) < np.log(1.5))
    assert float(h.state.method_state["expected_num_pos"]) == 1.5


def test_prior_without_cardinality_is_a_config_error():
    data = methods.DataInfo(num_train=N, num_classes=C, observed=np.zeros((N, C), np.float32))
    with pytest.raises(config_utils.ConfigError, match="expected_num_pos"):
        methods.METHODS["epr"].init(_config("epr"), data, jax.random.PRNGKey(0))


def test_apl_epoch_end_writes_soft_negatives():
    config = _config("em_apl", **{"losses.em_apl.warmup": 2, "num_epochs": 5})
    method = methods.METHODS["em_apl"]
    _, observed, _ = _data()
    data = methods.DataInfo(num_train=N, num_classes=C, observed=observed)
    _, state = method.init(config, data, jax.random.PRNGKey(0))
    state = jax.device_get(state)
    probs = np.random.default_rng(3).random((N, C)).astype(np.float32)
    calls = []

    def predict():
        calls.append(1)
        return probs

    assert method.epoch_end(config, 1, state, predict) is state and not calls  # before warmup
    new = method.epoch_end(config, 2, state, predict)
    expected = loss_schedules.apl_update(probs, observed, (observed == 0).sum(0), 0.9, 5, 2)
    np.testing.assert_array_equal(new["observed"], expected)
    # n_c = int(0.9 * U_c^0 / 3) soft negatives per class, o = -p, observed positives untouched.
    per_class = (0.9 * (observed == 0).sum(0) / 3).astype(int)
    assert per_class.min() > 0
    np.testing.assert_array_equal((new["observed"] < 0).sum(0), per_class)
    np.testing.assert_array_equal(new["observed"][observed == 1], 1.0)
    np.testing.assert_array_equal(new["initial_unobserved"], state["initial_unobserved"])
    assert new["observed"].dtype == np.float32
    # Never revised: a second pass adds 3 more per class and keeps the first ones.
    newer = method.epoch_end(config, 3, new, predict)
    np.testing.assert_array_equal((newer["observed"] < 0).sum(0), 2 * per_class)
    np.testing.assert_array_equal(newer["observed"][new["observed"] < 0], new["observed"][new["observed"] < 0])
    assert method.epoch_end(config, 5, newer, predict) is newer  # the final epoch's pass is skipped


def test_losses_config_block_is_locked():
    config = _config("an")
    assert config.losses.ll_r.delta_rel == 0.002 and config.losses.gr.beta == (0.0, 2.0, -2.0, -2.0)
    with pytest.raises(AttributeError):
        config.losses.role.not_a_key = 1.0
    with pytest.raises(config_utils.ConfigError, match="losses.role.not_a_key"):
        config_utils.check_overrides(["--config=configs/default.py", "--config.losses.role.not_a_key=1"])


def _read_checkpointed_method_state(run_dir):
    import orbax.checkpoint as ocp

    ckpt_dir = os.path.join(run_dir, "checkpoints")
    latest = max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
    restored = ocp.StandardCheckpointer().restore(os.path.join(ckpt_dir, str(latest), "state"))
    return restored["method_state"]


def test_sweep_runner_writes_tables(data_dir, tmp_path):
    from adagc_jax import sweep
    from configs import benchmark as benchmark_config

    config = benchmark_config.get_config("dataset=synthetic_scenes,noise=random,seeds=1,methods=an+em_apl,epochs=2")
    config_utils.set_keys(config, {**TINY_OVERRIDES, "dataset.data_dir": str(data_dir), "losses.em_apl.warmup": 1,
                                   "num_epochs": 2, "eval.train_diagnostics": False,
                                   "eval.test_every_epoch": False})
    workdir = tmp_path / "bench"
    rows = sweep.run(config, str(workdir))
    assert [r["method"] for r in rows] == ["an", "em_apl"]

    for name in ("results.md", "results.csv"):
        assert (workdir / name).stat().st_size > 0
    with open(workdir / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == ["an", "em_apl"]
    for r in table:
        assert 0.0 <= float(r["test_mAP"]) <= 100.0
        assert r["micro_F1"] and r["macro_F1"]
        assert sum(k.startswith("AP_") for k in r) == 12  # synthetic_scenes has 12 classes
    markdown = (workdir / "results.md").read_text()
    assert "| an |" in markdown and "| em_apl |" in markdown and "Per-class AP" in markdown
    for m in ("an", "em_apl"):
        assert (workdir / m / "seed_0" / "results.json").exists()

    # APL's epoch-end pass ran in the loop after epoch 1 (warmup 1) and its table was checkpointed.
    apl_state = _read_checkpointed_method_state(str(workdir / "em_apl" / "seed_0"))
    assert np.sum(np.asarray(apl_state["observed"]) < 0) > 0

    # A second call finds every run finished and only rebuilds the tables.
    mtime = os.path.getmtime(workdir / "an" / "seed_0" / "results.json")
    assert [r["method"] for r in sweep.run(config, str(workdir))] == ["an", "em_apl"]
    assert os.path.getmtime(workdir / "an" / "seed_0" / "results.json") == mtime


def test_sweep_reuses_finished_runs_only_when_the_model_would_be_the_same():
    from adagc_jax import sweep

    saved = {"method": "an", "optimizer": {"learning_rate": 1e-3}, "checkpoint": {"every_epochs": 1000},
             "log": {"progress_bar": False}, "eval": {"test_every_epoch": False, "train_diagnostics": False,
                                                      "empty_class_ap": "skip"}}
    current = {"method": "an", "optimizer": {"learning_rate": 1e-3}, "checkpoint": {"every_epochs": 1},
               "log": {"progress_bar": True}, "eval": {"test_every_epoch": True, "train_diagnostics": True,
                                                       "empty_class_ap": "skip"}}
    sweep._check_finished_run("run", saved, current)  # logging/checkpointing/diagnostics only: reused
    for key, value in (("optimizer", {"learning_rate": 3e-3}), ("eval", {**current["eval"], "empty_class_ap": "zero"})):
        with pytest.raises(config_utils.ConfigError, match=key):
            sweep._check_finished_run("run", saved, {**current, key: value})
