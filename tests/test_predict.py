"""--mode=predict and --mode=eval on finished runs (adagc_jax/predict.py, docs/predict.md).

One cpu=1 training run per dataset, 1 epoch, shared by the module: AID-multilabel (assume-negative with the EMA
teacher: the teacher is reported) and reBEN (assume-negative without a teacher: the student is reported) on their
dummy releases. The probabilities predict writes for image files must equal the evaluation outputs
(evaluate.predict over the TFDS split, through the training input pipeline) for the same images, and --mode=eval
must reproduce the test metrics that the training run computed and wrote to results.json.

Budget: about 60 s on 2 CPU cores, most of it the two training runs (preparation and compilation).
"""

import csv
import json
import os
import shutil
import signal

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tifffile
from conftest import REPO

from adagc_jax import cli, config_utils, evaluate, image_files, input_pipeline, predict, train
from adagc_jax.errors import ConfigError, DatasetError, WorkdirError

DUMMY = os.path.join(REPO, "adagc_jax", "datasets", "dummy_data")
TOLERANCE = 1e-5


def _config(name, arg, data_dir, **keys):
    config = config_utils.load_config_file(os.path.join(REPO, "configs", name) + ":" + arg)
    config_utils.set_keys(config, {"dataset.data_dir": str(data_dir), "log.progress_bar": False, "num_devices": 1,
                                   # One epoch is all the comparisons need: no per-epoch test curve or diagnostics.
                                   "eval.test_every_epoch": False, "eval.train_diagnostics": False, **keys})
    return config


def _train(config, workdir):
    tfds.disable_progress_bar()
    train.train_and_evaluate(config, str(workdir))
    return workdir


@pytest.fixture(scope="module")
def aid_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("aid")
    # Assume-negative with the weight-EMA teacher (on by default): the teacher is the reported model. The method
    # does not matter here, and `an`'s step compiles faster than AdaGC's.
    config = _config("aid_multilabel.py", "cpu=1,epochs=1,method=an", base / "tfds",
                     **{"dataset.manual_dir": os.path.join(DUMMY, "aid_multilabel")})
    return config, _train(config, base / "run")


@pytest.fixture(scope="module")
def reben_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("reben")
    # Assume-negative without a teacher: the student is the reported model (and the step compiles faster).
    config = _config("reben.py", "subset=1.0,cpu=1,epochs=1,method=an", base / "tfds",
                     **{"dataset.manual_dir": os.path.join(DUMMY, "reben"), "ema.weights": False})
    return config, _train(config, base / "run")


def reference(run, config, splits):
    """{example name: probabilities of the reported model} from the evaluation path: evaluate.predict over the
    prepared TFDS splits through the training input pipeline. (The restored weights themselves are checked by
    test_eval_mode_prints_the_results_json_metrics against the numbers the training run computed in memory.)"""
    builder = input_pipeline.get_builder(config.dataset)
    pipeline = input_pipeline.InputPipeline(builder, config, input_pipeline.dataset_info(builder, config.dataset))
    out = {}
    for split in splits:
        probs = evaluate.predict(run.exp.eval_step, {"m": run.models[run.reported]}, pipeline, split, run.exp.mesh)
        names = {int(e["id"]): e["name"].decode() for e in tfds.as_numpy(builder.as_dataset(split))}
        out.update({names[int(i)]: p for i, p in zip(probs["ids"], probs["m"])})
    return out


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, {row[0]: row for row in reader}


def probabilities(row):
    return np.asarray([float(v) for v in row[1:-1]])


def test_run_stores_its_dataset_info(aid_run, tmp_path):
    config, workdir = aid_run
    info = json.loads((workdir / predict.DATASET_INFO_FILE).read_text())
    assert info["name"] == "aid_multilabel" and info["image_shape"] == [64, 64, 3] and info["dtype"] == "uint8"
    np.testing.assert_allclose(info["mean"], np.array([0.485, 0.456, 0.406]) * 255, rtol=1e-6)
    assert len(info["class_names"]) == 17 and info["class_names"][0] == "airplane"
    assert info["num_examples"] == {"train": 6, "validation": 3, "test": 3}
    # A run written before dataset_info.json existed: results.json and the builder's statistics stand in for it.
    old = tmp_path / "old_run"
    old.mkdir()
    shutil.copy(workdir / "results.json", old / "results.json")
    stored, rebuilt = predict.read_dataset_info(str(workdir), config), predict.read_dataset_info(str(old), config)
    assert (rebuilt.info.class_names, rebuilt.info.num_examples, rebuilt.info.image_shape, rebuilt.dtype) == \
        (stored.info.class_names, stored.info.num_examples, stored.info.image_shape, stored.dtype)
    np.testing.assert_array_equal(rebuilt.info.mean, stored.info.mean)
    np.testing.assert_array_equal(rebuilt.info.std, stored.info.std)


