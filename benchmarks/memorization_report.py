"""Tables and a plot for the memorisation study (docs/memorization.md): AdaGC against assume-negative, and ablations.

    python benchmarks/memorization_report.py runs/mem_random --plot docs/memorization_random.png

Reads <root>/<variant>/seed_<s>/results.json, where <variant> is `an`, `adagc` or any other name (an ablation;
the run's config says what it is), e.g. made by

    for s in 0 1 2; do for m in an adagc; do
      python launch.py --config configs/synthetic_memorization.py:method=$m,seed=$s --workdir runs/mem_random/$m/seed_$s
    done; done

and prints markdown (measures nothing itself):
  1. per seed: `an`'s best validation mAP and its epoch, its last validation mAP and final test mAP; AdaGC's final
     test mAP (teacher), the epoch its trigger fired and `an`'s validation mAP at that epoch (how near the top of
     `an`'s curve the trigger fired); then mean +- sample std over the seeds;
  2. every variant: final test / validation mAP (mean +- std over its seeds), trigger epochs, and the difference to
     `an` on the same seeds;
  3. both protocols (BASELINES.md section 2) per variant: test mAP at the final epoch, at the best validation epoch
     (complete labels) and at the best single-positive validation epoch, the mean selected epochs, and each
     protocol's difference to `an` on the same seeds. For results.json files without the selection blocks, the
     best validation epoch is taken from the history and its test mAP from the per-epoch test curve;
  4. AdaGC minus every other variant under each protocol (mean +- std over the seeds both ran).
<root> can also be a benchmark runner's workdir (configs/benchmark.py: <workdir>/<method>/seed_<s>).
With --csv: one row per run (both protocols' test mAP and epochs, the validation peak and last value, the trigger).
With --previous CSV (repeatable): rows such a CSV holds for runs done elsewhere (another machine, an earlier session
whose workdirs are gone) join the tables and the written CSV; a run present under <root> replaces its row. Their
curves are not in the CSV, so they are missing from the plot and from the "an's val there" column.
With --plot: validation (solid) and test (dotted) mAP per epoch of `an` and `adagc`, one panel per seed, with the
epoch AdaGC's trigger fired.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from adagc_jax import selection  # noqa: E402


def load_runs(root: str, previous=()) -> dict:
    """variant -> seed -> one run's summary (`summarize`); runs read from CSV rows (`previous`) first, then the
    results.json files under root, which replace a CSV row of the same variant and seed."""
    runs = {}
    for path in previous:
        for row in read_csv(path):
            runs.setdefault(row["variant"], {})[row["seed"]] = row
    paths = sorted(glob.glob(os.path.join(root, "*", "seed_*", "results.json"))) if root else []
    for path in paths:
        variant = os.path.basename(os.path.dirname(os.path.dirname(path)))
        seed = int(os.path.basename(os.path.dirname(path))[len("seed_"):])
        with open(path) as f:
            runs.setdefault(variant, {})[seed] = summarize(variant, seed, json.load(f))
    if not runs:
        raise SystemExit(f"no <variant>/seed_<s>/results.json under {root}" + (" and no rows in --previous" if previous
                                                                                else ""))
    return runs


def curve(results: dict, key: str) -> dict:
    return {h["epoch"]: h[key] for h in results["history"] if h.get(key) is not None}


def _protocols(results: dict) -> dict:
    """protocol -> (test mAP, epoch) of one run."""
    summary = selection.protocol_summary(results)
    out = {"final": (summary["final_test_mAP"], summary["final_epoch"]),
           "best val": (summary["best_val_test_mAP"], summary["best_val_epoch"]),
           "best single-positive val": (summary["best_sp_test_mAP"], summary["best_sp_epoch"])}
    if out["best val"][0] is None:  # an older results.json: the history's best epoch and test curve
        val, test = curve(results, "val_mAP"), curve(results, "test_mAP")
        if val:
            best = max(val, key=val.get)
            out["best val"] = (test.get(best), best)
    return out


PROTOCOLS = ("final", "best val", "best single-positive val")
# protocol -> the summary's (test mAP, epoch) keys; they are also CSV columns.
PROTOCOL_KEYS = {"final": ("final_test_mAP", "final_epoch"), "best val": ("best_val_test_mAP", "best_val_epoch"),
                 "best single-positive val": ("best_sp_test_mAP", "best_sp_epoch")}
CSV_COLUMNS = ("variant", "method", "noise", "seed", "final_epoch", "final_test_mAP", "best_val_epoch",
               "best_val_test_mAP", "best_sp_epoch", "best_sp_test_mAP", "peak_val_mAP", "last_val_mAP",
               "trigger_fired_epoch", "switches_gc", "final_student_test_mAP")
_PERCENT_COLUMNS = {c for c in CSV_COLUMNS if c.endswith("mAP")}
_INT_COLUMNS = {"seed", "final_epoch", "best_val_epoch", "best_sp_epoch", "trigger_fired_epoch"}


def summarize(variant: str, seed: int, results: dict) -> dict:
    """What the tables need of one run (mAP as fractions), with the results dict itself under "results" for the
    curves (None for a run read from a CSV)."""
    val = curve(results, "val_mAP")
    out = {"variant": variant, "method": results["config"]["method"], "noise": results["config"]["noise"],
           "seed": seed, "peak_val_mAP": max(val.values()) if val else None,
           "last_val_mAP": results["val"]["mAP"], "trigger_fired_epoch": results["trigger"]["fired_epoch"],
           "switches_gc": results["trigger"].get("switches_gc", results["config"]["method"] == "adagc"),
           "final_student_test_mAP": results["test"].get("student", {}).get("mAP"), "results": results}
    for protocol, (value, epoch) in _protocols(results).items():
        out[PROTOCOL_KEYS[protocol][0]], out[PROTOCOL_KEYS[protocol][1]] = value, epoch
    return out


def read_csv(path: str) -> list:
    """The rows `write_csv` wrote, as summaries without curves. Columns added later may be missing (blank)."""
    import csv

    if not os.path.exists(path):
        raise SystemExit(f"--previous {path}: no such file (a CSV written by this script's --csv)")
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            missing = [c for c in CSV_COLUMNS[:4] if c not in row]
            if missing:
                raise SystemExit(f"--previous {path}: not a CSV of this script (no column {', '.join(missing)})")
            out = {"results": None}
            for column in CSV_COLUMNS:
                text = row.get(column) or ""
                if column in _PERCENT_COLUMNS:
                    out[column] = float(text) / 100 if text else None
                elif column in _INT_COLUMNS:
                    out[column] = int(text) if text else None
                elif column == "switches_gc":
                    out[column] = text == "True"
                else:
                    out[column] = text
            rows.append(out)
    return rows


def _fired(run: dict):
    return run["trigger_fired_epoch"]


def _switches_gc(by_seed: dict) -> bool:
    """Whether the variant's trigger switches GC on (for other methods it only records when it would have)."""
    return any(run["switches_gc"] for run in by_seed.values())


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def adagc_vs_an(runs: dict) -> str:
    seeds = sorted(set(runs.get("an", {})) & set(runs.get("adagc", {})))
    if not seeds:
        return "(needs `an` and `adagc` runs of the same seeds)\n"
    lines = ["| seed | an: best val (epoch) | an: last val | an: test | adagc: test (student) | adagc − an (test) "
             "| trigger fired | an's val there (below its best) |",
             "|---|---|---|---|---|---|---|---|"]
    cols = {k: [] for k in ("an_test", "adagc_test", "gap", "below")}
    for s in seeds:
        an, ada = runs["an"][s], runs["adagc"][s]
        fired = _fired(ada)
        # an's validation curve at the trigger epoch: only where an's results.json (not just its CSV row) is here.
        val = curve(an["results"], "val_mAP") if an["results"] else {}
        at_fired = val.get(fired) if fired else None
        below = None if at_fired is None else an["peak_val_mAP"] - at_fired
        gap = ada["final_test_mAP"] - an["final_test_mAP"]
        for k, v in (("an_test", an["final_test_mAP"]), ("adagc_test", ada["final_test_mAP"]), ("gap", gap),
                     ("below", below)):
            cols[k].append(v)
        lines.append(f"| {s} | {pct(an['peak_val_mAP'])} ({an['best_val_epoch']}) | {pct(an['last_val_mAP'])} | "
                     f"{pct(an['final_test_mAP'])} | {pct(ada['final_test_mAP'])} "
                     f"({pct(ada['final_student_test_mAP'])}) | {100 * gap:+.1f} | "
                     f"{fired if fired else '-'} | {pct(at_fired)} ({pct(below)}) |")
    lines.append(f"| mean ± std | | | {mean_std(cols['an_test'])} | {mean_std(cols['adagc_test'])} | "
                 f"{mean_std(cols['gap'])} | | ({mean_std(cols['below'])}) |")
    return "\n".join(lines) + "\n"


