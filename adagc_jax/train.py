"""train_and_evaluate(config, workdir): the epoch loop that wires data, the jitted step, evaluation, the trigger
and checkpoints together (ARCHITECTURE.md data flow). Resumes automatically from the workdir's latest checkpoint.

One function per responsibility: `setup` (data, experiment, state, resume), `train_epoch` (the step loop),
`evaluate.evaluate_epoch` (validation, test curve, training diagnostics), `save_checkpoint`, `final_results`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from adagc_jax import (
    checkpoint,
    config_checks,
    errors,
    evaluate,
    experiment,
    input_pipeline,
    noise,
    parallel,
    plots,
    predict,
    prepare,
    reporting,
    selection,
)
from adagc_jax import train_step as train_step_lib
from adagc_jax import workdir as workdir_lib
from adagc_jax.errors import ConfigError, NonFiniteLossError


def due(epoch: int, every: int, last: int) -> bool:
    """Whether a periodic action (evaluation, checkpoint) runs after `epoch`: every `every` epochs and at the end."""
    return epoch % every == 0 or epoch == last


@dataclasses.dataclass
class Run:
    """The mutable state of one run's loop, host side."""

    config: object
    workdir: str
    exp: experiment.Experiment
    pipeline: input_pipeline.InputPipeline
    state: object  # TrainState on the devices
    observed: np.ndarray  # the single-positive table, indexed by example id
    trigger: object
    ckpt: checkpoint.Checkpointer
    writer: reporting.TensorBoard
    history: list = dataclasses.field(default_factory=list)
    resumes: list = dataclasses.field(default_factory=list)  # config changes accepted on resume (num_epochs, forced)
    skipped_files: list = dataclasses.field(default_factory=list)  # unreadable files left out (skip_corrupt)
    val_single_positive: np.ndarray | None = None  # one positive per validation image (selection without labels)
    eval_source: evaluate.EvalSplitCache | None = None  # the evaluation splits, device-resident after a first pass
    best: selection.BestCheckpoints | None = None
    timing: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(
        ("setup_s", "train_s", "eval_s", "checkpoint_s", "plot_s"), 0.0))
    start_epoch: int = 1

    @property
    def rolls_back(self) -> bool:
        """Whether this run may roll back: the `act` trigger switching GC on (METHOD.md 6b); for methods without
        GC the trigger only runs as a diagnostic."""
        return self.config.trigger.rule == "act" and self.exp.method.uses_gc_weight

    @property
    def reported(self) -> str:
        """The reported model: the teacher where the run has one, else the student (ARCHITECTURE.md)."""
        return "teacher" if self.config.ema.weights else "student"


def setup(config, workdir: str) -> Run:
    """Prepares the data, builds the experiment and the initial state, and resumes from the latest checkpoint."""
    start = time.perf_counter()
    mesh = parallel.make_mesh(None if config.num_devices <= 0 else config.num_devices)
    parallel.check_batch_size(config.batch_size, mesh, "batch_size")
    parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")

    builder = input_pipeline.get_builder(config.dataset)
    prepare.prepare(builder, config.dataset, log=reporting.log)
    skipped = prepare.skipped_files(builder)  # prepare() has printed them; results.json records them
    info = input_pipeline.dataset_info(builder, config.dataset)
    pipeline = input_pipeline.InputPipeline(builder, config, info, jax.process_index(), jax.process_count())
    steps_per_epoch = pipeline.steps_per_epoch()
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size={config.batch_size} is larger than the {info.num_examples['train']} "
                          "training images")
    train_table = input_pipeline.read_label_table(builder, "train")
    observed = noise.single_positive(train_table["labels"], config.noise, config.seed,
                                     dominant=train_table["dominant_label"])
    val_table = input_pipeline.read_label_table(builder, "validation")
    val_single_positive = noise.single_positive(val_table["labels"], config.noise, config.seed,
                                                dominant=val_table["dominant_label"], split="validation")

    exp = experiment.build(config, info, steps_per_epoch, mesh)
    state = exp.initial_state(observed, label_cardinality=float(train_table["labels"].sum(axis=1).mean()))
    run = Run(config=config, workdir=workdir, exp=exp, pipeline=pipeline, state=state, observed=observed,
              trigger=experiment.make_trigger(config), ckpt=None,
              writer=reporting.TensorBoard(workdir, parallel.is_main_process()), skipped_files=skipped,
              val_single_positive=val_single_positive, best=selection.BestCheckpoints(workdir),
              eval_source=evaluate.EvalSplitCache(pipeline, mesh, int(config.eval.device_cache_mb * 2**20)))
    # The act trigger may roll back to any warm-up epoch: keep every checkpoint until it fires (save_checkpoint
    # prunes them to checkpoint.keep after that).
    run.ckpt = checkpoint.Checkpointer(workdir, None if run.rolls_back else config.checkpoint.keep)
    _resume(run)
    run.timing["setup_s"] += time.perf_counter() - start
    return run


