"""Tests of the speed benchmarks: benchmarks/throughput.py (the accelerator step, which must not import
TensorFlow) and benchmarks/pipeline.py (the tf.data pipeline alone). Tiny shapes: the numbers are not checked
against wall-clock expectations, only that they are measured, finite and consistent."""

import importlib.util
import math
import os

from conftest import REPO, run_python, tiny_config


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(stdout):
    """The markdown table at the end of the output: (header cells, rows of cells)."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return split[0], split[2:]


def _imported_modules(importtime_stderr):
    """Top-level package names from `python -X importtime`'s report (the last column of each line)."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_throughput_runs_without_tensorflow():
    args = ["-X", "importtime", "benchmarks/throughput.py", "--configs", "120x12", "--methods", "an",
            "--model", "small_cnn", "--image_size", "16", "--batch_per_device", "2", "--steps", "2", "--warmup",
            "1", "--peak_tflops", "0.5", "--dtype", "float32"]
    result = run_python(args, env_extra={"XLA_FLAGS": ""}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    modules = _imported_modules(result.stderr)
    assert "jax" in modules and "flax" in modules  # the report was read
    assert not {"tensorflow", "tensorflow_datasets"} & modules, sorted(modules)
    header, rows = _table(result.stdout)
    throughput = _load("throughput")
    assert tuple(header) == throughput.COLUMNS
    assert len(rows) == 1
    row = dict(zip(header, rows[0]))
    assert (row["config"], row["method"], row["batch"], row["devices"]) == ("120x12", "an", "2", "1")
    values = {k: float(row[k]) for k in ("compile s", "step ms", "images/s", "GFLOP/image", "TFLOP/s achieved")}
    assert all(math.isfinite(v) and v > 0 for v in values.values()), row
    assert math.isclose(values["images/s"], 2 * 1e3 / values["step ms"], rel_tol=0.01)
    utilisation = float(row["utilisation"].rstrip(" %"))
    assert math.isclose(utilisation, 100 * values["TFLOP/s achieved"] / 0.5, rel_tol=0.01)


def test_throughput_utilisation_per_device_peak():
    throughput = _load("throughput")
    rows = [{"config": "c", "method": m, "batch": 8, "devices": 2, "compile s": 1.0, "step ms": 10.0,
             "images/s": 800.0, "GFLOP/image": 1.0, "TFLOP/s achieved": 0.8} for m in ("an", "adagc")]
    table = throughput.markdown_table(rows, peak_tflops=0.4)
    assert table.count("| 100 % |") == 2  # 0.8 TFLOP/s over 2 devices x 0.4
    assert "n/a" in throughput.markdown_table(rows, peak_tflops=0)


def test_pipeline_measures_the_training_pipeline(data_dir):
    pipeline = _load("pipeline")
    config = tiny_config(data_dir)  # 128 training images, batch 32: 4 batches an epoch
    row = pipeline.measure_pipeline(config, images=200)
    assert row["epochs"] == 1 + math.ceil(200 / 128) and row["images"] == 128 * row["epochs"]
    assert row["train images"] == 128 and row["batch"] == 32
    assert math.isfinite(row["images/s"]) and row["images/s"] > 0 and row["per core"] <= row["images/s"]
    row.update(config="tiny", **{"step images/s": row["images/s"] / 4})
    header, rows = _table(pipeline.markdown_table([row]))
    assert tuple(header) == pipeline.COLUMNS
    assert rows[0][-1] == "0.250"


def test_pipeline_set_values():
    pipeline = _load("pipeline")
    assert [pipeline.parse_value(v) for v in ("120", "0.5", "(8, 16)", "True", "reben")] == \
        [120, 0.5, (8, 16), True, "reben"]
