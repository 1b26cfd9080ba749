"""Tests of adagc_jax.metrics: spec vectors, closed forms and scikit-learn references."""

import json
import time
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from adagc_jax import metrics

# BASELINES.md section 10, "mAP" test vectors.
S = np.array([[.9, .2, .5], [.8, .7, .5], [.3, .7, .1], [.6, .1, .4], [.1, .4, .5], [.45, .35, .2]])
Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]])
S2 = np.array([[.9, .2], [.8, .75], [.3, .7], [.6, .1], [.1, .4], [.45, .35]])
Y2 = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 0]])


# ---------------------------------------------------------------- spec vectors


def test_spec_vector_per_class_ap_with_tie():
    ap = metrics.average_precision(S, Y)
    np.testing.assert_allclose(ap[:2], [0.633333333333, 0.916666666667], atol=1e-9)
    assert np.isnan(ap[2])  # class 2 has no positive


def test_spec_vector_map_skip_and_zero():
    assert metrics.mean_average_precision(S, Y) == pytest.approx(0.775, abs=1e-12)
    assert metrics.mean_average_precision(S, Y, empty_class_ap="skip") == pytest.approx(0.775, abs=1e-12)
    assert metrics.mean_average_precision(S, Y, empty_class_ap="zero") == pytest.approx(0.5166666667, abs=1e-9)


def test_spec_vector_without_ties():
    assert metrics.mean_average_precision(S2, Y2) == pytest.approx(0.8166666667, abs=1e-9)


def test_compute_metrics_closed_form_on_spec_vector():
    # Worked by hand at threshold 0.5 (a score of exactly 0.5 is a prediction):
    # per-class (TP, FP, FN) = (1, 2, 2), (2, 0, 1), (0, 3, 0).
    m = metrics.compute_metrics(S, Y)
    assert m["mAP"] == pytest.approx(0.775)
    assert m["num_classes_skipped"] == 1
    assert m["num_classes_without_positives"] == 1
    assert m["per_class_AP"][2] is None
    np.testing.assert_allclose(m["per_class_AP"][:2], [19 / 30, 11 / 12], atol=1e-12)
    expected = {
        "micro_precision": 3 / 8,
        "micro_recall": 1 / 2,
        "micro_F1": 3 / 7,
        # Class 2 has no positive: recall 0/0 -> 0, precision 0/3 = 0, F1 0.
        "macro_precision": (1 / 3 + 1 + 0) / 3,
        "macro_recall": (1 / 3 + 2 / 3 + 0) / 3,
        "macro_F1": (1 / 3 + 4 / 5 + 0) / 3,
        "hamming_loss": 8 / 18,
        # Per image: 0, 1/2, 0, 0 (no positive), 2/2, 1/2 (ties with a negative count).
        "ranking_loss": 2 / 6,
        # Per image: 1, 2, 2, 0 (no positive), 3, 2.
        "coverage": 10 / 6,
        # Top classes 0, 0, 1, 0, 2, 0: wrong on images 1, 3, 4, 5.
        "one_error": 4 / 6,
        # |#pred - #true| = 1, 2, 1, 1, 0, 1.
        "label_cardinality_error": 1.0,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    assert m["num_images"] == 6


def test_compute_metrics_zero_mode_reports_no_skipped_class():
    m = metrics.compute_metrics(S, Y, empty_class_ap="zero")
    assert m["mAP"] == pytest.approx(31 / 60)
    assert m["num_classes_skipped"] == 0
    assert m["num_classes_without_positives"] == 1
    assert m["per_class_AP"][2] == 0.0


def test_compute_metrics_is_strict_json_with_plain_python_types():
    m = metrics.compute_metrics(S.astype(np.float32), Y.astype(np.int32))
    json.dumps(m, allow_nan=False)  # raises on NaN or numpy scalars
    for key, value in m.items():
        if key == "per_class_AP":
            assert all(v is None or type(v) is float for v in value)
        elif key.startswith("num_"):
            assert type(value) is int, key
        else:
            assert type(value) is float, key


# ------------------------------------------------------- against scikit-learn


def _random_case(seed, num_images, num_classes):
    """Scores rounded to 1 decimal (many ties) and labels with uneven class rates.

    The last class never has a positive and some images have none or all, so the
    edge handling of every metric is exercised.
    """
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((num_images, num_classes)), 1).astype(np.float32)
    rates = rng.uniform(0.05, 0.6, size=num_classes)
    rates[-1] = 0.0
    labels = (rng.random((num_images, num_classes)) < rates).astype(np.int64)
    labels[0] = 1
    labels[0, -1] = 0
    labels[1] = 0
    return scores, labels


