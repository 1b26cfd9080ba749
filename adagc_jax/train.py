"""train_and_evaluate(config, workdir): the epoch loop that wires data, the jitted step, evaluation, the trigger
and checkpoints together (ARCHITECTURE.md data flow). Resumes automatically from the workdir's latest checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from adagc_jax import (checkpoint, config_utils, evaluate, input_pipeline, methods, metrics, models, noise, optim,
                       parallel,
                       plots, train_step as train_step_lib, trigger as trigger_lib)
from adagc_jax.state import TrainState

TRIGGER_SIGNALS = ("observed_fit", "train_loss", "unobserved_mass")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


from adagc_jax.errors import NonFiniteLossError


def validate_config(config) -> None:
    """Checks names and values a run depends on, before any work is done (clear errors, nothing lost)."""
    config_utils.choice(config.method, sorted(methods.METHODS), "method")
    config_utils.choice(config.noise, noise.NOISE_TYPES, "noise")
    config_utils.choice(config.dataset.name, sorted(input_pipeline.DATASET_MODULES), "dataset.name")
    config_utils.choice(config.model.name, sorted(models.MODELS), "model.name")
    config_utils.choice(config.model.dtype, sorted(DTYPES), "model.dtype")
    config_utils.choice(config.optimizer.name, optim.OPTIMIZERS, "optimizer.name")
    config_utils.choice(config.optimizer.schedule, optim.SCHEDULES, "optimizer.schedule")
    config_utils.choice(config.trigger.signal, TRIGGER_SIGNALS, "trigger.signal")
    config_utils.choice(config.eval.empty_class_ap, ("skip", "zero"), "eval.empty_class_ap")
    for key in ("num_epochs", "batch_size", "eval_batch_size"):
        if int(config[key]) <= 0:
            raise config_utils.ConfigError(f"{key} must be positive, got {config[key]}")
    if not 0.0 <= float(config.ema.m_w) <= 1.0 or not 0.0 <= float(config.ema.m_p) <= 1.0:
        raise config_utils.ConfigError("ema.m_w and ema.m_p must lie in [0, 1]")
    if float(config.mixup.alpha) < 0:
        raise config_utils.ConfigError(f"mixup.alpha must be >= 0, got {config.mixup.alpha}")


def make_trigger(config) -> trigger_lib.AdaptiveTrigger:
    t = config.trigger
    max_epochs = int(t.max_epochs) if int(t.max_epochs) > 0 else max(1, int(config.num_epochs) // 2)
    return trigger_lib.AdaptiveTrigger(rule=t.rule, window=int(t.window), eps=float(t.eps),
                                       min_epochs=int(t.min_epochs), max_epochs=max_epochs,
                                       epoch=int(t.epoch) if int(t.epoch) >= 0 else None,
                                       rampup_epochs=int(config.gc.rampup_epochs))


def model_from_config(config, num_classes: int):
    # Every config has the same model keys (e.g. small_cnn's `widths`), whichever model it picks: pass the picked
    # model only the options it takes (name already validated by validate_config).
    accepted = set(models.model_options(models.MODELS[config.model.name]))
    kwargs = {k: v for k, v in config.model.items() if k in accepted}
    kwargs["dtype"] = DTYPES[kwargs.get("dtype", "float32")]
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    return models.get_model(config.model.name, num_classes, **kwargs)


def create_state(config, model, method, optimizer, method_optimizer, info, observed, mesh,
                 label_cardinality: float | None = None) -> TrainState:
    """Initial state, built on the host and placed replicated on the mesh."""
    key = jax.random.PRNGKey(int(config.seed))
    init_key, method_key, step_key = jax.random.split(key, 3)
    variables = models.init_variables(model, init_key, info.image_shape)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    data = methods.DataInfo(num_train=info.num_examples["train"], num_classes=info.num_classes, observed=observed,
                            label_cardinality=label_cardinality)
    method_params, method_state = method.init(config, data, method_key)
    teacher = None
    if config.ema.weights:
        # The teacher starts as a copy of the student (METHOD.md section 3).
        teacher = jax.tree.map(jnp.array, {"params": params, "batch_stats": batch_stats})
    state = TrainState(
        step=jnp.asarray(0, jnp.int32), params=params, batch_stats=batch_stats, opt_state=optimizer.init(params),
        teacher=teacher, method_params=method_params,
        method_opt_state=method_optimizer.init(method_params) if method_optimizer is not None else {},
        method_state=method_state, rng=step_key)
    return parallel.replicate(state, mesh)


def _epoch_record(epoch, sums, steps, seconds, batch_size, gc_weight, signal_name):
    """Per-epoch training numbers from the accumulated sums."""
    def ratio(num, den):
        return float(sums[num] / sums[den]) if sums[den] > 0 else None

    record = {
        "epoch": epoch,
        "train_loss": ratio("loss", "batches"),
        "gc_weight": float(gc_weight),
        "observed_fit": ratio("observed_fit", "observed_rows"),
        "unobserved_mass": ratio("unobserved_mass", "unobserved_entries"),
        "images_per_s": steps * batch_size / seconds if seconds > 0 else None,
        "epoch_train_s": seconds,
    }
    an_key = "an_loss" if "an_loss" in sums else "loss"
    record["an_loss"] = ratio(an_key, "batches")
    record["trigger_signal"] = {"observed_fit": record["observed_fit"], "train_loss": record["an_loss"],
                                "unobserved_mass": record["unobserved_mass"]}[signal_name]
    if "diag_pl_true_positive" in sums:  # AdaGC: pseudo-labels at 0.5 against the hidden labels (unobserved entries)
        record["pseudo_label_precision"] = ratio("diag_pl_true_positive", "diag_pl_predicted_positive")
        record["pseudo_label_recall"] = ratio("diag_pl_true_positive", "diag_pl_hidden_positive")
    return record


def train_diagnostics(predictions: dict, observed: np.ndarray, empty_class_ap: str) -> dict:
    """Label recovery on the TRAINING images against their hidden full labels (METHOD.md section 7; never a loss).

    `train_mAP`: mAP of the predictions on the un-augmented training images. `train_fn_recall`: the fraction of
    unobserved true positives (the false negatives of assume-negative training) predicted >= 0.5: it falls when the
    network memorises which label of each image was annotated. `train_observed_fit`: mean probability of the
    observed positive.
    """
    labels = predictions["labels"]
    probs = predictions["model"]
    observed = observed[predictions["ids"]]
    hidden = labels * (1.0 - observed)
    has_observed = observed.sum(axis=1) > 0
    return {
        "train_mAP": metrics.mean_average_precision(probs, labels, empty_class_ap=empty_class_ap),
        "train_fn_recall": float(((probs >= 0.5) * hidden).sum() / max(hidden.sum(), 1.0)),
        "train_observed_fit": float((probs * observed).sum(axis=1)[has_observed].mean()) if has_observed.any()
        else None,
    }


class _Writer:
    """TensorBoard scalars (one writer, main process only)."""

    def __init__(self, workdir, enabled):
        self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) if enabled else None

    def scalars(self, step, values: dict):
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for k, v in values.items():
                if isinstance(v, (int, float)) and v is not None and np.isfinite(v):
                    tf.summary.scalar(k, v)
        self._writer.flush()


def _versions():
    import flax
    import optax
    import orbax.checkpoint
    import tensorflow_datasets as tfds
    import adagc_jax
    return {"adagc_jax": adagc_jax.__version__, "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None, "flax": flax.__version__,
            "optax": optax.__version__, "orbax_checkpoint": orbax.checkpoint.__version__,
            "tensorflow": tf.__version__, "tensorflow_datasets": tfds.__version__, "numpy": np.__version__,
            "devices": [str(d) for d in jax.devices()]}


def _log(message: str) -> None:
    if parallel.is_main_process():
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=False, default=lambda o: None)
    os.replace(tmp, path)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains, evaluates and checkpoints one run; returns the results dict also written to workdir/results.json."""
    validate_config(config)
    method = methods.get_method(config.method)
    # TF feeds data only: it must never take the accelerator's memory (style rule 6).
    tf.config.set_visible_devices([], "GPU")
    os.makedirs(workdir, exist_ok=True)
    main = parallel.is_main_process()

    mesh = parallel.make_mesh(None if int(config.num_devices) <= 0 else int(config.num_devices))
    parallel.check_batch_size(int(config.batch_size), mesh, "batch_size")
    parallel.check_batch_size(int(config.eval_batch_size), mesh, "eval_batch_size")

    builder = input_pipeline.get_builder(config.dataset)
    input_pipeline.prepare(builder, config.dataset)
    info = input_pipeline.dataset_info(builder, config.dataset)
    pipeline = input_pipeline.InputPipeline(builder, config, info, jax.process_index(), jax.process_count())
    steps_per_epoch = pipeline.steps_per_epoch()
    if steps_per_epoch == 0:
        raise config_utils.ConfigError(
            f"batch_size={config.batch_size} is larger than the {info.num_examples['train']} training images")

    train_table = input_pipeline.read_label_table(builder, "train")
    observed = noise.single_positive(train_table["labels"], config.noise, int(config.seed),
                                     dominant=train_table["dominant_label"])

    model = model_from_config(config, info.num_classes)
    optimizer, schedule = optim.make_optimizer(config.optimizer, int(config.num_epochs), steps_per_epoch)
    method_optimizer = method.param_optimizer(config, schedule) if method.param_optimizer is not None else None
    state = create_state(config, model, method, optimizer, method_optimizer, info, observed, mesh,
                         label_cardinality=float(train_table["labels"].sum(axis=1).mean()))
    trigger = make_trigger(config)
    history: list[dict] = []
    train_seconds = 0.0
    start_epoch = 1

    ckpt = checkpoint.Checkpointer(workdir, int(config.checkpoint.keep))
    latest = ckpt.latest_epoch()
    if latest is not None:
        state, host, tables = ckpt.restore(latest, state)
        saved_config = host.get("config", {})
        if saved_config and saved_config != json.loads(config.to_json_best_effort()):
            _log(f"WARNING: the config differs from the one saved in {ckpt.directory}; resuming with the new one")
        history, train_seconds = host["history"], host["train_seconds"]
        trigger.load_state_dict(host["trigger"])
        observed = tables["observed"]
        start_epoch = latest + 1
        _log(f"Resumed from {ckpt.directory} at epoch {latest}")

    train_step = train_step_lib.make_train_step(config, model, method, optimizer, mesh, method_optimizer)
    eval_step = train_step_lib.make_eval_step(model, mesh)
    writer = _Writer(workdir, main)
    if main:
        _write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))

    def models_to_evaluate(st):
        out = {"student": st.student_variables()}
        if st.teacher is not None:
            out["teacher"] = st.teacher
        return out

    reported = "teacher" if config.ema.weights else "student"
    batch_size = int(config.batch_size)
    log_every = max(1, int(config.log.every_steps))

    for epoch in range(start_epoch, int(config.num_epochs) + 1):
        gc_weight = trigger.gc_weight() if method.uses_gc_weight else 0.0
        knobs = {"epoch": jnp.float32(epoch), "gc_weight": jnp.float32(gc_weight)}
        knobs.update({k: jnp.float32(v) for k, v in method.knobs(config, epoch).items()})
        knobs = parallel.replicate(knobs, mesh)
        sums = parallel.replicate(train_step_lib.init_sums(method.aux_keys), mesh)

        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config.num_epochs}", unit="step", leave=False,
                   disable=not (main and config.log.progress_bar), dynamic_ncols=True)
        start = time.perf_counter()
        steps = 0
        for batch in pipeline.train_batches(epoch, observed):
            batch = parallel.shard_batch(batch, mesh)
            with jax.transfer_guard("disallow"):
                state, sums = train_step(state, sums, batch, knobs)
            steps += 1
            bar.update(1)
            if steps % log_every == 0 or steps == steps_per_epoch:
                running = jax.device_get({k: sums[k] for k in ("loss", "batches", "first_nonfinite_step")})
                _raise_if_nonfinite(running, epoch, ckpt)
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{running['loss'] / running['batches']:.4f}",
                                img_s=f"{steps * batch_size / elapsed:.0f}")
        bar.close()
        host_sums = jax.device_get(sums)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        _raise_if_nonfinite(host_sums, epoch, ckpt)
        if method.epoch_end is not None:
            # Host-side state update between epochs (e.g. APL's pseudo-labels); checkpointed with the state below.
            def predict_train(st=state):
                return evaluate.predict(eval_step, {"student": st.student_variables()}, pipeline, "train",
                                        mesh)["student"]
            method_state = method.epoch_end(config, epoch, jax.device_get(state.method_state), predict_train)
            state = state.replace(method_state=parallel.replicate(method_state, mesh))

        record = _epoch_record(epoch, host_sums, steps, seconds, batch_size, gc_weight, config.trigger.signal)
        record["learning_rate"] = float(schedule(int(jax.device_get(state.step))))
        trigger.update(record["trigger_signal"])
        record["trigger_fired_epoch"] = trigger.fired_epoch

        if epoch % int(config.eval.every_epochs) == 0 or epoch == int(config.num_epochs):
            val = evaluate.evaluate(eval_step, models_to_evaluate(state), pipeline, "validation", mesh,
                                    config.eval.empty_class_ap)
            record["val_mAP"] = val[reported]["mAP"]
            record["val_student_mAP"] = val["student"]["mAP"]
            if config.eval.test_every_epoch:
                # The reported model only: the per-epoch test curve is for plots, and a second model would double
                # the cost of the largest split.
                test = evaluate.evaluate(eval_step, {reported: models_to_evaluate(state)[reported]}, pipeline,
                                         "test", mesh, config.eval.empty_class_ap)
                record["test_mAP"] = test[reported]["mAP"]
        if config.eval.train_diagnostics and (epoch % int(config.eval.every_epochs) == 0
                                              or epoch == int(config.num_epochs)):
            reported_model = models_to_evaluate(state)[reported]
            preds = evaluate.predict(eval_step, {"model": reported_model}, pipeline, "train", mesh)
            record.update(train_diagnostics(preds, np.asarray(observed), config.eval.empty_class_ap))
        history.append(record)
        writer.scalars(epoch, record)
        _log(_format_record(record, config.num_epochs))

        if epoch % int(config.checkpoint.every_epochs) == 0 or epoch == int(config.num_epochs):
            host = {"epoch": epoch, "history": history, "train_seconds": train_seconds,
                    "trigger": trigger.state_dict(), "config": json.loads(config.to_json_best_effort())}
            ckpt.save(epoch, state, host, {"observed": observed})
        if main:
            plots.plot_training(history, os.path.join(workdir, "training.png"),
                                title=f"{config.method} on {info.name} ({config.noise})",
                                fired_epoch=trigger.fired_epoch)
            plots.plot_diagnostics(history, os.path.join(workdir, "diagnostics.png"),
                                   title=f"{config.method} on {info.name} ({config.noise}): training dynamics",
                                   fired_epoch=trigger.fired_epoch, signal_name=config.trigger.signal)

    # Final evaluation of the last model on both held-out splits, student and teacher.
    final_models = models_to_evaluate(state)
    results = {}
    for split, key in (("test", "test"), ("validation", "val")):
        per_model = evaluate.evaluate(eval_step, final_models, pipeline, split, mesh, config.eval.empty_class_ap)
        results[key] = {"mAP": per_model[reported]["mAP"], "reported_model": reported, **per_model}
    total_steps = int(jax.device_get(state.step))
    results.update({
        "history": history,
        "trigger": {"fired_epoch": trigger.fired_epoch, "signal": list(trigger.history),
                    "signal_name": config.trigger.signal},
        "dataset": {"name": info.name, "num_examples": info.num_examples, "class_names": list(info.class_names),
                    "image_shape": list(info.image_shape)},
        "config": json.loads(config.to_json_best_effort()),
        "versions": _versions(),
        "wall_time_s": train_seconds,
        "steps_per_s": total_steps / train_seconds if train_seconds > 0 else None,
    })
    if main:
        _write_json(os.path.join(workdir, "results.json"), results)
        _log(f"Done: test mAP {results['test']['mAP']:.4f} ({reported}), val mAP {results['val']['mAP']:.4f}; "
             f"results in {os.path.join(workdir, 'results.json')}")
    ckpt.close()
    return results


