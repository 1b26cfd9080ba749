"""Side-by-side summary of finished runs (reads each workdir's results.json; prints a markdown table).

    python benchmarks/compare_runs.py runs/mem_an_s0 runs/mem_adagc_s0 [--plot runs/compare.png]

Per run: method, noise, seed; the reported model's test mAP under both protocols (the final epoch, the best
validation epoch with complete labels, the best single-positive validation epoch, with their epochs); the final
student's test mAP; the last epoch's validation mAP (a late decline shows as last < best); and the epoch the trigger
fired with the validation mAP at that epoch (for `an` the trigger runs as a diagnostic only). With --plot:
validation and test mAP per epoch of every run in one PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from adagc_jax import selection  # noqa: E402


def summarise(workdir: str) -> dict:
    with open(os.path.join(workdir, "results.json")) as f:
        r = json.load(f)
    history = r["history"]
    val = {h["epoch"]: h["val_mAP"] for h in history if h.get("val_mAP") is not None}
    best_epoch = max(val, key=val.get)
    fired = r["trigger"]["fired_epoch"]
    final = r.get("final", r)
    return {
        "run": os.path.basename(os.path.normpath(workdir)), "method": r["config"]["method"],
        "noise": r["config"]["noise"], "seed": r["config"]["seed"], **selection.protocol_summary(r),
        "test_mAP": r["test"]["mAP"], "test_student_mAP": final["test"]["student"]["mAP"], "best_val": val[best_epoch],
        "last_val": val[max(val)], "fired_epoch": fired, "val_at_fired": val.get(fired) if fired else None,
        "history": history,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--plot", default="")
    args = parser.parse_args()
    rows = [summarise(w) for w in args.workdirs]

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    def at(value, epoch):
        return f"{pct(value)} ({epoch})" if value is not None else "-"

    print("| run | method | noise | seed | test mAP: final (epoch) | test mAP: best val (epoch) | "
          "test mAP: best single-positive val (epoch) | final test mAP (student) | best val | last val | "
          "trigger fired | val at fired |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['method']} | {r['noise']} | {r['seed']} | "
              f"{at(r['final_test_mAP'], r['final_epoch'])} | {at(r['best_val_test_mAP'], r['best_val_epoch'])} | "
              f"{at(r['best_sp_test_mAP'], r['best_sp_epoch'])} | {pct(r['test_student_mAP'])} | "
              f"{pct(r['best_val'])} | {pct(r['last_val'])} | "
              f"{r['fired_epoch'] if r['fired_epoch'] is not None else '-'} | {pct(r['val_at_fired'])} |")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 5))
        for r in rows:
            epochs = [h["epoch"] for h in r["history"] if h.get("val_mAP") is not None]
            line, = ax.plot(epochs, [h["val_mAP"] for h in r["history"] if h.get("val_mAP") is not None],
                            label=f"{r['run']} (val)")
            test = [(h["epoch"], h["test_mAP"]) for h in r["history"] if h.get("test_mAP") is not None]
            if test:
                ax.plot(*zip(*test), linestyle=":", color=line.get_color(), label=f"{r['run']} (test)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mAP (reported model)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
