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


def load_runs(root: str) -> dict:
    """variant -> seed -> results dict."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "seed_*", "results.json"))):
        variant = os.path.basename(os.path.dirname(os.path.dirname(path)))
        seed = int(os.path.basename(os.path.dirname(path))[len("seed_"):])
        with open(path) as f:
            runs.setdefault(variant, {})[seed] = json.load(f)
    if not runs:
        raise SystemExit(f"no <variant>/seed_<s>/results.json under {root}")
    return runs


def _curve(results: dict, key: str) -> dict:
    return {h["epoch"]: h[key] for h in results["history"] if h.get(key) is not None}


def _fired(results: dict):
    return results["trigger"]["fired_epoch"]


def _switches_gc(by_seed: dict) -> bool:
    """Whether the variant's trigger switches GC on (for other methods it only records when it would have)."""
    return any(r["trigger"].get("switches_gc", r["config"]["method"] == "adagc") for r in by_seed.values())


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _mean_std(values) -> str:
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
        val = _curve(an, "val_mAP")
        best = max(val, key=val.get)
        fired = _fired(ada)
        at_fired = val.get(fired) if fired else None
        below = None if at_fired is None else val[best] - at_fired
        gap = ada["test"]["mAP"] - an["test"]["mAP"]
        for k, v in (("an_test", an["test"]["mAP"]), ("adagc_test", ada["test"]["mAP"]), ("gap", gap),
                     ("below", below)):
            cols[k].append(v)
        lines.append(f"| {s} | {_pct(val[best])} ({best}) | {_pct(val[max(val)])} | {_pct(an['test']['mAP'])} | "
                     f"{_pct(ada['test']['mAP'])} ({_pct(ada['test']['student']['mAP'])}) | {100 * gap:+.1f} | "
                     f"{fired if fired else '-'} | {_pct(at_fired)} ({_pct(below)}) |")
    lines.append(f"| mean ± std | | | {_mean_std(cols['an_test'])} | {_mean_std(cols['adagc_test'])} | "
                 f"{_mean_std(cols['gap'])} | | ({_mean_std(cols['below'])}) |")
    return "\n".join(lines) + "\n"


def variants(runs: dict) -> str:
    an = runs.get("an", {})
    lines = ["| variant | seeds | test mAP | val mAP | trigger fired | − an (same seeds, test) |",
             "|---|---|---|---|---|---|"]
    order = ["an", "adagc"] + sorted(v for v in runs if v not in ("an", "adagc"))
    for variant in (v for v in order if v in runs):
        by_seed = runs[variant]
        seeds = sorted(by_seed)
        fired = [_fired(by_seed[s]) for s in seeds]
        diffs = [by_seed[s]["test"]["mAP"] - an[s]["test"]["mAP"] for s in seeds if s in an]
        lines.append(f"| {variant} | {','.join(map(str, seeds))} | "
                     f"{_mean_std([by_seed[s]['test']['mAP'] for s in seeds])} | "
                     f"{_mean_std([by_seed[s]['val']['mAP'] for s in seeds])} | "
                     f"{', '.join(str(f) if f else '-' for f in fired) if _switches_gc(by_seed) else '-'} | "
                     f"{'-' if variant == 'an' or not diffs else _mean_std(diffs)} |")
    return "\n".join(lines) + "\n"


def _protocols(results: dict) -> dict:
    """protocol -> (test mAP, epoch) of one run."""
    summary = selection.protocol_summary(results)
    out = {"final": (summary["final_test_mAP"], summary["final_epoch"]),
           "best val": (summary["best_val_test_mAP"], summary["best_val_epoch"]),
           "best single-positive val": (summary["best_sp_test_mAP"], summary["best_sp_epoch"])}
    if out["best val"][0] is None:  # an older results.json: the history's best epoch and test curve
        val, test = _curve(results, "val_mAP"), _curve(results, "test_mAP")
        if val:
            best = max(val, key=val.get)
            out["best val"] = (test.get(best), best)
    return out


PROTOCOLS = ("final", "best val", "best single-positive val")


