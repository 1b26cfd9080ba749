"""Replays AdaGC's trigger rules on the signals recorded by `trigger.rule=never` runs (issue 13, METHOD.md 6 / 6b).

    python benchmarks/trigger_replay.py runs/rules_random runs/memfast_random runs/rules_dominant runs/memfast_dominant

Reads every <root>/<variant>/seed_<s>/results.json under the roots given and uses three kinds of run:
  - `adagc` with trigger.rule=never: GC never switches on, so up to any epoch its training is exactly the warm-up
    of an `adagc` run with any rule (the rule changes nothing before it fires). Its history holds every trigger
    signal of every epoch, so each rule and setting can be replayed on it: the epoch it would fire at (and, for
    `act`, the epoch it detects the plateau's end), and the never run's VALIDATION mAP there, below the run's own
    validation peak. That distance is the selection criterion: validation only, no test labels.
  - `an` (optional): its validation mAP at the same epochs, and its peak epoch (the issue's reference).
  - `adagc` with any other rule (optional): a table of the real runs (where the trigger fired and detected, `an`'s
    validation mAP there, the epochs the rollback re-ran, test mAP at the final and the best validation epoch), and
    each adaptive rule's epochs checked against the replay of the never run of the same noise and seed ("DIFFERS"
    would mean the replay is not the rule the training loop runs).
The replay uses adagc_jax.trigger.AdaptiveTrigger itself, with the cap trigger.max_epochs of the never run's config
(-1 = half of num_epochs), so it is the rule of the training loop, not a copy of it; --max_epochs N replays with
another cap (e.g. num_epochs: where each rule would fire by itself). A firing at the cap is marked "cap".

Prints markdown: one table per noise type (settings x seeds) and a ranking of the settings by their mean distance
below the validation peak over every noise type and seed. Measures nothing itself.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from adagc_jax import trigger as trigger_lib  # noqa: E402
from benchmarks.memorization_report import curve, mean_std, pct  # noqa: E402

# The replayed settings: (name, rule, signal, trigger keyword arguments). The signals that rise during early learning
# are the ones act's saturating-exponential fit describes (the METHOD.md 6b signal is a training accuracy).
ACT_WINDOWS = ((2, 3, 4), (3, 4, 5), (3, 5, 7), (4, 6, 8), (5, 7, 9), (6, 8, 10))
SETTINGS = tuple(
    [("slope (default)", "slope", "observed_fit", {}),
     ("slope, window 5", "slope", "observed_fit", {"window": 5}),
     ("slope, eps 0.05", "slope", "observed_fit", {"eps": 0.05}),
     ("slope on observed_top1", "slope", "observed_top1", {})]
    + [(f"act {signal} {','.join(map(str, w))}", "act", signal, {"act_windows": w})
       for signal in ("observed_top1", "observed_fit") for w in ACT_WINDOWS])


def load(roots) -> list:
    runs = []
    for root in roots:
        paths = sorted(glob.glob(os.path.join(root, "*", "seed_*", "results.json")))
        if not paths:
            raise SystemExit(f"no <variant>/seed_<s>/results.json under {root}")
        for path in paths:
            with open(path) as f:
                runs.append(json.load(f))
    return runs


def cap(results: dict, override: int = 0) -> int:
    if override > 0:
        return override
    configured = results["config"]["trigger"]["max_epochs"]
    return configured if configured > 0 else results["config"]["num_epochs"] // 2


def replay(history: list, rule: str, signal: str, max_epochs: int, **kwargs) -> tuple:
    """(fired epoch, detected epoch) of `rule` on the per-epoch records `history` of a never run: the epochs are fed
    to the training loop's AdaptiveTrigger one by one until it fires."""
    trigger = trigger_lib.AdaptiveTrigger(rule=rule, max_epochs=max_epochs, **kwargs)
    for record in history:
        trigger.update(record[signal])
        if trigger.fired:
            return trigger.fired_epoch, trigger.detected_epoch
    return None, None


def _val(results: dict) -> dict:
    return curve(results, "val_mAP")