def _resume(run: Run) -> None:
    """Continues from the newest readable checkpoint, if any: refuses a config that would train another model
    (workdir.check_resume), skips a damaged checkpoint for the previous one, and records what changed."""
    found = run.ckpt.latest_host()
    if found is None:
        return
    epoch, host = found
    check = workdir_lib.check_resume(host.get("config", {}), _config_dict(run.config),
                                     force=run.config.resume == "force", resumed_epoch=epoch,
                                     checkpoint_dir=run.ckpt.directory)
    restored = run.ckpt.restore_latest(run.state)
    for notice in check.notices + restored.notices:
        reporting.log(notice)
    run.state, host = restored.state, restored.host
    run.history = host["history"]
    run.resumes = host.get("resumes", [])
    if check.history_record():
        run.resumes.append({"epoch": restored.epoch, **check.history_record()})
    run.timing["train_s"] = host["train_seconds"]
    run.trigger.load_state_dict(host["trigger"])
    run.observed = restored.tables["observed"]
    run.start_epoch = restored.epoch + 1
    reporting.log(f"Resumed from {run.ckpt.directory} at epoch {restored.epoch}")
    if run.rolls_back and run.trigger.needs_rollback:  # stopped between the act detection and its rollback
        run.start_epoch = rollback(run)


def _config_dict(config) -> dict:
    return json.loads(config.to_json_best_effort())


def train_epoch(run: Run, epoch: int, gc_weight: float):
    """The steps of one epoch; returns the epoch's sums (host numpy), the number of steps and the seconds spent
    waiting for the input pipeline. Stops at the first non-finite loss (NonFiniteLossError naming the step and the
    last good checkpoint)."""
    config, exp = run.config, run.exp
    knobs, sums = exp.knobs(epoch, gc_weight), exp.init_sums()
    log_every = config.log.every_steps
    bar = tqdm(total=exp.steps_per_epoch, desc=f"epoch {epoch}/{config.num_epochs}", unit="step", leave=False,
               disable=not (parallel.is_main_process() and config.log.progress_bar), dynamic_ncols=True)
    start, steps, state, waited = time.perf_counter(), 0, run.state, 0.0
    batches = iter(run.pipeline.train_batches(epoch, run.observed))
    while True:
        # Steps are dispatched asynchronously, so time spent here is time the devices may sit idle for data.
        asked = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - asked
        if batch is None:
            break
        batch = parallel.shard_batch(batch, exp.mesh)
        with jax.transfer_guard("disallow"):
            state, sums = exp.train_step(state, sums, batch, knobs)
        steps += 1
        bar.update(1)
        errors.raise_if_stop_requested()
        if steps % log_every == 0 or steps == exp.steps_per_epoch:
            running = jax.device_get({k: sums[k] for k in ("loss", "batches", "first_nonfinite_step")})
            _raise_if_nonfinite(running, epoch, run.ckpt)
            bar.set_postfix(loss=f"{running['loss'] / running['batches']:.4f}",
                            img_s=reporting.rate(steps * config.batch_size / (time.perf_counter() - start)))
    bar.close()
    run.state = state
    host_sums = jax.device_get(sums)
    _raise_if_nonfinite(host_sums, epoch, run.ckpt)
    return host_sums, steps, waited


def _epoch_end(run: Run, epoch: int) -> None:
    """The method's host-side update between epochs (e.g. APL's pseudo-labels); checkpointed with the state."""
    exp = run.exp
    if exp.method.epoch_end is None:
        return

    def predict_train(st=run.state):
        return evaluate.predict(exp.eval_step, {"student": st.student_variables()}, run.eval_source, "train",
                                exp.mesh)["student"]

    method_state = exp.method.epoch_end(run.config, epoch, jax.device_get(run.state.method_state), predict_train)
    run.state = run.state.replace(method_state=parallel.replicate(method_state, exp.mesh))


