"""Model selection as the SPML literature does it (BASELINES.md section 2, "Model selection"): the checkpoint with
the best validation mAP, its test metrics, and early stopping when validation falls below its best.

Two selections are tracked, each kept by orbax's best-checkpoint support (`best_fn`, one checkpoint each):
  * `best_val`: validation mAP against the COMPLETE validation labels (what Cole et al., LL and GRLoss report);
  * `best_val_single_positive`: validation mAP against one positive per validation image drawn with the run's
    noise rule, the only selection an SPML user without complete labels can make.
The best epoch is always derived from the run's history, so a resumed run makes the same choice; a best checkpoint
saved just before a kill, for an epoch the resumed run repeats, is kept rather than saved twice.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

# history key of each selection -> folder of its checkpoint in the workdir
SELECTIONS = {"val_mAP": "best_val", "val_single_positive_mAP": "best_val_single_positive"}


def best_epoch(history: list[dict], key: str) -> int | None:
    """The epoch with the highest `key` (the first on ties), over epochs not discarded by an act rollback."""
    scored = [(h[key], -h["epoch"]) for h in history if h.get(key) is not None and not h.get("rolled_back")]
    return -max(scored)[1] if scored else None


def early_stop_epoch(history: list[dict], points: float) -> int | None:
    """The first epoch whose validation mAP is `points` (in mAP %) below the best before it (LL / GRLoss style);
    None when `points` is 0 (off) or it never happened."""
    if points <= 0:
        return None
    best = None
    for h in history:
        value = h.get("val_mAP")
        if value is None or h.get("rolled_back"):
            continue
        if best is not None and 100.0 * (best - value) >= points:
            return h["epoch"]
        best = value if best is None else max(best, value)
    return None


def stall_warning(history: list[dict], epochs: int) -> str | None:
    """A warning when validation mAP and training loss have not moved over the last `epochs` epochs (0 = off).

    The student's validation mAP where the run records it every epoch: a weight-EMA teacher keeps drifting for a
    few epochs after the student has died, which would delay the warning by that much."""
    recent = [h for h in history if h.get("val_mAP") is not None and not h.get("rolled_back")][-(epochs + 1):]
    if epochs <= 0 or len(recent) < epochs + 1:
        return None
    # The student's curve only where every epoch of the window has it (with eval.curves_every_epochs > 1 it is
    # recorded on curve epochs only); otherwise the reported model's, never a mix of the two.
    key = "val_student_mAP" if all("val_student_mAP" in h for h in recent) else "val_mAP"
    val = [h[key] for h in recent]
    loss = [h["train_loss"] for h in recent]
    if max(val) - min(val) > 1e-4 or max(loss) - min(loss) > 1e-4 * max(1.0, abs(loss[-1])):
        return None
    return (f"validation mAP ({val[-1]:.4f}) and training loss ({loss[-1]:.4f}) have not moved for {epochs} epochs "
            f"(epochs {recent[0]['epoch']}-{recent[-1]['epoch']}): the network may have stopped learning (too "
            "large or too small a learning rate?)")


class BestCheckpoints:
    """One orbax manager per selection, keeping the evaluated models ({'student', 'teacher'} variables) of the best
    epoch only (best_fn on the selection's metric, max_to_keep=1)."""

    def __init__(self, workdir: str):
        self._managers = {}
        for key, folder in SELECTIONS.items():
            options = ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda metrics, key=key: metrics[key], best_mode="max",
                enable_async_checkpointing=False, cleanup_tmp_directories=True)
            self._managers[key] = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), folder),
                                                        options=options)

    def update(self, history: list[dict], models: dict) -> None:
        """After an evaluated epoch (the last record of `history`): saves `models` under every selection whose
        best epoch this is."""
        record = history[-1]
        for key, manager in self._managers.items():
            if record.get(key) is None or best_epoch(history, key) != record["epoch"]:
                continue
            self._save(manager, key, record["epoch"], record[key], models)

    def replace(self, key: str, epoch: int, value: float, models: dict) -> None:
        """Makes `epoch` the kept best of `key` (after a rollback discarded the previous best)."""
        manager = self._managers[key]
        for step in manager.all_steps():
            manager.delete(step)
        self._save(manager, key, epoch, value, models)

    def kept_epoch(self, key: str) -> int | None:
        steps = self._managers[key].all_steps()
        return max(steps) if steps else None

    def restore(self, key: str, epoch: int, models_like: dict) -> dict:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, models_like)
        return self._managers[key].restore(epoch, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()

    @staticmethod
    def _save(manager, key: str, epoch: int, value: float, models: dict) -> None:
        if epoch in manager.all_steps():  # saved just before a kill, and the repeated epoch is identical
            return
        manager.save(epoch, args=ocp.args.StandardSave(models), metrics={key: value}, force=True)
        manager.wait_until_finished()


def protocol_summary(results: dict) -> dict:
    """The reported model's test mAP under each protocol, for tables: the final epoch, the best validation epoch
    (complete labels) and the best single-positive validation epoch, with the epochs (None where a results.json of
    an older version lacks a block)."""
    history = [h for h in results.get("history", []) if not h.get("rolled_back")]
    final = results.get("final") or {"test": results["test"], "epoch": history[-1]["epoch"] if history else None}
    out = {"final_test_mAP": final["test"]["mAP"], "final_epoch": final["epoch"]}
    for name, prefix in (("best_val", "best_val"), ("best_val_single_positive", "best_sp")):
        block = results.get(name)
        out[f"{prefix}_test_mAP"] = block["test"]["mAP"] if block else None
        out[f"{prefix}_epoch"] = block["epoch"] if block else None
    return out