def analyse(runs: list, max_epochs: int = 0) -> dict:
    """noise -> {"seeds": [...], "never": {seed: results}, "an": {seed: results}, "real": [results], "rows": {setting
    name: {seed: (fired, detected, never val there, below never's peak, an's val there)}}}."""
    by_noise = {}
    for r in runs:
        config, noise = r["config"], r["config"]["noise"]
        group = by_noise.setdefault(noise, {"never": {}, "an": {}, "real": [], "rows": {}})
        if config["method"] == "adagc" and config["trigger"]["rule"] == "never":
            group["never"][config["seed"]] = r
        elif config["method"] == "an":
            group["an"][config["seed"]] = r
        elif config["method"] == "adagc":
            group["real"].append(r)
    for group in by_noise.values():
        group["seeds"] = sorted(group["never"])
        group["caps"] = {seed: cap(never, max_epochs) for seed, never in group["never"].items()}
        for name, rule, signal, kwargs in SETTINGS:
            row = {}
            for seed, never in group["never"].items():
                fired, detected = replay(never["history"], rule, signal, group["caps"][seed], **kwargs)
                val = _val(never)
                at = val.get(fired)
                an_val = _val(group["an"][seed]).get(fired) if seed in group["an"] else None
                row[seed] = (fired, detected, at, None if at is None else max(val.values()) - at, an_val)
            group["rows"][name] = row
    return by_noise


def _expected(group: dict, results: dict):
    """(fired, detected) of the replay of a real run's rule on the never run of its seed; None where there is no
    such never run or the rule is not adaptive."""
    t, never = results["config"]["trigger"], group["never"].get(results["config"]["seed"])
    if never is None or t["rule"] not in ("slope", "act") or t["signal"] not in never["history"][0]:
        return None
    kwargs = ({"act_windows": tuple(t["act_windows"])} if t["rule"] == "act" else
              {"window": t["window"], "eps": t["eps"], "min_epochs": t["min_epochs"]})
    return replay(never["history"], t["rule"], t["signal"], cap(never), **kwargs)


def _variant(results: dict) -> str:
    t = results["config"]["trigger"]
    detail = {"act": f" ({t['signal']}, windows {','.join(map(str, t['act_windows']))})",
              "slope": f" ({t['signal']})", "fixed": f" (epoch {t.get('epoch')})"}.get(t["rule"], "")
    return f"{t['rule']}{detail}"


def check_real_runs(group: dict) -> list:
    """Lines comparing each real adagc run's fired/detected epochs with the replay on the never run of its seed."""
    lines = []
    for r in group["real"]:
        expected = _expected(group, r)
        if expected is None:
            continue
        actual = (r["trigger"]["fired_epoch"], r["trigger"].get("detected_epoch"))
        verdict = "agrees" if expected == actual else "DIFFERS"
        lines.append(f"- adagc {_variant(r)}, seed {r['config']['seed']}: fired {actual[0]}, detected {actual[1]}; "
                     f"replay on the never run: fired {expected[0]}, detected {expected[1]}: {verdict}")
    return lines


def real_runs_table(group: dict) -> str:
    """Every real adagc run (any rule, the never runs included): where its trigger fired, `an`'s validation mAP
    there, the epochs the rollback re-ran, and its test mAP at the final and at the best validation epoch."""
    lines = ["| rule | seed | fired (detected) | an's val there (below an's peak) | epochs re-run | test: final | "
             "test: best val (epoch) |", "|---|---|---|---|---|---|---|"]
    runs = sorted(group["real"] + list(group["never"].values()),
                  key=lambda r: (_variant(r), r["config"]["seed"]))
    for r in runs:
        seed, t = r["config"]["seed"], r["trigger"]
        an_val = _val(group["an"][seed]) if seed in group["an"] else {}
        fired, detected = t["fired_epoch"], t.get("detected_epoch")
        at = an_val.get(fired)
        below = None if at is None else max(an_val.values()) - at
        best = r.get("best_val") or {}
        lines.append(f"| {_variant(r)} | {seed} | {'-' if fired is None else fired}"
                     f"{f' ({detected})' if detected else ''} | {pct(at)} ({pct(below)}) | "
                     f"{t.get('rolled_back_epochs', 0)} | {pct(r['test']['mAP'])} | "
                     f"{pct(best.get('test', {}).get('mAP'))} ({best.get('epoch', '-')}) |")
    return "\n".join(lines) + "\n"


def _last(results: dict, key: str):
    values = [h[key] for h in results["history"] if h.get(key) is not None and not h.get("rolled_back")]
    return values[-1] if values else None


# What each rule's model ends with (mean over seeds): ranking (mAP, ranking loss), its probabilities at the 0.5
# threshold on test, the teacher's mean probability on the unobserved training entries, the memory's pseudo-labels
# at 0.5 against the hidden labels, and how many hidden positives the teacher recovers on the training images.
def _test(results: dict, key: str):
    return results["test"].get("teacher", {}).get(key)


