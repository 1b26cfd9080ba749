"""Evaluation: predictions and metrics over a whole split (student and teacher in one pass over the data), the
per-epoch evaluation of a run, and the label-recovery diagnostics on the training images."""

from __future__ import annotations

import numpy as np

from adagc_jax import metrics, parallel


def predict(eval_step, models: dict, pipeline, split: str, mesh) -> dict:
    """Probabilities of every model on every image of `split` (padding removed), ordered by example id.

    Args:
      models: name -> variables ({'params', 'batch_stats'}), e.g. {'student': ..., 'teacher': ...}.
    Returns {'labels': (N, C), 'ids': (N,), <name>: (N, C) probabilities}.
    """
    collected = {name: [] for name in models}
    labels, ids, masks = [], [], []
    for batch in pipeline.eval_batches(split):
        images = parallel.shard_batch({"image": batch["image"]}, mesh)["image"]
        for name, variables in models.items():
            # Left on the device: the host reads every prediction once, after the last batch, so the devices
            # never wait for the host between batches (dispatch is asynchronous).
            collected[name].append(eval_step(variables, images))
        # Labels, ids and masks are this process's slice; in multi-host runs gather them like the predictions.
        host = parallel.gather_host({"labels": batch["labels"], "id": batch["id"], "mask": batch["mask"]})
        labels.append(host["labels"])
        ids.append(host["id"])
        masks.append(host["mask"])
    keep = np.concatenate(masks) > 0
    ids = np.concatenate(ids)[keep]
    order = np.argsort(ids, kind="stable")
    out = {"labels": np.concatenate(labels)[keep][order], "ids": ids[order]}
    for name, chunks in parallel.to_host(collected).items():
        out[name] = np.concatenate(chunks)[keep][order]
    expected = pipeline.info.num_examples[split]
    if len(ids) != expected or np.any(np.diff(ids[order]) != 1):
        raise RuntimeError(f"evaluation of {split!r} saw {len(ids)} images instead of {expected}")
    return out


def evaluate(eval_step, models: dict, pipeline, split: str, mesh, empty_class_ap: str = "skip") -> dict:
    """name -> compute_metrics(...) dict for every model, over the whole split."""
    preds = predict(eval_step, models, pipeline, split, mesh)
    return {name: metrics.compute_metrics(preds[name], preds["labels"], empty_class_ap=empty_class_ap)
            for name in models}


def evaluated_models(state) -> dict:
    """The student and, where the run has one, the weight-EMA teacher."""
    out = {"student": state.student_variables()}
    if state.teacher is not None:
        out["teacher"] = state.teacher
    return out


def evaluate_epoch(eval_step, state, pipeline, mesh, config, observed, reported: str,
                   val_single_positive=None, curves: bool = True) -> dict:
    """The per-epoch evaluation of a run: validation mAP of both models (complete labels), the reported model's
    validation mAP against single positives (`val_single_positive`, (N_val, C) by id: the selection an SPML user
    can make) and, when `curves` (every `eval.curves_every_epochs`), its test mAP (for the plots;
    `eval.test_every_epoch`) and its label recovery on the training images (`eval.train_diagnostics`)."""
    models = evaluated_models(state)
    record = {}
    val = predict(eval_step, models, pipeline, "validation", mesh)
    record["val_mAP"] = metrics.mean_average_precision(val[reported], val["labels"],
                                                       empty_class_ap=config.eval.empty_class_ap)
    record["val_student_mAP"] = metrics.mean_average_precision(val["student"], val["labels"],
                                                               empty_class_ap=config.eval.empty_class_ap)
    if val_single_positive is not None:
        record["val_single_positive_mAP"] = metrics.mean_average_precision(
            val[reported], val_single_positive[val["ids"]], empty_class_ap="skip")
    if curves and config.eval.test_every_epoch:
        # The reported model only: the per-epoch test curve is for plots, and a second model would double the cost
        # of the largest split.
        test = evaluate(eval_step, {"model": state.reported_variables()}, pipeline, "test", mesh,
                        config.eval.empty_class_ap)
        record["test_mAP"] = test["model"]["mAP"]
    if curves and config.eval.train_diagnostics:
        preds = predict(eval_step, {"model": state.reported_variables()}, pipeline, "train", mesh)
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
