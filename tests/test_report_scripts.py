"""Tests of the result-reading scripts in benchmarks/ (they read results.json files; no training here)."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(root, variant, seed, method, val, test_final, fired, student=None):
    run = root / variant / f"seed_{seed}"
    run.mkdir(parents=True)
    results = {
        "config": {"method": method, "noise": "random", "seed": seed},
        "test": {"mAP": test_final, "student": {"mAP": student if student is not None else test_final}},
        "val": {"mAP": val[-1]},
        "trigger": {"fired_epoch": fired},
        "history": [{"epoch": e, "val_mAP": v, "test_mAP": v - 0.01} for e, v in enumerate(val, 1)],
    }
    (run / "results.json").write_text(json.dumps(results))


def test_memorization_report_tables(tmp_path, capsys):
    report = _load("memorization_report")
    # an peaks at epoch 3 (0.80) and declines; adagc's trigger fires at epoch 2 (an's val there: 0.78).
    _write_run(tmp_path, "an", 0, "an", [0.5, 0.78, 0.80, 0.70], 0.68, None)
    _write_run(tmp_path, "adagc", 0, "adagc", [0.5, 0.77, 0.79, 0.80], 0.78, 2, student=0.775)
    _write_run(tmp_path, "an", 1, "an", [0.6, 0.82, 0.81, 0.72], 0.70, None)
    _write_run(tmp_path, "adagc", 1, "adagc", [0.6, 0.80, 0.81, 0.81], 0.76, 3)
    _write_run(tmp_path, "adagc_never", 0, "adagc", [0.5, 0.77, 0.78, 0.75], 0.73, None)

    runs = report.load_runs(str(tmp_path))
    assert sorted(runs) == ["adagc", "adagc_never", "an"] and sorted(runs["an"]) == [0, 1]

    table = report.adagc_vs_an(runs).splitlines()
    assert table[2] == "| 0 | 80.0 (3) | 70.0 | 68.0 | 78.0 (77.5) | +10.0 | 2 | 78.0 (2.0) |"
    assert table[3] == "| 1 | 82.0 (2) | 72.0 | 70.0 | 76.0 (76.0) | +6.0 | 3 | 81.0 (1.0) |"
    # mean +- sample std over the two seeds
    assert table[4].startswith("| mean ± std | | | 69.0 ± 1.4 | 77.0 ± 1.4 | 8.0 ± 2.8 |")

    variants = report.variants(runs)
    assert "| adagc_never | 0 | 73.0 | 75.0 | - | 5.0 |" in variants

    # Both protocols; these results.json files predate the selection blocks, so the best validation epoch and its
    # test mAP come from the history (an: epochs 3 and 2, test 0.79 and 0.81; adagc: epochs 4 and 3 (the first of
    # two equal maxima), test 0.79 and 0.80).
    table = report.protocols(runs).splitlines()
    assert table[0].startswith("| variant | seeds | test mAP: final (epoch) | − an: final | test mAP: best val")
    assert table[2] == "| an | 0,1 | 69.0 ± 1.4 (4.0) | - | 80.0 ± 1.4 (2.5) | - | - | - |"
    assert table[3] == "| adagc | 0,1 | 77.0 ± 1.4 (4.0) | 8.0 ± 2.8 | 79.5 ± 0.7 (3.5) | -0.5 ± 0.7 | - | - |"

    # AdaGC minus every other variant, on the seeds both ran.
    table = report.adagc_minus(runs).splitlines()
    assert table[2] == "| adagc_never | 0 | +5.0 | +2.0 | - |"
    assert table[3] == "| an | 0,1 | +8.0 ± 2.8 | -0.5 ± 0.7 | - |"

    report.write_csv(runs, str(tmp_path / "runs.csv"))
    rows = (tmp_path / "runs.csv").read_text().splitlines()
    assert rows[0].startswith("variant,method,noise,seed,final_epoch,final_test_mAP,best_val_epoch")
    assert "an,an,random,0,4,68.0,3,79.0,,,80.0,70.0,,False,68.0" in rows

    report.plot(runs, str(tmp_path / "curves.png"), "test")
    assert (tmp_path / "curves.png").stat().st_size > 0

    # The CSV alone (runs done elsewhere, workdirs gone) gives the same tables, except the columns that need curves.
    from_csv = report.load_runs("", [str(tmp_path / "runs.csv")])
    assert report.protocols(from_csv) == report.protocols(runs)
    assert report.adagc_minus(from_csv) == report.adagc_minus(runs)
    assert report.variants(from_csv) == report.variants(runs)
    first_seed = report.adagc_vs_an(from_csv).splitlines()[2]
    assert first_seed == "| 0 | 80.0 (3) | 70.0 | 68.0 | 78.0 (77.5) | +10.0 | 2 | - (-) |"
    report.plot(from_csv, str(tmp_path / "none.png"), "test")
    assert not (tmp_path / "none.png").exists()

    # A run under the root replaces the CSV's row of the same variant and seed; the other rows stay.
    new_root = tmp_path / "new"
    _write_run(new_root, "an", 1, "an", [0.6, 0.82, 0.81, 0.72], 0.60, None)
    merged = report.load_runs(str(new_root), [str(tmp_path / "runs.csv")])
    assert merged["an"][1]["final_test_mAP"] == 0.60 and merged["an"][1]["results"] is not None
    assert merged["an"][0]["final_test_mAP"] == pytest.approx(0.68) and merged["an"][0]["results"] is None
    assert sorted(merged) == ["adagc", "adagc_never", "an"]


def test_memorization_report_without_runs_says_what_it_expects(tmp_path):
    report = _load("memorization_report")
    with pytest.raises(SystemExit, match="seed_"):
        report.load_runs(str(tmp_path))
    with pytest.raises(SystemExit, match="no such file"):
        report.load_runs(str(tmp_path), [str(tmp_path / "missing.csv")])
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="no column variant"):
        report.load_runs(str(tmp_path), [str(tmp_path / "other.csv")])


def _never_like_run(root, variant, method, rule, signal, val, fired=None, detected=None, act_windows=(3, 5, 7)):
    """A results.json with the per-epoch records trigger_replay reads (signals and validation mAP)."""
    run = root / variant / "seed_0"
    run.mkdir(parents=True)
    history = [{"epoch": e, "observed_top1": a, "observed_fit": a, "val_mAP": v}
               for e, (a, v) in enumerate(zip(signal, val), 1)]
    results = {"config": {"method": method, "noise": "random", "seed": 0, "num_epochs": len(signal),
                          "trigger": {"rule": rule, "signal": "observed_top1", "max_epochs": -1, "window": 3,
                                      "eps": 0.1, "min_epochs": 2, "act_windows": list(act_windows)}},
               "history": history, "trigger": {"fired_epoch": fired, "detected_epoch": detected},
               "test": {"mAP": val[-1] - 0.01}, "best_val": {"epoch": 10, "test": {"mAP": 0.79}}}
    (run / "results.json").write_text(json.dumps(results))


def test_trigger_replay_is_the_training_loops_rule_on_the_never_runs_signals(tmp_path, capsys):
    import numpy as np

    from adagc_jax import trigger

    replay = _load("trigger_replay")
    # Rise (epochs 1-6), plateau (7-13), rise again (14-40); validation peaks at epoch 10.
    signal = list(np.concatenate([np.linspace(0.05, 0.30, 6), np.full(7, 0.30) + np.arange(7) * 1e-3,
                                  0.31 + np.arange(27) * 0.02]))
    val = [0.5 + 0.03 * min(e, 10) - 0.005 * max(0, e - 10) for e in range(1, 41)]
    _never_like_run(tmp_path, "adagc_never", "adagc", "never", signal, val)
    detected, fired, _ = trigger.act_decision(signal, (3, 5, 7))
    assert detected is not None and detected <= 20  # before the cap (half of 40 epochs)
    _never_like_run(tmp_path, "adagc_act", "adagc", "act", signal, val, fired=fired, detected=detected)
    _never_like_run(tmp_path, "adagc_wrong", "adagc", "act", signal, val, fired=fired + 1, detected=detected)

    by_noise = replay.analyse(replay.load([str(tmp_path)]))
    row = by_noise["random"]["rows"]["act observed_top1 3,5,7"][0]
    assert row[:2] == (fired, detected)
    assert row[2] == pytest.approx(val[fired - 1]) and row[3] == pytest.approx(max(val) - val[fired - 1])
    checks = replay.check_real_runs(by_noise["random"])
    assert len(checks) == 2 and sum("agrees" in c for c in checks) == 1 and sum("DIFFERS" in c for c in checks) == 1
    table = replay.real_runs_table(by_noise["random"])
    assert f"| act (observed_top1, windows 3,5,7) | 0 | {fired} ({detected}) | - (-) | 0 | 64.0 | 79.0 (10) |" in table
    assert "| never | 0 | - | - (-) | 0 |" in table
    end = replay.end_state_table(by_noise["random"]).splitlines()
    assert end[0].startswith("| model | seeds | test mAP | ranking loss |")
    assert "| adagc never | 1 | 64.0 |" in end[3]

    # Windows too long for this history detect nothing before the cap: the rule fires at the cap, marked so.
    capped = replay.replay([{"observed_top1": a} for a in signal], "act", "observed_top1", 15, act_windows=(9, 11))
    assert capped == (15, None)
    replay.main.__globals__["sys"].argv = ["trigger_replay.py", str(tmp_path)]
    replay.main()
    out = capsys.readouterr().out
    assert "| act observed_top1 6,8,10 |" in out and "Settings ranked" in out