END_STATE = (("test mAP", lambda r: r["test"]["mAP"]),
             ("ranking loss", lambda r: _test(r, "ranking_loss")),
             ("micro precision @0.5", lambda r: _test(r, "micro_precision")),
             ("micro recall @0.5", lambda r: _test(r, "micro_recall")),
             ("labels per image: abs(predicted − true)", lambda r: _test(r, "label_cardinality_error")),
             ("unobserved mass (train)", lambda r: _last(r, "unobserved_mass")),
             ("pseudo-label precision", lambda r: _last(r, "pseudo_label_precision")),
             ("pseudo-label recall", lambda r: _last(r, "pseudo_label_recall")),
             ("train FN recall", lambda r: _last(r, "train_fn_recall")))


def end_state_table(group: dict) -> str:
    variants = {}
    for r in list(group["an"].values()) + group["real"] + list(group["never"].values()):
        name = "an" if r["config"]["method"] == "an" else f"adagc {_variant(r)}"
        variants.setdefault(name, []).append(r)
    lines = ["| model | seeds | " + " | ".join(name for name, _ in END_STATE) + " |",
             "|---|---|" + "---|" * len(END_STATE)]
    for name, runs in sorted(variants.items()):
        cells = []
        for label, get in END_STATE:
            values = [v for v in (get(r) for r in runs) if v is not None]
            if not values:
                cells.append("-")
            elif label.startswith("labels per image"):
                cells.append(f"{statistics.mean(values):.2f}")
            else:
                cells.append(mean_std(values))
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table(noise: str, group: dict) -> str:
    seeds = group["seeds"]
    peaks = []
    for s in seeds:
        val = _val(group["never"][s])
        best = max(val, key=val.get)
        an_val = _val(group["an"][s]) if s in group["an"] else {}
        an_peak = f", an's peak {max(an_val, key=an_val.get)} ({pct(max(an_val.values()))})" if an_val else ""
        peaks.append(f"seed {s}: never's validation peak at epoch {best} ({pct(val[best])}){an_peak}")
    head = " | ".join(f"seed {s}: fired (detected) | val there (below peak) | an's val" for s in seeds)
    lines = [f"#### {noise} noise", "", "; ".join(peaks), "",
             f"| setting | {head} | mean below peak |", "|---|" + "---|---|---|" * len(seeds) + "---|"]
    for name, row in group["rows"].items():
        cells = []
        for s in seeds:
            fired, detected, at, below, an_val = row[s]
            at_cap = fired is not None and detected is None and fired == group["caps"][s]
            cells += [f"{fired if fired is not None else '-'}" + (f" ({detected})" if detected else "")
                      + (" cap" if at_cap else ""),
                      f"{pct(at)} ({pct(below)})", pct(an_val)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean_std([row[s][3] for s in seeds])} |")
    return "\n".join(lines) + "\n"


def ranking(by_noise: dict) -> str:
    lines = ["| setting | " + " | ".join(f"{n}: mean below peak" for n in by_noise) + " | all: mean below peak |",
             "|---|" + "---|" * (len(by_noise) + 1)]
    scored = []
    for name, *_ in SETTINGS:
        per_noise = [[g["rows"][name][s][3] for s in g["seeds"]] for g in by_noise.values()]
        pooled = [b for values in per_noise for b in values if b is not None]
        scored.append((statistics.mean(pooled) if pooled else float("inf"), name, per_noise, pooled))
    for _, name, per_noise, pooled in sorted(scored, key=lambda t: t[0]):
        lines.append(f"| {name} | " + " | ".join(mean_std(v) for v in per_noise) + f" | {mean_std(pooled)} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", help="directories holding <variant>/seed_<s>/results.json")
    parser.add_argument("--max_epochs", type=int, default=0,
                        help="replay with this cap instead of the runs' trigger.max_epochs (0: the runs' own)")
    args = parser.parse_args()
    by_noise = analyse(load(args.roots), args.max_epochs)
    by_noise = {n: g for n, g in sorted(by_noise.items()) if g["never"]}
    if not by_noise:
        raise SystemExit("no adagc run with trigger.rule=never among the roots: nothing to replay")
    print("### Replayed trigger epochs on the never runs (validation mAP in %)\n")
    for noise, group in by_noise.items():
        print(table(noise, group))
        if group["real"]:
            print(f"Real adagc runs, {noise} noise (mAP of the teacher):\n")
            print(real_runs_table(group))
            print(f"What each model ends with, {noise} noise (test metrics of the teacher at the last epoch; "
                  "training-set numbers of the last epoch that has them; mean ± std over seeds, in %):\n")
            print(end_state_table(group))
        checks = check_real_runs(group)
        if checks:
            print("Real runs against the replay:\n\n" + "\n".join(checks) + "\n")
    print("### Settings ranked by the mean distance below the never runs' validation peak\n")
    print(ranking(by_noise))


if __name__ == "__main__":
    main()