def test_predict_aid_jpegs_equals_evaluation(aid_run, tmp_path):
    """The dummy test JPEGs as files: one row each, the class columns, probabilities = evaluation outputs. A
    corrupt file and a 1-band PNG are listed with their reasons and left out; a .txt file is ignored."""
    config, workdir = aid_run
    images = tmp_path / "images"
    shutil.copytree(os.path.join(DUMMY, "aid_multilabel", "images_test"), images)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    gray = np.full((40, 40, 1), 7, np.uint8)
    import tensorflow as tf  # the PNG encoder only

    (images / "gray.png").write_bytes(tf.io.encode_png(gray).numpy())
    (images / "notes.txt").write_text("not an image")

    run = predict.load_run(str(workdir))
    assert run.reported == "teacher" and run.epoch == 1
    result = predict.predict_files(run, str(images), str(tmp_path / "out" / "predictions.csv"), progress_bar=False)
    header, rows = read_csv(result.output)
    class_names = list(run.data.info.class_names)
    assert header == ["file", *class_names, "labels"] == result.columns
    assert sorted(rows) == ["Airport/airport_81.jpg", "Beach/beach_81.jpg", "Park/park_181.jpg"]
    assert result.rows == 3
    problems = dict(result.problems)
    assert set(problems) == {"broken.jpg", "gray.png"}
    assert problems["broken.jpg"].startswith("cannot be decoded")
    assert problems["gray.png"].startswith("has 1 band, but the model was trained on 3-band aid_multilabel images")

    expected = reference(run, config, ["test"])
    for name, row in rows.items():
        p = probabilities(row)
        np.testing.assert_allclose(p, expected[os.path.splitext(os.path.basename(name))[0]], atol=TOLERANCE)
        # The label set at the default threshold, most probable first.
        chosen = [class_names[c] for c in np.argsort(-p, kind="stable") if p[c] >= 0.5]
        assert row[-1] == ";".join(chosen)

    # Nothing usable: a dataset error that lists the files, and no CSV.
    with pytest.raises(DatasetError, match=r"none of the 2 input files could be predicted; 2 files left out"):
        predict.predict_files(run, str(images / "[bg]*.*"), str(tmp_path / "none.csv"), progress_bar=False)
    assert not (tmp_path / "none.csv").exists() and not (tmp_path / "none.csv.tmp").exists()

    # --top_k: the k most probable classes whatever the threshold; a glob selects files.
    top = predict.predict_files(run, str(images / "*" / "*.jpg"), str(tmp_path / "top.csv"), threshold=0.99,
                                top_k=2, progress_bar=False)
    _, top_rows = read_csv(top.output)
    assert len(top_rows) == 3 and not top.problems
    for row in top_rows.values():
        p = probabilities(row)
        assert row[-1].split(";") == [class_names[c] for c in np.argsort(-p, kind="stable")[:2]]


