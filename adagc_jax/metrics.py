"""Host-side evaluation metrics for multi-label scene classification.

Implements METHOD.md section 7 and BASELINES.md section 2: mean average precision
(sklearn's step-wise definition, classes without positives skipped by default or
counted as 0 like the official SPML repos), plus the thresholded and ranking
metrics reported next to it.

Everything here is numpy on the host: metrics run once per epoch on the gathered
scores of a whole split (up to ~120k images x 19 classes), so every function is
vectorised over images; only a few loops over classes remain.

Inputs everywhere: `scores` float (N, C), probabilities or logits (AP and the
ranking metrics only use the order; the thresholded metrics assume
probabilities), and `labels` (N, C) with values in {0, 1} (bool, int or float).
"""

import math

import numpy as np

EMPTY_CLASS_AP_MODES = ("skip", "zero")


def _validate(scores, labels):
    """Returns (scores float64, labels bool) after checking shapes and values."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.ndim != 2:
        raise ValueError(
            "scores and labels must both be 2-D (num_images, num_classes); got "
            f"shapes {scores.shape} and {labels.shape}.")
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores and labels must have the same shape; got {scores.shape} and "
            f"{labels.shape}.")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"need at least one image and one class; got shape {scores.shape}.")
    # float64 so that sums over ~1e5 images and score comparisons are exact
    # enough to match sklearn to 1e-12; float32 inputs convert losslessly.
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; they cannot be ranked.")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(
            "labels must be 0/1 (full labels, not the -1/0/1 observed encoding); "
            f"found values {np.unique(labels)[:10].tolist()}.")
    return scores, labels.astype(bool)


def _check_empty_class_ap(empty_class_ap):
    if empty_class_ap not in EMPTY_CLASS_AP_MODES:
        raise ValueError(
            f"Unknown empty_class_ap {empty_class_ap!r}; valid values: "
            f"{', '.join(EMPTY_CLASS_AP_MODES)}.")


def average_precision(scores, labels):
    """Per-class average precision, sklearn `average_precision_score` semantics.

    BASELINES.md section 2 / METHOD.md section 7: AP = sum_k (R_k - R_{k-1}) P_k
    over the distinct score thresholds k in descending order (step-wise area, no
    interpolation). Images with equal scores share one threshold, so the order of
    ties does not matter (unlike the robust-loss-mlml AP).

    Returns:
        float64 array (C,); NaN for classes without any positive (AP is undefined
        there; `mean_average_precision` decides how to count them).
    """
    scores, labels = _validate(scores, labels)
    num_images, num_classes = scores.shape
    # Class-major copies so that each class's column is contiguous for the sort.
    scores_by_class = np.ascontiguousarray(scores.T)
    labels_by_class = np.ascontiguousarray(labels.T)

    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        num_pos = np.count_nonzero(labels_by_class[c])
        if num_pos == 0:
            continue
        # The default (unstable) sort is ~5x faster than a stable one and the
        # order inside a tie cannot matter: only group ends are read below.
        order = np.argsort(-scores_by_class[c])
        s = scores_by_class[c, order]
        true_pos = np.cumsum(labels_by_class[c, order])
        # Last position of each group of equal scores = one threshold of the PR
        # curve. Compare with != rather than np.diff so that equal infinite logits
        # (inf - inf = nan) still form one group.
        group_ends = np.append(np.flatnonzero(s[1:] != s[:-1]), num_images - 1)
        tp = true_pos[group_ends]
        precision = tp / (group_ends + 1)
        recall_step = np.diff(tp, prepend=0) / num_pos
        ap[c] = np.sum(recall_step * precision)
    return ap


def mean_average_precision(scores, labels, empty_class_ap="skip"):
    """mAP as a fraction in [0, 1] (METHOD.md section 7, BASELINES.md section 2).

    Args:
        scores: (N, C) float scores.
        labels: (N, C) 0/1 labels.
        empty_class_ap: how classes with no positive in `labels` count.
            'skip' (project default): left out of the mean.
            'zero' (official SPML repos): AP 0, still averaged over all C classes.

    Returns:
        float; NaN with 'skip' when no class has a positive.
    """
    _check_empty_class_ap(empty_class_ap)
    return _mean_ap(average_precision(scores, labels), empty_class_ap)


def _mean_ap(per_class_ap, empty_class_ap):
    if empty_class_ap == "zero":
        return float(np.mean(np.nan_to_num(per_class_ap, nan=0.0)))
    present = per_class_ap[~np.isnan(per_class_ap)]
    # An explicit NaN rather than np.mean([]) (which warns) when nothing is left.
    return float(np.mean(present)) if present.size else math.nan


def _safe_divide(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0.

    This is sklearn's default `zero_division` behaviour ('warn', which acts as 0).
    """
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _precision_recall_f1(true_pos, false_pos, false_neg):
    """Precision, recall and F1 from counts, 0 where a ratio is undefined.

    F1 = 2 TP / (2 TP + FP + FN), which equals the harmonic mean of precision and
    recall when both are defined and is 0 (not undefined) when TP = 0 < FP + FN,
    as in sklearn.
    """
    precision = _safe_divide(true_pos, true_pos + false_pos)
    recall = _safe_divide(true_pos, true_pos + false_neg)
    f1 = _safe_divide(2 * true_pos, 2 * true_pos + false_pos + false_neg)
    return precision, recall, f1