CASES = [(0, 40, 4), (1, 200, 19), (2, 7, 3), (3, 500, 10)]


@pytest.mark.parametrize("seed,num_images,num_classes", CASES)
def test_average_precision_matches_sklearn(seed, num_images, num_classes):
    scores, labels = _random_case(seed, num_images, num_classes)
    ours = metrics.average_precision(scores, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the empty class
        theirs = skm.average_precision_score(labels, scores, average=None)
    has_positive = labels.sum(axis=0) > 0
    np.testing.assert_allclose(ours[has_positive], theirs[has_positive], rtol=0, atol=1e-12)
    assert np.isnan(ours[~has_positive]).all()
    # sklearn scores an empty class 0, which is exactly the official 'zero' mAP.
    zero_map = metrics.mean_average_precision(scores, labels, empty_class_ap="zero")
    assert zero_map == pytest.approx(np.mean(theirs), abs=1e-12)
    skip_map = metrics.mean_average_precision(scores, labels)
    assert skip_map == pytest.approx(np.mean(theirs[has_positive]), abs=1e-12)


@pytest.mark.parametrize("seed,num_images,num_classes", CASES)
def test_compute_metrics_matches_sklearn(seed, num_images, num_classes):
    scores, labels = _random_case(seed, num_images, num_classes)
    threshold = 0.5
    m = metrics.compute_metrics(scores, labels, threshold=threshold)
    predicted = (scores >= threshold).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined ratios on the empty class
        expected = {
            "micro_F1": skm.f1_score(labels, predicted, average="micro"),
            "macro_F1": skm.f1_score(labels, predicted, average="macro"),
            "micro_precision": skm.precision_score(labels, predicted, average="micro"),
            "macro_precision": skm.precision_score(labels, predicted, average="macro"),
            "micro_recall": skm.recall_score(labels, predicted, average="micro"),
            "macro_recall": skm.recall_score(labels, predicted, average="macro"),
            "hamming_loss": skm.hamming_loss(labels, predicted),
            "ranking_loss": skm.label_ranking_loss(labels, scores),
            "coverage": skm.coverage_error(labels, scores),
        }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    assert m["num_classes_skipped"] == 1
    assert m["num_images"] == num_images


@pytest.mark.parametrize("seed,num_images,num_classes", CASES[:2])
def test_one_error_and_cardinality_match_per_image_definition(seed, num_images, num_classes):
    scores, labels = _random_case(seed, num_images, num_classes)
    m = metrics.compute_metrics(scores, labels, threshold=0.35)
    # Straight from the definitions, one image at a time.
    wrong_top = [labels[i, int(np.argmax(scores[i]))] == 0 for i in range(num_images)]
    card = [abs(int((scores[i] >= 0.35).sum()) - int(labels[i].sum())) for i in range(num_images)]
    assert m["one_error"] == pytest.approx(np.mean(wrong_top), abs=1e-12)
    assert m["label_cardinality_error"] == pytest.approx(np.mean(card), abs=1e-12)


# ----------------------------------------------------------------- edge cases


def test_ap_depends_only_on_order_logits_equal_probabilities():
    scores, labels = _random_case(4, 60, 5)
    logits = np.log(scores + 1e-3) - np.log1p(-scores + 1e-3)  # strictly increasing map
    np.testing.assert_allclose(
        metrics.average_precision(logits, labels), metrics.average_precision(scores, labels), atol=1e-12)


def test_infinite_logits_tie_as_one_threshold():
    # Two +inf scores, one positive: one threshold at the top with precision 1/2.
    scores = np.array([[np.inf], [np.inf], [-np.inf]])
    labels = np.array([[1], [0], [0]])
    assert metrics.average_precision(scores, labels)[0] == pytest.approx(0.5)


def test_all_positive_class_has_ap_one():
    rng = np.random.default_rng(5)
    scores = rng.random((30, 2))
    labels = np.stack([np.ones(30), rng.random(30) < 0.5], axis=1).astype(int)
    assert metrics.average_precision(scores, labels)[0] == 1.0


def test_constant_scores():
    # One threshold: AP is the class prevalence; all pairs tie, so the ranking
    # loss is 1 on every image with both a positive and a negative; coverage is C.
    labels = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    scores = np.full(labels.shape, 0.3)
    np.testing.assert_allclose(metrics.average_precision(scores, labels), [0.5, 0.5, 0.25, 1.0])
    m = metrics.compute_metrics(scores, labels)
    assert m["ranking_loss"] == pytest.approx(3 / 4)  # image 2 has only positives -> 0
    assert m["coverage"] == 4.0
    assert m["micro_precision"] == 0.0 and m["micro_F1"] == 0.0  # nothing predicted
    assert m["label_cardinality_error"] == pytest.approx(labels.sum() / 4)


def test_single_image():
    scores = np.array([[0.2, 0.9, 0.6]])
    labels = np.array([[1, 0, 0]])
    ap = metrics.average_precision(scores, labels)
    assert ap[0] == 1.0 and np.isnan(ap[1:]).all()
    m = metrics.compute_metrics(scores, labels)
    assert m["mAP"] == 1.0 and m["num_classes_skipped"] == 2
    assert m["one_error"] == 1.0
    assert m["ranking_loss"] == 1.0
    assert m["coverage"] == 3.0
    assert m["label_cardinality_error"] == 1.0
    assert m["hamming_loss"] == pytest.approx(3 / 3)


def test_no_positive_anywhere():
    scores = np.array([[0.2, 0.9], [0.1, 0.4]])
    labels = np.zeros((2, 2), dtype=int)
    assert np.isnan(metrics.mean_average_precision(scores, labels))
    assert metrics.mean_average_precision(scores, labels, empty_class_ap="zero") == 0.0
    m = metrics.compute_metrics(scores, labels)
    assert m["mAP"] is None and m["num_classes_skipped"] == 2
    assert m["ranking_loss"] == 0.0 and m["coverage"] == 0.0 and m["one_error"] == 1.0


def test_bool_and_float_labels_agree():
    scores, labels = _random_case(6, 50, 4)
    ref = metrics.compute_metrics(scores, labels)
    assert metrics.compute_metrics(scores, labels.astype(bool)) == ref
    assert metrics.compute_metrics(scores, labels.astype(np.float32)) == ref


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("fn", [metrics.average_precision, metrics.mean_average_precision,
                                metrics.compute_metrics])
def test_shape_validation(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        fn(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="at least one image"):
        fn(np.zeros((0, 3)), np.zeros((0, 3)))


def test_label_and_score_validation():
    with pytest.raises(ValueError, match="0/1"):
        metrics.compute_metrics(np.zeros((2, 2)), np.array([[1, -1], [0, 0]]))
    with pytest.raises(ValueError, match="NaN"):
        metrics.average_precision(np.array([[np.nan, 0.1]]), np.array([[1, 0]]))


def test_unknown_empty_class_ap_lists_valid_values():
    for fn in (metrics.mean_average_precision, metrics.compute_metrics):
        with pytest.raises(ValueError, match="skip, zero"):
            fn(S, Y, empty_class_ap="ignore")


# ---------------------------------------------------------------------- speed


def test_full_size_split_is_fast():
    # ~reBEN test split size: a Python loop over images would take many seconds.
    rng = np.random.default_rng(7)
    scores = rng.random((120_000, 19)).astype(np.float32)
    labels = rng.random((120_000, 19)) < 0.15
    start = time.perf_counter()
    m = metrics.compute_metrics(scores, labels)
    elapsed = time.perf_counter() - start
    assert 0.0 <= m["mAP"] <= 1.0
    assert elapsed < 5.0, f"compute_metrics took {elapsed:.2f} s on 120k x 19"