def epoch_record(epoch, sums, steps, seconds, batch_size, gc_weight, signal_name):
    """Per-epoch training numbers from the accumulated sums."""
    def ratio(num, den):
        return float(sums[num] / sums[den]) if sums[den] > 0 else None

    record = {
        "epoch": epoch,
        "train_loss": ratio("loss", "batches"),
        "gc_weight": float(gc_weight),
        "observed_fit": ratio("observed_fit", "observed_rows"),
        "unobserved_mass": ratio("unobserved_mass", "unobserved_entries"),
        "observed_top1": ratio("observed_top1", "observed_rows"),
        "images_per_s": steps * batch_size / seconds if seconds > 0 else None,
        "epoch_train_s": seconds,
    }
    an_key = "an_loss" if "an_loss" in sums else "loss"
    record["an_loss"] = ratio(an_key, "batches")
    record["trigger_signal"] = {"observed_fit": record["observed_fit"], "train_loss": record["an_loss"],
                                "unobserved_mass": record["unobserved_mass"],
                                "observed_top1": record["observed_top1"]}[signal_name]
    if "diag_pl_true_positive" in sums:  # AdaGC: pseudo-labels at 0.5 against the hidden labels (unobserved entries)
        record["pseudo_label_precision"] = ratio("diag_pl_true_positive", "diag_pl_predicted_positive")
        record["pseudo_label_recall"] = ratio("diag_pl_true_positive", "diag_pl_hidden_positive")
    return record


def run_epoch(run: Run, epoch: int) -> dict:
    """Trains, updates the trigger, evaluates (when due) and checkpoints (when due) one epoch; returns its record."""
    config, exp = run.config, run.exp
    gc_weight = exp.gc_weight(run.trigger)
    start = time.perf_counter()
    sums, steps, waited = train_epoch(run, epoch, gc_weight)
    seconds = time.perf_counter() - start
    run.timing["train_s"] += seconds
    _epoch_end(run, epoch)

    record = epoch_record(epoch, sums, steps, seconds, config.batch_size, gc_weight, config.trigger.signal)
    record["epoch_input_wait_s"] = waited
    record["learning_rate"] = float(exp.schedule(int(jax.device_get(run.state.step))))
    run.trigger.update(record["trigger_signal"])
    record["trigger_fired_epoch"] = run.trigger.fired_epoch

    if due(epoch, config.eval.every_epochs, config.num_epochs):
        start = time.perf_counter()
        record.update(evaluate.evaluate_epoch(exp.eval_step, run.state, run.eval_source, exp.mesh, config,
                                              run.observed, run.reported, run.val_single_positive,
                                              curves=due(epoch, config.eval.curves_every_epochs, config.num_epochs)))
        run.timing["eval_s"] += time.perf_counter() - start
    run.history.append(record)
    if "val_mAP" in record:  # before the regular checkpoint: a kill in between repeats this epoch, not the save
        start = time.perf_counter()
        run.best.update(run.history, evaluate.evaluated_models(run.state))
        run.timing["checkpoint_s"] += time.perf_counter() - start
    run.writer.scalars(epoch, record)
    reporting.log(reporting.epoch_line(record, config.num_epochs))
    stall = selection.stall_warning(run.history, config.eval.stall_epochs)
    if stall and selection.stall_warning(run.history[:-1], config.eval.stall_epochs) is None:
        reporting.log(f"WARNING: {stall}")

    stopped = selection.early_stop_epoch(run.history, config.eval.early_stop_points) == epoch
    if stopped:
        best = max(h["val_mAP"] for h in run.history if h.get("val_mAP") is not None and not h.get("rolled_back"))
        reporting.log(f"Early stop after epoch {epoch}: validation mAP {record['val_mAP']:.4f} is "
                      f"{100 * (best - record['val_mAP']):.2f} points below its best {best:.4f} "
                      f"(eval.early_stop_points={config.eval.early_stop_points})")
    if due(epoch, config.checkpoint.every_epochs, config.num_epochs) or stopped:
        # Plots are redrawn with the curves (drawing them every epoch cost ~10 % of a small run); the end of the run
        # draws them again in any case.
        save_checkpoint(run, epoch, plot=due(epoch, config.eval.curves_every_epochs, config.num_epochs) or stopped)
    return record