def _raise_if_nonfinite(sums, epoch, ckpt):
    bad = int(sums["first_nonfinite_step"])
    if bad == train_step_lib.NO_NONFINITE_STEP:
        return
    last = ckpt.latest_epoch()
    kept = (f"the last good checkpoint (epoch {last}) is kept in {ckpt.directory}" if last is not None
            else "no checkpoint had been written yet")
    raise NonFiniteLossError(
        f"non-finite loss at step {bad + 1} (epoch {epoch}); training stopped and nothing after it was saved: "
        f"{kept}. Lower optimizer.learning_rate or check the inputs.")


def _format_record(r, num_epochs):
    parts = [f"epoch {r['epoch']:3d}/{num_epochs}", f"loss {r['train_loss']:.4f}"]
    for key, label in (("val_mAP", "val mAP"), ("test_mAP", "test mAP")):
        if r.get(key) is not None:
            parts.append(f"{label} {r[key]:.4f}")
    parts.append(f"fit {r['observed_fit']:.3f}" if r.get("observed_fit") is not None else "")
    if r.get("pseudo_label_recall") is not None:  # AdaGC
        parts.append(f"gc_w {r['gc_weight']:.2f}")
    if r.get("images_per_s"):
        parts.append(f"{r['images_per_s']:.0f} img/s")
    return " | ".join(p for p in parts if p)