def _order(runs: dict) -> list:
    return [v for v in ["an", "adagc"] + sorted(v for v in runs if v not in ("an", "adagc")) if v in runs]


def variants(runs: dict) -> str:
    an = runs.get("an", {})
    lines = ["| variant | seeds | test mAP | val mAP | trigger fired | − an (same seeds, test) |",
             "|---|---|---|---|---|---|"]
    for variant in _order(runs):
        by_seed = runs[variant]
        seeds = sorted(by_seed)
        fired = [_fired(by_seed[s]) for s in seeds]
        diffs = [by_seed[s]["final_test_mAP"] - an[s]["final_test_mAP"] for s in seeds if s in an]
        lines.append(f"| {variant} | {','.join(map(str, seeds))} | "
                     f"{mean_std([by_seed[s]['final_test_mAP'] for s in seeds])} | "
                     f"{mean_std([by_seed[s]['last_val_mAP'] for s in seeds])} | "
                     f"{', '.join(str(f) if f else '-' for f in fired) if _switches_gc(by_seed) else '-'} | "
                     f"{'-' if variant == 'an' or not diffs else mean_std(diffs)} |")
    return "\n".join(lines) + "\n"


def _test(run: dict, protocol: str):
    return run[PROTOCOL_KEYS[protocol][0]]


