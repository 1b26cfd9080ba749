"""Evaluation over a whole split, for the student and the teacher in one pass over the data."""

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
            collected[name].append(parallel.to_host(eval_step(variables, images)))
        # Labels, ids and masks are this process's slice; in multi-host runs gather them like the predictions.
        host = parallel.gather_host({"labels": batch["labels"], "id": batch["id"], "mask": batch["mask"]})
        labels.append(host["labels"])
        ids.append(host["id"])
        masks.append(host["mask"])
    keep = np.concatenate(masks) > 0
    ids = np.concatenate(ids)[keep]
    order = np.argsort(ids, kind="stable")
    out = {"labels": np.concatenate(labels)[keep][order], "ids": ids[order]}
    for name, chunks in collected.items():
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
