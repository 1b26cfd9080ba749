"""PNG plots of a run's training dynamics, from its per-epoch history (host side, matplotlib Agg)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _series(history, key, rolled_back=False):
    """(epochs, values) of the records that have `key`; a None value (e.g. a precision without any prediction)
    becomes NaN, a gap in the line rather than a straight segment across the epochs without a value. Records of
    epochs discarded by an `act` rollback are left out (or, with rolled_back=True, only they are returned)."""
    points = [(h["epoch"], float("nan") if h[key] is None else h[key]) for h in history
              if key in h and bool(h.get("rolled_back")) == rolled_back]
    if all(v != v for _, v in points):  # nothing to draw
        return [], []
    return [p[0] for p in points], [p[1] for p in points]


def _shade_rollback(ax, history, keys):
    """Shades the warm-up epochs an `act` rollback discarded and draws their values dotted (they were trained,
    then re-run with GC from the trigger epoch)."""
    discarded = [h["epoch"] for h in history if h.get("rolled_back")]
    if not discarded:
        return
    ax.axvspan(min(discarded) - 0.5, max(discarded) + 0.5, color="grey", alpha=0.15,
               label=f"rolled back (epochs {min(discarded)}-{max(discarded)})")
    for key in keys:
        xs, ys = _series(history, key, rolled_back=True)
        if xs:
            ax.plot(xs, ys, linestyle=":", color="grey", marker=".", alpha=0.8)


def _fired_label(fired_epoch: int, gc_used: bool) -> str:
    # For methods without GC the trigger only runs as a diagnostic: say when it WOULD have switched GC on.
    if gc_used:
        return f"GC on (after epoch {fired_epoch})"
    return f"trigger would fire (after epoch {fired_epoch}; diagnostic, no GC)"


def plot_training(history: list[dict], path: str, title: str = "", fired_epoch=None, gc_used: bool = True) -> str:
    """Train loss (left) and validation / test mAP of the reported model (right) per epoch."""
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(*_series(history, "train_loss"), marker=".", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for key, label in (("val_mAP", "validation mAP"), ("test_mAP", "test mAP"),
                       ("val_student_mAP", "validation mAP (student)")):
        xs, ys = _series(history, key)
        if xs:
            ax_map.plot(xs, ys, marker=".", label=label)
    _shade_rollback(ax_loss, history, ["train_loss"])
    _shade_rollback(ax_map, history, ["val_mAP", "test_mAP"])
    if fired_epoch is not None:
        for ax in (ax_loss, ax_map):
            ax.axvline(fired_epoch + 0.5, color="tab:red", linestyle="--", alpha=0.7,
                       label=_fired_label(fired_epoch, gc_used) if ax is ax_map else None)
    ax_map.set_xlabel("epoch")
    ax_map.set_ylabel("mAP")
    ax_map.legend()
    ax_map.grid(alpha=0.3)
    return _save(fig, path, title)


def plot_diagnostics(history: list[dict], path: str, title: str = "", fired_epoch=None,
                     signal_name: str = "trigger signal", gc_used: bool = True) -> str:
    """What a user needs to judge the trigger: did GC switch on where memorisation began?

    Left: the trigger signal per epoch. Middle: label recovery on the TRAINING images against their hidden full
    labels (diagnostics only): the reported model's train mAP, its recall of the unobserved true positives (the
    false negatives that assume-negative training memorises toward 0) and, for AdaGC, the pseudo-labels' precision
    and recall at 0.5. Right: validation mAP. The dashed line marks the epoch the trigger fired.
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax_signal, ax_train, ax_val = axes
    ax_signal.plot(*_series(history, "trigger_signal"), marker=".", color="tab:purple")
    ax_signal.set_ylabel(signal_name)
    for key, label in (("train_mAP", "train mAP (full labels)"),
                       ("train_fn_recall", "recall of unobserved positives @0.5"),
                       ("pseudo_label_precision", "pseudo-label precision @0.5"),
                       ("pseudo_label_recall", "pseudo-label recall @0.5")):
        xs, ys = _series(history, key)
        if xs:
            ax_train.plot(xs, ys, marker=".", label=label)
    ax_train.set_ylabel("training-set label recovery")
    for key, label in (("val_mAP", "validation mAP"), ("val_student_mAP", "validation mAP (student)")):
        xs, ys = _series(history, key)
        if xs:
            ax_val.plot(xs, ys, marker=".", label=label)
    ax_val.set_ylabel("mAP")
    _shade_rollback(ax_signal, history, ["trigger_signal"])
    _shade_rollback(ax_val, history, ["val_mAP"])
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if fired_epoch is not None:
            ax.axvline(fired_epoch + 0.5, color="tab:red", linestyle="--", alpha=0.7,
                       label=_fired_label(fired_epoch, gc_used))
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, path, title)


def _save(fig, path: str, title: str | None) -> str:
    """Title, layout, write the PNG (creating its folder) and free the figure; returns path."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
