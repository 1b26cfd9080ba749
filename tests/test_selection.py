"""Model selection from a run's history (adagc_jax/selection.py): the best epoch of each protocol, early stopping
(LL / GRLoss style), the stall warning, and the per-protocol summary the tables read."""

from adagc_jax import selection


def _history(values, **extra):
    return [{"epoch": e, "val_mAP": v, "train_loss": 1.0 / e, **extra} for e, v in enumerate(values, 1)]


def test_best_epoch_takes_the_first_maximum_and_skips_rolled_back_epochs():
    history = _history([0.5, 0.7, 0.7, 0.6])
    assert selection.best_epoch(history, "val_mAP") == 2
    history[1]["rolled_back"] = True
    assert selection.best_epoch(history, "val_mAP") == 3
    assert selection.best_epoch([{"epoch": 1, "train_loss": 1.0}], "val_mAP") is None


def test_early_stop_epoch_is_the_first_fall_of_the_given_points():
    history = _history([0.50, 0.60, 0.585, 0.57, 0.65])
    assert selection.early_stop_epoch(history, 0.0) is None  # off
    assert selection.early_stop_epoch(history, 1.5) == 3  # 60.0 - 58.5 = 1.5 points
    assert selection.early_stop_epoch(history, 3.0) == 4
    assert selection.early_stop_epoch(history, 20.0) is None


def test_stall_warning_when_nothing_moves():
    moving = _history([0.5, 0.6, 0.7])
    assert selection.stall_warning(moving, 2) is None
    frozen = [{"epoch": e, "val_mAP": 0.31, "train_loss": 0.6931} for e in range(1, 5)]
    assert "have not moved for 3 epochs (epochs 1-4)" in selection.stall_warning(frozen, 3)
    assert selection.stall_warning(frozen, 4) is None  # needs 5 evaluated epochs
    assert selection.stall_warning(frozen, 0) is None  # off
    # A dead student under a weight-EMA teacher that still drifts (seen with learning_rate=10): warned at once.
    drifting = [{"epoch": e, "val_mAP": 0.40 - 0.01 * e, "val_student_mAP": 0.39, "train_loss": 0.96}
                for e in range(1, 4)]
    assert "(epochs 1-3)" in selection.stall_warning(drifting, 2)
    # The student's curve on some epochs only (eval.curves_every_epochs > 1): the reported model's is read, not a
    # mix of the two (0.39 beside 0.37 would look like movement).
    sparse = [{"epoch": e, "val_mAP": 0.37, "train_loss": 0.96} for e in range(1, 4)]
    sparse[2]["val_student_mAP"] = 0.39
    assert "(epochs 1-3)" in selection.stall_warning(sparse, 2)


def test_protocol_summary_reads_new_and_old_results():
    new = {"final": {"epoch": 3, "test": {"mAP": 0.6}}, "best_val": {"epoch": 2, "test": {"mAP": 0.7}},
           "best_val_single_positive": {"epoch": 1, "test": {"mAP": 0.65}}, "test": {"mAP": 0.6}, "history": []}
    assert selection.protocol_summary(new) == {
        "final_test_mAP": 0.6, "final_epoch": 3, "best_val_test_mAP": 0.7, "best_val_epoch": 2,
        "best_sp_test_mAP": 0.65, "best_sp_epoch": 1}
    old = {"test": {"mAP": 0.5}, "history": _history([0.4, 0.5])}
    assert selection.protocol_summary(old)["final_epoch"] == 2
    assert selection.protocol_summary(old)["best_val_test_mAP"] is None