def rollback(run: Run) -> int:
    """The act trigger's rollback (METHOD.md 6b): restores the complete state saved after epoch F (student,
    teacher, optimizer, memory bank, visit counts, method state, RNG, observed table; the data order is seeded by
    the epoch), marks the discarded epochs in the history (kept for the plots) and deletes their checkpoints.
    Returns the epoch training continues with, F + 1.

    Kill-safe: stopped before the deletion, a re-run resumes from the detection epoch's checkpoint, whose trigger
    still asks for the rollback; stopped after it, a re-run resumes from epoch F with the trigger of epoch F and
    replays the warm-up epochs, which are deterministic and detect again.
    """
    trigger = run.trigger
    fired, detected = trigger.fired_epoch, trigger.detected_epoch
    run.state, _, tables = run.ckpt.restore(fired, run.state)
    run.observed = tables["observed"]
    trigger.rollback()
    for record in run.history:
        if record["epoch"] > fired and not record.get("rolled_back"):
            record["rolled_back"] = True
    _reselect_after_rollback(run)
    run.ckpt.delete_after(fired)
    reporting.log(f"act trigger: detected at epoch {detected}; rolled back to epoch {fired} (epochs "
                  f"{fired + 1}-{detected} are re-run with GC on)")
    return fired + 1


def _reselect_after_rollback(run: Run) -> None:
    """A best checkpoint from a discarded warm-up epoch is replaced by the best kept epoch's models, read from the
    warm-up checkpoints (all still on disk until the rollback deletes them)."""
    for key in selection.SELECTIONS:
        epoch = selection.best_epoch(run.history, key)
        if epoch is None or run.best.kept_epoch(key) == epoch:
            continue
        state, _, _ = run.ckpt.restore(epoch, run.state)
        value = next(h[key] for h in run.history if h["epoch"] == epoch and not h.get("rolled_back"))
        run.best.replace(key, epoch, value, evaluate.evaluated_models(state))


def save_checkpoint(run: Run, epoch: int, plot: bool = True) -> None:
    """The device state, the host state (history, trigger, timing, config) and the observed table; then, when
    `plot`, the plots, so that they show what the checkpoint holds."""
    start = time.perf_counter()
    host = {"epoch": epoch, "history": run.history, "train_seconds": run.timing["train_s"],
            "trigger": run.trigger.state_dict(), "config": _config_dict(run.config), "resumes": run.resumes}
    run.ckpt.save(epoch, run.state, host, {"observed": run.observed})
    if run.rolls_back and run.trigger.fired and not run.trigger.needs_rollback:
        run.ckpt.prune(run.config.checkpoint.keep)  # the warm-up checkpoints are no longer needed
    run.timing["checkpoint_s"] += time.perf_counter() - start
    if plot:
        write_plots(run)


def write_plots(run: Run) -> None:
    if not parallel.is_main_process():
        return
    start = time.perf_counter()
    config, name = run.config, run.exp.info.name
    gc_used = run.exp.method.uses_gc_weight
    plots.plot_training(run.history, os.path.join(run.workdir, "training.png"),
                        title=f"{config.method} on {name} ({config.noise})", fired_epoch=run.trigger.fired_epoch,
                        gc_used=gc_used)
    plots.plot_diagnostics(run.history, os.path.join(run.workdir, "diagnostics.png"),
                           title=f"{config.method} on {name} ({config.noise}): training dynamics",
                           fired_epoch=run.trigger.fired_epoch, signal_name=config.trigger.signal, gc_used=gc_used)
    run.timing["plot_s"] += time.perf_counter() - start


def _evaluate_models(run: Run, models: dict, splits=(("test", "test"), ("validation", "val"))) -> dict:
    out = {}
    for split, key in splits:
        per_model = evaluate.evaluate(run.exp.eval_step, models, run.eval_source, split, run.exp.mesh,
                                      run.config.eval.empty_class_ap)
        out[key] = {"mAP": per_model[run.reported]["mAP"], "reported_model": run.reported, **per_model}
    return out


def _selected_blocks(run: Run, final_models: dict) -> dict:
    """best_val and best_val_single_positive: the test (and validation) metrics of each selection's checkpoint."""
    out = {}
    for key, name in selection.SELECTIONS.items():
        epoch = selection.best_epoch(run.history, key)
        if epoch is None:
            out[name] = None
            continue
        models = run.best.restore(key, run.best.kept_epoch(key), final_models)
        splits = (("test", "test"), ("validation", "val")) if key == "val_mAP" else (("test", "test"),)
        out[name] = {"epoch": epoch, "selected_by": _SELECTED_BY[key], **_evaluate_models(run, models, splits)}
    complete, single = out["best_val"], out["best_val_single_positive"]
    if complete and single:
        single["epochs_after_complete_label_choice"] = single["epoch"] - complete["epoch"]
        single["test_mAP_minus_complete_label_choice"] = single["test"]["mAP"] - complete["test"]["mAP"]
    return out


