"""The sweep runner (configs/benchmark.py, `runner='sweep'`): trains each (method, seed) in its own sub-workdir, one
after another, and gathers the results into <workdir>/results.md and results.csv.

Each run is an ordinary train.train_and_evaluate run of the benchmark config with `method` and `seed` set (the
`benchmark` block removed), so it resumes from its own checkpoints and a finished one (results.json present) is read
instead of trained again. The tables are rewritten after every run, so they show the progress so far.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings

import numpy as np

from adagc_jax import config_utils, methods, parallel, selection, workdir
from adagc_jax.errors import NonFiniteLossError

RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"


def selected_methods(config) -> list[str]:
    """benchmark.methods as a list in table order; ('all',) -> every method of METHOD.md section 8."""
    names = list(config.benchmark.methods)
    if names in ([], ["all"]):
        return list(methods.METHODS)
    for name in names:
        config_utils.lookup(methods.METHODS, name, "benchmark.methods")
    if len(set(names)) != len(names):
        raise config_utils.ConfigError(f"benchmark.methods lists a method twice: {names}")
    return names


def run_config(config, method: str, seed: int):
    """The config of one run: the benchmark config without its `benchmark` block, with method and seed set."""
    c = config.copy_and_resolve_references()
    with c.unlocked():
        del c["benchmark"]
        c.runner = "train"
        c.method = method
        c.seed = int(seed)
    return c


def run_dir(workdir: str, method: str, seed: int) -> str:
    return os.path.join(workdir, method, f"seed_{seed}")


def _check_finished_run(path: str, saved: dict, current: dict) -> None:
    """A finished run is reused only if its config agrees on every key both configs have, except the keys that
    cannot change the trained model (workdir.MODEL_NEUTRAL_KEYS); keys that only one has come from another code
    version and are ignored."""
    differ = [(k, a, b) for k, a, b in workdir.compare_configs(saved, current)
              if not workdir.is_model_neutral(k) and workdir.ABSENT not in (a, b)]
    if differ:
        details = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in differ[:5])
        raise config_utils.ConfigError(
            f"the finished run in {path} was trained with another config ({details}"
            f"{', ...' if len(differ) > 5 else ''}); delete it to retrain, or use another --workdir")


def _log(message: str) -> None:
    if parallel.is_main_process():
        print(message, flush=True)


def _row(method: str, seed: int, results: dict | None, status: str = "ok") -> dict:
    row = {"method": method, "seed": seed, "status": status}
    if results is None:
        return row
    test = results["test"]
    reported = test[test["reported_model"]]
    row.update({
        "reported_model": test["reported_model"],
        "test_mAP": test["mAP"],
        "val_mAP": results["val"]["mAP"],
        "micro_F1": reported["micro_F1"],
        "macro_F1": reported["macro_F1"],
        "num_classes_skipped": reported["num_classes_skipped"],
        "per_class_AP": reported["per_class_AP"],
        "class_names": results["dataset"]["class_names"],
        "dataset": results["dataset"]["name"],
        "noise": results["config"]["noise"],
        **selection.protocol_summary(results),
    })
    return row


def run(config, workdir: str) -> list[dict]:
    """Trains (or reads) every selected (method, seed) and writes the tables; returns one row per run."""
    from adagc_jax import config_checks, train  # jax/TF imports

    names = selected_methods(config)
    seeds = [int(s) for s in config.benchmark.seeds]
    if not seeds:
        raise config_utils.ConfigError("benchmark.seeds is empty")
    plan = [(m, s, run_config(config, m, s)) for m in names for s in seeds]
    for _, _, c in plan:  # every run's config is checked before the first one trains
        config_checks.validate_config(c)
    os.makedirs(workdir, exist_ok=True)

    rows = []
    for i, (method, seed, c) in enumerate(plan, 1):
        path = run_dir(workdir, method, seed)
        results_path = os.path.join(path, "results.json")
        current = json.loads(c.to_json_best_effort())
        if os.path.exists(results_path):
            with open(results_path) as f:
                results = json.load(f)
            _check_finished_run(path, results["config"], current)
            _log(f"[{i}/{len(plan)}] {method} seed {seed}: finished earlier ({path})")
            rows.append(_row(method, seed, results))
        else:
            _log(f"[{i}/{len(plan)}] {method} seed {seed} -> {path}")
            try:
                rows.append(_row(method, seed, train.train_and_evaluate(c, path)))
            except NonFiniteLossError as e:
                # One diverging baseline must not stop the others; the table says which one failed.
                _log(f"{method} seed {seed} stopped: {e}")
                rows.append(_row(method, seed, None, status="non-finite loss"))
        if parallel.is_main_process():
            write_tables(workdir, rows, names)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Tables


def _pct(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else 100.0 * float(value)


def _stats(values):
    """(mean, sample std (ddof=1; None for one value), count) of the non-missing values."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None, None, 0
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None), len(values)


def _per_class(rows):
    """Per-class AP (%) of each run (NaN where the class was skipped for having no positive)."""
    return np.array([[np.nan if ap is None else 100.0 * ap for ap in r["per_class_AP"]] for r in rows], np.float64)