def test_predict_reben_geotiffs_equals_evaluation(reben_run, tmp_path):
    """Every dummy patch as one 12-band GeoTIFF (pixel- or band-interleaved), predicted on all 4 devices through a
    --config that differs from the run's only in num_devices: probabilities = evaluation outputs. A 3-band and a
    float32 GeoTIFF are each a clear error for that file."""
    config, workdir = reben_run
    images = tmp_path / "patches"
    images.mkdir()
    patches = sorted(d for tile in os.listdir(os.path.join(DUMMY, "reben", "BigEarthNet-S2"))
                     for d in [os.path.join(DUMMY, "reben", "BigEarthNet-S2", tile, p)
                               for p in os.listdir(os.path.join(DUMMY, "reben", "BigEarthNet-S2", tile))])
    for i, patch in enumerate(patches):
        name = os.path.basename(patch)
        image = image_files.reben_patch_to_geotiff(patch, str(images / f"{name}.tif"))
        assert image.shape == (120, 120, 12) and image.dtype == np.uint16
        if i == 0:  # the same patch band-interleaved, as GDAL's INTERLEAVE=BAND writes it
            tifffile.imwrite(images / f"planar_{name}.tif", np.moveaxis(image, -1, 0), photometric="minisblack",
                             planarconfig="separate")
    tifffile.imwrite(images / "rgb.tif", image[..., [3, 2, 1]], photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(images / "float.tif", image.astype(np.float32), photometric="minisblack",
                     planarconfig="contig")

    all_devices = config.copy_and_resolve_references()
    all_devices.num_devices = -1  # the 4 forced CPU devices of conftest.py
    run = predict.load_run(str(workdir), all_devices)
    assert run.exp.mesh.devices.size == 4 and run.reported == "student"
    result = predict.predict_files(run, str(images), str(tmp_path / "reben.csv"), progress_bar=False)
    header, rows = read_csv(result.output)
    assert header[1:-1] == list(run.data.info.class_names) and len(header) == 19 + 2
    problems = dict(result.problems)
    assert problems["rgb.tif"].startswith("has 3 bands, but the model was trained on 12-band reben images (B01, "
                                          "B02, B03, B04, B05, B06, B07, B08, B8A, B09, B11, B12, in this order)")
    assert problems["float.tif"].startswith("holds float32 values, but the model was trained on uint16")
    assert len(rows) == len(patches) + 1 == 5

    expected = reference(run, config, ["train", "validation", "test"])
    assert len(expected) == len(patches)
    for name, row in rows.items():
        patch = os.path.splitext(name)[0].removeprefix("planar_")
        np.testing.assert_allclose(probabilities(row), expected[patch], atol=TOLERANCE)


def test_eval_mode_prints_the_results_json_metrics(aid_run, capsys):
    _, workdir = aid_run
    per_model = predict.eval_command(str(workdir), None, "test")
    saved = json.loads((workdir / "results.json").read_text())["test"]
    for model in ("student", "teacher"):
        for key, value in saved[model].items():
            assert per_model[model][key] == pytest.approx(value, abs=1e-9, nan_ok=True), (model, key)
    out = capsys.readouterr().out
    assert "test split of aid_multilabel" in out and "teacher*" in out
    mAP_row = next(line for line in out.splitlines() if line.startswith("mAP "))
    assert mAP_row.split()[1:] == [f"{saved['student']['mAP']:.4f}", f"{saved['teacher']['mAP']:.4f}"]


def test_cli_predict_without_config(aid_run, tmp_path, capsys):
    """cli.run, as launch.py --mode=predict calls it, without --config: the run's own config.json is used."""
    _, workdir = aid_run
    output = tmp_path / "p.csv"
    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = cli.run(None, str(workdir), mode="predict", options={
            "input": os.path.join(DUMMY, "aid_multilabel", "images_test", "*", "*.jpg"), "output": str(output),
            "threshold": 0.5, "top_k": 0})
    finally:
        signal.signal(signal.SIGTERM, handler)  # cli.run turns SIGTERM into an interrupt
    assert code == 0
    assert f"Wrote 3 rows to {output}" in capsys.readouterr().out
    header, rows = read_csv(output)
    assert header[0] == "file" and header[-1] == "labels" and len(rows) == 3


def test_clear_errors_before_any_model_is_built(aid_run, tmp_path):
    config, workdir = aid_run
    with pytest.raises(WorkdirError, match="has no config.json"):
        predict.load_run(str(tmp_path))
    # A --config that trains another model than the run's.
    other = config.copy_and_resolve_references()
    other.seed = 7
    with pytest.raises(ConfigError, match=r"another model than the run .*seed: 0 \(run\) vs 7 \(given\)"):
        predict.load_run(str(workdir), other)
    # An unfinished run: the config asks for more epochs than the last checkpoint holds.
    unfinished = tmp_path / "unfinished"
    shutil.copytree(workdir, unfinished)
    saved = json.loads((unfinished / "config.json").read_text())
    saved["num_epochs"] = 3
    (unfinished / "config.json").write_text(json.dumps(saved))
    with pytest.raises(WorkdirError, match="has not finished: its last checkpoint is epoch 1 of 3"):
        predict.load_run(str(unfinished))
    with pytest.raises(DatasetError, match="matches no file"):
        image_files.list_inputs(str(tmp_path / "nothing*.jpg"))
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.run(None, str(tmp_path), mode="train") == ConfigError.exit_code  # --config is needed to train
    finally:
        signal.signal(signal.SIGTERM, handler)  # cli.run turns SIGTERM into an interrupt