_SELECTED_BY = {"val_mAP": "val_mAP (complete labels)",
                "val_single_positive_mAP": "val_mAP against one positive per validation image (run's noise rule)"}


def final_results(run: Run) -> dict:
    """Final evaluation (the last model and each selection's best checkpoint) on both held-out splits, student and
    teacher, and the run's record. `test` / `val` are the blocks of the model `eval.select` reports."""
    config, exp = run.config, run.exp
    start = time.perf_counter()
    final_models = evaluate.evaluated_models(run.state)
    kept = [h["epoch"] for h in run.history if not h.get("rolled_back")]
    final = {"epoch": kept[-1] if kept else None, **_evaluate_models(run, final_models)}
    results = {"select": config.eval.select, "final": final, **_selected_blocks(run, final_models),
               "early_stopped_epoch": selection.early_stop_epoch(run.history, config.eval.early_stop_points)}
    reported = final if config.eval.select == "final" or results["best_val"] is None else results["best_val"]
    results["test"], results["val"] = reported["test"], reported["val"]
    run.timing["eval_s"] += time.perf_counter() - start
    total_steps = int(jax.device_get(run.state.step))
    train_s = run.timing["train_s"]
    info = exp.info
    results.update({
        "history": run.history,
        "trigger": {"fired_epoch": run.trigger.fired_epoch, "detected_epoch": run.trigger.detected_epoch,
                    "rule": config.trigger.rule, "act_fit": run.trigger.act_fit,
                    # act: warm-up epochs trained twice (discarded by the rollback, then re-run with GC).
                    "rolled_back_epochs": sum(1 for h in run.history if h.get("rolled_back")),
                    "signal": list(run.trigger.history), "signal_name": config.trigger.signal,
                    # For methods without GC the trigger only runs as a diagnostic: the epoch it WOULD have fired.
                    "switches_gc": exp.method.uses_gc_weight},
        "dataset": {"name": info.name, "num_examples": info.num_examples, "class_names": list(info.class_names),
                    "image_shape": list(info.image_shape), "skipped_files": run.skipped_files},
        "resumes": run.resumes,
        "config": _config_dict(config),
        "versions": reporting.versions(),
        "train_time_s": train_s,
        "steps_per_s": total_steps / train_s if train_s > 0 else None,
    })
    return results


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains, evaluates and checkpoints one run; returns the results dict also written to workdir/results.json."""
    config_checks.validate_config(config)
    # TF feeds data only: it must never take the accelerator's memory (style rule 6).
    tf.config.set_visible_devices([], "GPU")
    if parallel.is_main_process():
        lock = workdir_lib.WorkdirLock(workdir)  # one run per workdir; a second one fails at once
        notice = lock.acquire()
        if notice:
            reporting.log(notice)
    else:  # the main process holds the lock for the whole job
        lock = None
        workdir_lib.check_writable(workdir)
    try:
        return _train_and_evaluate(config, workdir)
    finally:
        if lock is not None:
            lock.release()


def _train_and_evaluate(config, workdir: str) -> dict:
    run = setup(config, workdir)
    main = parallel.is_main_process()
    if main:
        reporting.write_json(os.path.join(workdir, "config.json"), _config_dict(config))
        predict.write_dataset_info(workdir, run.pipeline.builder, run.exp.info)  # what --mode=predict reads
    epoch = run.start_epoch
    stop_points = config.eval.early_stop_points
    while epoch <= config.num_epochs and selection.early_stop_epoch(run.history, stop_points) is None:
        run_epoch(run, epoch)
        errors.raise_if_stop_requested()
        epoch = rollback(run) if run.rolls_back and run.trigger.needs_rollback else epoch + 1

    results = final_results(run)
    write_plots(run)
    results["timing"] = dict(run.timing)
    # Part of train_s (every epoch trained, resumed ones included): the input pipeline's share of the step time.
    results["input_wait_s"] = sum(h.get("epoch_input_wait_s", 0.0) for h in run.history)
    results["wall_time_s"] = sum(run.timing.values())
    stall = selection.stall_warning(run.history, config.eval.stall_epochs)
    results["warnings"] = [stall] if stall else []
    if main:
        reporting.write_json(os.path.join(workdir, "results.json"), results)
        reporting.log(reporting.timing_line(results["timing"], results["input_wait_s"]))
        reporting.log(reporting.summary_line(results, run.reported))
        reporting.log(f"Results in {os.path.join(workdir, 'results.json')}")
    run.ckpt.close()
    run.best.close()
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