def _nan_reduce(reduce, array):
    """np.nanmean / np.nanstd over seeds without the warning for an all-NaN column (a class with no positive)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(array)


def _fmt(value, digits=2):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _mean_std(values):
    mean, std, n = _stats(values)
    if n == 0:
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


# Test mAP under both protocols (BASELINES.md section 2): the final epoch, the best validation epoch (complete
# labels), the best single-positive validation epoch; `test_mAP` is the one eval.select reports.
SCALARS = ("test_mAP", "final_test_mAP", "best_val_test_mAP", "best_sp_test_mAP", "val_mAP", "micro_F1", "macro_F1")
EPOCHS = ("final_epoch", "best_val_epoch", "best_sp_epoch")


def write_tables(workdir: str, rows: list[dict], order: list[str]) -> None:
    """results.csv (one line per run, plus mean/std lines per method with several seeds; values in %) and
    results.md (mean ± std over seeds, then per-class test AP averaged over seeds)."""
    done = [r for r in rows if r["status"] == "ok"]
    class_names = done[0]["class_names"] if done else []
    by_method = {m: [r for r in done if r["method"] == m] for m in order}

    header = ["method", "seed", "status", *SCALARS, *EPOCHS, "num_classes_skipped",
              *(f"AP_{c}" for c in class_names)]
    lines = []
    for method in order:
        method_rows = [r for r in rows if r["method"] == method]
        for r in method_rows:
            line = {"method": method, "seed": r["seed"], "status": r["status"]}
            if r["status"] == "ok":
                line.update({k: _fmt(_pct(r[k]), 4) for k in SCALARS})
                line.update({k: r[k] for k in EPOCHS})
                line["num_classes_skipped"] = r["num_classes_skipped"]
                line.update({f"AP_{c}": _fmt(v, 4) for c, v in zip(class_names, _per_class([r])[0])})
            lines.append(line)
        ok = by_method[method]
        if len(ok) > 1:
            per_class = _per_class(ok)
            for label, reduce in (("mean", lambda a: np.nanmean(a, axis=0)),
                                  ("std", lambda a: np.nanstd(a, axis=0, ddof=1))):
                line = {"method": method, "seed": label, "status": f"{len(ok)} runs"}
                for k in SCALARS:
                    mean, std, _ = _stats([_pct(r[k]) for r in ok])
                    line[k] = _fmt(mean if label == "mean" else std, 4)
                values = _nan_reduce(reduce, per_class)
                line.update({f"AP_{c}": _fmt(v, 4) for c, v in zip(class_names, values)})
                lines.append(line)
    _write_atomic(os.path.join(workdir, RESULTS_CSV), lambda f: _write_csv(f, header, lines))

    first = done[0] if done else {}
    md = [f"# Benchmark: {first.get('dataset', '?')}, {first.get('noise', '?')} single positives", ""]
    md.append(f"mAP and micro / macro F1 (threshold 0.5) of the reported model ({first.get('reported_model', '?')}), "
              f"in %; mean ± sample std over seeds where there are several. Test mAP under both protocols: the "
              f"final epoch, the epoch of best validation mAP with complete labels (as the SPML papers report), and "
              f"the epoch of best validation mAP against single positives (what a user without complete labels "
              f"can select); mean selected epochs in brackets. `reported` is the model eval.select reports (its "
              f"val mAP and F1 follow). Runs: `<method>/seed_<s>/results.json`.")
    md += ["", "| method | runs | test mAP: final | best val (epoch) | best single-positive val (epoch) | reported "
               "| val mAP | micro F1 | macro F1 |", "|---|---|---|---|---|---|---|---|---|"]
    for method in order:
        ok = by_method[method]
        failed = [r for r in rows if r["method"] == method and r["status"] != "ok"]
        runs = f"{len(ok)}" + (f" (+{len(failed)} failed: {failed[0]['status']})" if failed else "")

        def cell(key, epoch_key=None, ok=ok):
            text = _mean_std([_pct(r[key]) for r in ok])
            epochs = [r[epoch_key] for r in ok if epoch_key and r.get(epoch_key) is not None]
            return text + (f" ({np.mean(epochs):.1f})" if epochs else "")

        cells = [cell("final_test_mAP"), cell("best_val_test_mAP", "best_val_epoch"),
                 cell("best_sp_test_mAP", "best_sp_epoch"), cell("test_mAP"), cell("val_mAP"), cell("micro_F1"),
                 cell("macro_F1")]
        md.append(f"| {method} | {runs} | " + " | ".join(cells) + " |")
    if class_names:
        skipped = max(r["num_classes_skipped"] for r in done)
        md += ["", "## Per-class AP (test, %, mean over seeds)", ""]
        if skipped:
            md.append(f"Blank: a class without positives in the test split (skipped in mAP; up to {skipped}).")
            md.append("")
        md.append("| method | " + " | ".join(class_names) + " |")
        md.append("|---|" + "---|" * len(class_names))
        for method in order:
            ok = by_method[method]
            if not ok:
                continue
            values = _nan_reduce(lambda a: np.nanmean(a, axis=0), _per_class(ok))
            md.append(f"| {method} | " + " | ".join(_fmt(v, 1) for v in values) + " |")
    _write_atomic(os.path.join(workdir, RESULTS_MD), lambda f: f.write("\n".join(md) + "\n"))


def _write_csv(f, header, lines):
    writer = csv.DictWriter(f, fieldnames=header)
    writer.writeheader()
    writer.writerows(lines)


def _write_atomic(path, write):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)
