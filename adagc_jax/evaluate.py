"""Evaluation: predictions and metrics over a whole split (student and teacher in one pass over the data), the
per-epoch evaluation of a run, and the label-recovery diagnostics on the training images."""

from __future__ import annotations

import jax
import numpy as np

from adagc_jax import metrics, parallel


def prepared_batches(pipeline, split: str, mesh):
    """The evaluation batches of `split` ready for the eval step: the images as sharded device arrays, the labels,
    ids and masks on the host (gathered over processes). Streams from the input pipeline."""
    for batch in pipeline.eval_batches(split):
        yield {"image": parallel.shard_batch({"image": batch["image"]}, mesh)["image"],
               # Labels, ids and masks are this process's slice; in multi-host runs gather them like the predictions.
               **parallel.gather_host({"labels": batch["labels"], "id": batch["id"], "mask": batch["mask"]})}


class EvalSplitCache:
    """Keeps the prepared evaluation batches of each split on the devices after the split's first full pass, so a
    run's later evaluations (validation every epoch, the curves every few) skip the input pipeline and the
    host-to-device copies: the eval step then runs back to back on device-resident batches.

    A split is kept only when its batches fit in what is left of `max_bytes` (float32 images, padding included;
    per process); larger splits keep streaming from the pipeline (eval.device_cache_mb; 0 = off).
    """

    def __init__(self, pipeline, mesh, max_bytes: int):
        self.pipeline, self.mesh, self.max_bytes = pipeline, mesh, int(max_bytes)
        self.info = pipeline.info
        self.used_bytes = 0
        self._kept = {}

    def split_bytes(self, split: str) -> int:
        images = self.pipeline.num_eval_batches(split) * int(self.pipeline.config.eval_batch_size)
        return images * int(np.prod(self.info.image_shape)) * 4 // max(1, jax.process_count())

    def batches(self, split: str):
        if split in self._kept:
            yield from self._kept[split]
            return
        size = self.split_bytes(split)
        keep = [] if self.used_bytes + size <= self.max_bytes else None
        for batch in prepared_batches(self.pipeline, split, self.mesh):
            if keep is not None:
                keep.append(batch)
            yield batch
        if keep is not None:  # only a complete pass is kept
            self._kept[split] = keep
            self.used_bytes += size


def predict(eval_step, models: dict, source, split: str, mesh) -> dict:
    """Probabilities of every model on every image of `split` (padding removed), ordered by example id.

    Args:
      models: name -> variables ({'params', 'batch_stats'}), e.g. {'student': ..., 'teacher': ...}.
      source: an input pipeline (streamed) or an EvalSplitCache over one (device-resident after the first pass).
    Returns {'labels': (N, C), 'ids': (N,), <name>: (N, C) probabilities}.
    """
    batches = source.batches(split) if isinstance(source, EvalSplitCache) else prepared_batches(source, split, mesh)
    collected = {name: [] for name in models}
    labels, ids, masks = [], [], []
    for batch in batches:
        for name, variables in models.items():
            # Left on the device: the host reads every prediction once, after the last batch, so the devices
            # never wait for the host between batches (dispatch is asynchronous).
            collected[name].append(eval_step(variables, batch["image"]))
        labels.append(batch["labels"])
        ids.append(batch["id"])
        masks.append(batch["mask"])
    keep = np.concatenate(masks) > 0
    ids = np.concatenate(ids)[keep]
    order = np.argsort(ids, kind="stable")
    out = {"labels": np.concatenate(labels)[keep][order], "ids": ids[order]}
    for name, chunks in parallel.to_host(collected).items():
        out[name] = np.concatenate(chunks)[keep][order]
    expected = source.info.num_examples[split]
    if len(ids) != expected or np.any(np.diff(ids[order]) != 1):
        raise RuntimeError(f"evaluation of {split!r} saw {len(ids)} images instead of {expected}")
    return out


def evaluate(eval_step, models: dict, source, split: str, mesh, empty_class_ap: str = "skip") -> dict:
    """name -> compute_metrics(...) dict for every model, over the whole split (`source`: as in predict)."""
    preds = predict(eval_step, models, source, split, mesh)
    return {name: metrics.compute_metrics(preds[name], preds["labels"], empty_class_ap=empty_class_ap)
            for name in models}


def evaluated_models(state) -> dict:
    """The student and, where the run has one, the weight-EMA teacher."""
    out = {"student": state.student_variables()}
    if state.teacher is not None:
        out["teacher"] = state.teacher
    return out


def evaluate_epoch(eval_step, state, source, mesh, config, observed, reported: str,
                   val_single_positive=None, curves: bool = True) -> dict:
    """The per-epoch evaluation of a run: the reported model's validation mAP (complete labels) and against single
    positives (`val_single_positive`, (N_val, C) by id: the selection an SPML user can make), which selection and
    the trigger read, and, when `curves` (every `eval.curves_every_epochs`), the plots' curves: the student's
    validation mAP (when the student is not the reported model), the reported model's test mAP
    (`eval.test_every_epoch`) and its label recovery on the training images (`eval.train_diagnostics`)."""
    models = evaluated_models(state)
    if not curves:  # the other model's validation curve is a diagnostic: on curve epochs only (evaluation cost)
        models = {reported: models[reported]}
    record = {}
    val = predict(eval_step, models, source, "validation", mesh)
    record["val_mAP"] = metrics.mean_average_precision(val[reported], val["labels"],
                                                       empty_class_ap=config.eval.empty_class_ap)
    if "student" in val:
        record["val_student_mAP"] = metrics.mean_average_precision(val["student"], val["labels"],
                                                                   empty_class_ap=config.eval.empty_class_ap)
    if val_single_positive is not None:
        record["val_single_positive_mAP"] = metrics.mean_average_precision(
            val[reported], val_single_positive[val["ids"]], empty_class_ap="skip")
    if curves and config.eval.test_every_epoch:
        # The reported model only: the per-epoch test curve is for plots, and a second model would double the cost
        # of the largest split.
        test = evaluate(eval_step, {"model": state.reported_variables()}, source, "test", mesh,
                        config.eval.empty_class_ap)
        record["test_mAP"] = test["model"]["mAP"]
    if curves and config.eval.train_diagnostics:
        preds = predict(eval_step, {"model": state.reported_variables()}, source, "train", mesh)
        record.update(train_diagnostics(preds, np.asarray(observed), config.eval.empty_class_ap))
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