def ranking_loss(scores, labels):
    """sklearn `label_ranking_loss`.

    Per image: the fraction of (positive, negative) label pairs with
    score(positive) <= score(negative) (ties count as mis-ordered, as in the
    pinned sklearn); images with no positive or no negative count 0. Averaged
    over all images.
    """
    scores, labels = _validate(scores, labels)
    num_classes = scores.shape[1]
    misordered = np.zeros(scores.shape[0])
    for c in range(num_classes):
        # Positives scored at or below class c, counted only where c is a negative.
        positives_not_above = np.count_nonzero(labels & (scores <= scores[:, c:c + 1]), axis=1)
        misordered += np.where(labels[:, c], 0, positives_not_above)
    num_pos = labels.sum(axis=1)
    loss = _safe_divide(misordered, num_pos * (num_classes - num_pos))
    return float(np.mean(loss))


def coverage(scores, labels):
    """sklearn `coverage_error`.

    Per image: the number of classes scored >= the lowest-scored positive, i.e.
    how far down the ranking one must go to cover every true label (ties take the
    worst rank). Images without positives count 0. Averaged over all images.
    """
    scores, labels = _validate(scores, labels)
    lowest_positive = np.min(np.where(labels, scores, np.inf), axis=1, keepdims=True)
    covered = np.sum(scores >= lowest_positive, axis=1)
    return float(np.mean(np.where(labels.any(axis=1), covered, 0)))


def one_error(scores, labels):
    """Fraction of images whose top-scored class is not a true label.

    Ties at the top go to the lowest class index (np.argmax), so the result is
    deterministic; an image without positives always counts as an error.
    """
    scores, labels = _validate(scores, labels)
    top = np.argmax(scores, axis=1)
    return float(np.mean(~labels[np.arange(scores.shape[0]), top]))


def _to_json_float(value):
    """Python float, or None for NaN (JSON has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else value


def compute_metrics(scores, labels, threshold=0.5, empty_class_ap="skip"):
    """All METHOD.md section 7 metrics of one split, as a JSON-serialisable dict.

    Args:
        scores: (N, C) scores; thresholded metrics assume probabilities.
        labels: (N, C) 0/1 full labels.
        threshold: a class is predicted positive where score >= threshold.
        empty_class_ap: 'skip' or 'zero', see `mean_average_precision`.

    Returns a dict of plain python values:
        mAP: fraction in [0, 1] (None if undefined: 'skip' with no positive at all).
        num_classes_skipped: classes left out of mAP (0 with 'zero').
        num_classes_without_positives: classes with no positive in `labels`,
            whatever `empty_class_ap` is.
        per_class_AP: list of C values; None where skipped ('skip'), 0.0 for empty
            classes with 'zero'.
        micro_/macro_ precision, recall, F1 at `threshold`. Macro averages run over
            ALL C classes with sklearn's default zero_division: a ratio whose
            denominator is 0 counts as 0. So a class with no positive and no
            prediction has precision = recall = F1 = 0 and pulls the macro averages
            down (on standard test sets every class has positives); micro ratios
            follow the same rule.
        hamming_loss: fraction of wrong (image, class) predictions.
        ranking_loss, coverage: sklearn label_ranking_loss / coverage_error.
        one_error: see `one_error`.
        label_cardinality_error: mean over images of |#predicted - #true positives|.
        num_images: N.
    """
    _check_empty_class_ap(empty_class_ap)
    scores, labels = _validate(scores, labels)
    num_images = scores.shape[0]

    per_class_ap = average_precision(scores, labels)
    empty = np.isnan(per_class_ap)
    if empty_class_ap == "zero":
        per_class_ap = np.where(empty, 0.0, per_class_ap)

    predicted = scores >= threshold
    true_pos = np.sum(predicted & labels, axis=0)
    false_pos = np.sum(predicted & ~labels, axis=0)
    false_neg = np.sum(~predicted & labels, axis=0)
    micro_p, micro_r, micro_f1 = _precision_recall_f1(
        true_pos.sum(), false_pos.sum(), false_neg.sum())
    class_p, class_r, class_f1 = _precision_recall_f1(true_pos, false_pos, false_neg)

    cardinality_error = np.abs(predicted.sum(axis=1) - labels.sum(axis=1))

    return {
        "mAP": _to_json_float(_mean_ap(per_class_ap, empty_class_ap)),
        "num_classes_skipped": int(empty.sum()) if empty_class_ap == "skip" else 0,
        "num_classes_without_positives": int(empty.sum()),
        "per_class_AP": [_to_json_float(ap) for ap in per_class_ap],
        "micro_F1": float(micro_f1),
        "macro_F1": float(np.mean(class_f1)),
        "micro_precision": float(micro_p),
        "micro_recall": float(micro_r),
        "macro_precision": float(np.mean(class_p)),
        "macro_recall": float(np.mean(class_r)),
        "hamming_loss": float(np.mean(predicted != labels)),
        "ranking_loss": ranking_loss(scores, labels),
        "one_error": one_error(scores, labels),
        "coverage": coverage(scores, labels),
        "label_cardinality_error": float(np.mean(cardinality_error)),
        "num_images": int(num_images),
    }