def protocols(runs: dict) -> str:
    an = runs.get("an", {})
    header = " | ".join(f"test mAP: {p} (epoch) | − an: {p}" for p in PROTOCOLS)
    lines = [f"| variant | seeds | {header} |", "|---|---|" + "---|---|" * len(PROTOCOLS)]
    for variant in _order(runs):
        by_seed = runs[variant]
        seeds = sorted(by_seed)
        cells = []
        for p in PROTOCOLS:
            epochs = [by_seed[s][PROTOCOL_KEYS[p][1]] for s in seeds if by_seed[s][PROTOCOL_KEYS[p][1]] is not None]
            epoch = f" ({statistics.mean(epochs):.1f})" if epochs else ""
            diffs = [_test(by_seed[s], p) - _test(an[s], p) for s in seeds
                     if s in an and None not in (_test(by_seed[s], p), _test(an[s], p))]
            cells.append(f"{mean_std([_test(by_seed[s], p) for s in seeds])}{epoch}")
            cells.append("-" if variant == "an" or not diffs else mean_std(diffs))
        lines.append(f"| {variant} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def adagc_minus(runs: dict) -> str:
    """AdaGC minus every other variant on the seeds both have, per protocol: where AdaGC wins (> 0) and by how
    much, under the protocol of the SPML papers as well as at the final epoch."""
    ada = runs.get("adagc", {})
    if not ada:
        return "(needs `adagc` runs)\n"
    header = " | ".join(f"adagc − variant: {p}" for p in PROTOCOLS)
    lines = [f"| variant | seeds | {header} |", "|---|---|" + "---|" * len(PROTOCOLS)]
    for variant in sorted(v for v in runs if v != "adagc"):
        seeds = sorted(set(runs[variant]) & set(ada))
        if not seeds:
            continue
        cells = []
        for p in PROTOCOLS:
            diffs = [_test(ada[s], p) - _test(runs[variant][s], p) for s in seeds
                     if None not in (_test(ada[s], p), _test(runs[variant][s], p))]
            cells.append(_signed_mean_std(diffs))
        lines.append(f"| {variant} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _signed_mean_std(values) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:+.1f}"
    return f"{100 * statistics.mean(values):+.1f} ± {100 * statistics.stdev(values):.1f}"


def write_csv(runs: dict, path: str) -> None:
    """One row per run (mAP in %), from which every table above but the curves can be recomputed (--previous)."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for variant in sorted(runs):
            for _, run in sorted(runs[variant].items()):
                cells = [run[c] for c in CSV_COLUMNS]
                cells = [round(100 * v, 4) if c in _PERCENT_COLUMNS and v is not None else v
                         for c, v in zip(CSV_COLUMNS, cells)]
                writer.writerow(["" if c is None else c for c in cells])


def plot(runs: dict, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_curves = {v: {s: run["results"] for s, run in runs.get(v, {}).items() if run["results"]}
                   for v in ("an", "adagc")}
    seeds = sorted(set(with_curves["an"]) | set(with_curves["adagc"]))
    if not seeds:
        print("plot: not drawn, no `an` or `adagc` run with its results.json (CSV rows have no curves)")
        return
    fig, axes = plt.subplots(1, len(seeds), figsize=(5 * len(seeds), 4), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], seeds):
        for variant, color in (("an", "tab:blue"), ("adagc", "tab:red")):
            if s not in with_curves[variant]:
                continue
            r = with_curves[variant][s]
            for key, style in (("val_mAP", "-"), ("test_mAP", ":")):
                points = curve(r, key)
                if points:
                    ax.plot(list(points), list(points.values()), style, color=color,
                            label=f"{variant} ({key.split('_')[0]})")
            if variant == "adagc" and r["trigger"]["fired_epoch"]:
                ax.axvline(r["trigger"]["fired_epoch"], color=color, alpha=0.4, linestyle="--", label="trigger fired")
        ax.set_title(f"seed {s}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mAP (teacher)")
    # One legend for every line of every panel (a seed may have an `an` run but no `adagc` curve).
    labelled = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labelled.setdefault(label, handle)
    axes[0][0].legend(list(labelled.values()), list(labelled), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default="", help="directory holding <variant>/seed_<s>/results.json")
    parser.add_argument("--previous", action="append", default=[],
                        help="CSV written by --csv of runs not under root (repeatable); root's runs replace its rows")
    parser.add_argument("--plot", default="", help="PNG path for the an / adagc curves")
    parser.add_argument("--csv", default="", help="CSV path: one row per run, both protocols")
    args = parser.parse_args()
    runs = load_runs(args.root, args.previous)
    print("### AdaGC against assume-negative\n")
    print(adagc_vs_an(runs))
    print("### All variants\n")
    print(variants(runs))
    print("### Both protocols: final epoch and best validation epoch\n")
    print(protocols(runs))
    print("### AdaGC minus every other variant, per protocol (mean ± std over the seeds both ran)\n")
    print(adagc_minus(runs))
    if args.csv:
        write_csv(runs, args.csv)
        print(f"csv: {args.csv}")
    if args.plot:
        with_results = [run["results"] for by_seed in runs.values() for run in by_seed.values() if run["results"]]
        title = ""
        if with_results:
            dataset, noise = with_results[0]["dataset"], with_results[0]["config"]["noise"]
            title = (f"{dataset['name']} {dataset['image_shape'][0]} px, {dataset['num_examples']['train']} "
                     f"training images, {noise} single positives")
        plot(runs, args.plot, title)


if __name__ == "__main__":
    main()