def protocols(runs: dict) -> str:
    an = runs.get("an", {})
    header = " | ".join(f"test mAP: {p} (epoch) | − an: {p}" for p in PROTOCOLS)
    lines = [f"| variant | seeds | {header} |", "|---|---|" + "---|---|" * len(PROTOCOLS)]
    order = ["an", "adagc"] + sorted(v for v in runs if v not in ("an", "adagc"))
    for variant in (v for v in order if v in runs):
        by_seed = runs[variant]
        seeds = sorted(by_seed)
        cells = []
        for p in PROTOCOLS:
            values = [_protocols(by_seed[s])[p] for s in seeds]
            epochs = [e for _, e in values if e is not None]
            epoch = f" ({statistics.mean(epochs):.1f})" if epochs else ""
            diffs = [_protocols(by_seed[s])[p][0] - _protocols(an[s])[p][0] for s in seeds
                     if s in an and _protocols(by_seed[s])[p][0] is not None and _protocols(an[s])[p][0] is not None]
            cells.append(f"{_mean_std([v for v, _ in values])}{epoch}")
            cells.append("-" if variant == "an" or not diffs else _mean_std(diffs))
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
            diffs = [_protocols(ada[s])[p][0] - _protocols(runs[variant][s])[p][0] for s in seeds
                     if None not in (_protocols(ada[s])[p][0], _protocols(runs[variant][s])[p][0])]
            cells.append(_signed_mean_std(diffs))
        lines.append(f"| {variant} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _signed_mean_std(values) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:+.1f}"
    return f"{100 * statistics.mean(values):+.1f} ± {100 * statistics.stdev(values):.1f}"


CSV_COLUMNS = ("variant", "method", "noise", "seed", "final_epoch", "final_test_mAP", "best_val_epoch",
               "best_val_test_mAP", "best_sp_epoch", "best_sp_test_mAP", "peak_val_mAP", "last_val_mAP",
               "trigger_fired_epoch", "switches_gc")


def write_csv(runs: dict, path: str) -> None:
    """One row per run (mAP in %), from which every table above can be recomputed."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for variant in sorted(runs):
            for seed, r in sorted(runs[variant].items()):
                p = _protocols(r)
                val = _curve(r, "val_mAP")
                cells = [variant, r["config"]["method"], r["config"]["noise"], seed]
                for key in PROTOCOLS:
                    value, epoch = p[key]
                    cells += [epoch, None if value is None else round(100 * value, 4)]
                cells += [round(100 * max(val.values()), 4) if val else None,
                          round(100 * val[max(val)], 4) if val else None,
                          _fired(r), _switches_gc({seed: r})]
                writer.writerow(["" if c is None else c for c in cells])


def plot(runs: dict, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted(set(runs.get("an", {})) | set(runs.get("adagc", {})))
    fig, axes = plt.subplots(1, len(seeds), figsize=(5 * len(seeds), 4), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], seeds):
        for variant, color in (("an", "tab:blue"), ("adagc", "tab:red")):
            if s not in runs.get(variant, {}):
                continue
            r = runs[variant][s]
            for key, style in (("val_mAP", "-"), ("test_mAP", ":")):
                curve = _curve(r, key)
                if curve:
                    ax.plot(list(curve), list(curve.values()), style, color=color,
                            label=f"{variant} ({key.split('_')[0]})")
            if variant == "adagc" and _fired(r):
                ax.axvline(_fired(r), color=color, alpha=0.4, linestyle="--", label="trigger fired")
        ax.set_title(f"seed {s}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mAP (teacher)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="directory holding <variant>/seed_<s>/results.json")
    parser.add_argument("--plot", default="", help="PNG path for the an / adagc curves")
    parser.add_argument("--csv", default="", help="CSV path: one row per run, both protocols")
    args = parser.parse_args()
    runs = load_runs(args.root)
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
        first = next(iter(next(iter(runs.values())).values()))
        dataset = first["dataset"]
        plot(runs, args.plot, f"{dataset['name']} {dataset['image_shape'][0]} px, "
                              f"{dataset['num_examples']['train']} training images, "
                              f"{first['config']['noise']} single positives")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
