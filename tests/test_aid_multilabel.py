"""Tests of the `aid_multilabel` TFDS builder (DATASETS.md sections 1, 7).

The builder is prepared from the dummy release in adagc_jax/datasets/dummy_data/aid_multilabel
(12 JPEGs of 3 scenes, see make_dummy_data.py). Expected labels, lift values and dominant
labels below are worked out by hand from that file list.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from fractions import Fraction
from pathlib import Path

import builder_helpers
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from builder_helpers import MISSING_HINT, RELEASE_HINT, SKIP_HINT, dataset_error

import adagc_jax.datasets  # noqa: F401  (registers the builders)
from adagc_jax import prepare as prepare_lib
from adagc_jax.datasets import aid_multilabel, common, make_dummy_data
from adagc_jax.errors import DatasetError

DUMMY = Path(aid_multilabel.__file__).parent / "dummy_data" / "aid_multilabel"
REPO = Path(__file__).resolve().parents[1]
L = {name: i for i, name in enumerate(aid_multilabel.CLASS_NAMES)}

# Hand-written positives of the 12 dummy images (make_dummy_data.AID_LABELS, re-typed).
POSITIVES = {
    "airport_1": ("airplane", "buildings", "pavement"),
    "airport_2": ("airplane", "buildings", "cars", "pavement"),
    "airport_3": ("buildings", "grass", "pavement"),
    "airport_81": ("airplane", "grass", "pavement"),
    "beach_1": ("sand", "sea"),
    "beach_2": ("sand", "sea", "trees"),
    "beach_3": ("buildings", "sand", "sea"),
    "beach_81": ("sea", "trees", "water"),
    "park_101": ("buildings", "cars", "grass", "pavement", "trees"),
    "park_102": ("grass", "trees", "water"),
    "park_103": ("grass", "pavement", "trees"),
    "park_181": ("court", "mobile-home"),
}
TEST_NAMES = ["airport_81", "beach_81", "park_181"]


def multi_hot(names):
    vector = np.zeros(17, np.uint8)
    vector[[L[n] for n in names]] = 1
    return vector


prepare, read_split, copy_dummy = builder_helpers.for_builder("aid_multilabel", DUMMY)


def assert_nothing_prepared(data_dir, config=None):
    """No finished dataset and no leftover temporary folder."""
    config = config or aid_multilabel.make_config()
    assert not (Path(data_dir) / "aid_multilabel" / config.name / "1.0.0").exists()
    assert not list(Path(data_dir).rglob("*incomplete*"))
    assert not tfds.builder("aid_multilabel", config=config,
                            data_dir=str(data_dir)).is_prepared()


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("official"), DUMMY)


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("arena"), DUMMY, "arena")


def test_interface_constants_and_statistics(official):
    assert aid_multilabel.CLASS_NAMES == (
        "airplane", "bare-soil", "buildings", "cars", "chaparral", "court", "dock", "field",
        "grass", "mobile-home", "pavement", "sand", "sea", "ship", "tanks", "trees", "water")
    assert len(aid_multilabel.SCENE_NAMES) == 30
    assert list(aid_multilabel.SCENE_NAMES) == sorted(aid_multilabel.SCENE_NAMES)
    mean, std = official.band_statistics()
    assert mean.dtype == np.float32 and std.dtype == np.float32
    np.testing.assert_allclose(mean, [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(std, [58.395, 57.12, 57.375], rtol=1e-6)
    features = official.info.features
    assert features["dominant_label"].names == list(aid_multilabel.CLASS_NAMES)
    assert features["scene"].names == list(aid_multilabel.SCENE_NAMES)
    assert "images_tr/" in aid_multilabel.AidMultilabel.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "aidmultilabel_val.csv" in aid_multilabel.AidMultilabel.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_make_config_names(tmp_path):
    assert aid_multilabel.make_config() is aid_multilabel._REGISTERED["official"]
    assert aid_multilabel.make_config("arena", seed=5) is aid_multilabel._REGISTERED["arena"]
    assert aid_multilabel.make_config(seed=3).name == "official_seed3_val0p2"
    assert aid_multilabel.make_config(skip_corrupt=True).name == "official_skipcorrupt"
    table_a, table_b = tmp_path / "a.json", tmp_path / "b.json"
    table_a.write_text('{"airport": "airplane"}')
    table_b.write_text('{"airport": "airplane"}')
    name = aid_multilabel.make_config(dominant_table=str(table_a)).name
    assert name.startswith("official_table") and len(name) == len("official_table") + 10
    assert aid_multilabel.make_config(dominant_table=str(table_b)).name == name  # by content
    with pytest.raises(ValueError, match="official, arena"):
        aid_multilabel.make_config("random")


def test_official_splits_shapes_labels_and_ids(official):
    splits = {s: read_split(official, s) for s in ("train", "validation", "test")}
    assert {s: len(v) for s, v in splits.items()} == {"train": 6, "validation": 3, "test": 3}
    assert [e["name"] for e in splits["test"]] == TEST_NAMES
    # Validation: one of the three images_tr images of each scene (20 % of 3, rounded).
    validation = [e["name"] for e in splits["validation"]]
    assert sorted(n.split("_")[0] for n in validation) == ["airport", "beach", "park"]
    assert not set(validation) & set(TEST_NAMES)
    for split, examples in splits.items():
        names = [e["name"] for e in examples]
        assert names == sorted(names), split                     # id = sorted-name order
        assert [e["id"] for e in examples] == list(range(len(examples)))
        for e in examples:
            np.testing.assert_array_equal(e["labels"], multi_hot(POSITIVES[e["name"]]))
            assert e["labels"].dtype == np.uint8
            assert e["image"].shape == (600, 600, 3) and e["image"].dtype == np.uint8
            scene = e["name"].rsplit("_", 1)[0]
            assert aid_multilabel.SCENE_NAMES[e["scene"]] == scene
    # The stored JPEG is the original file: same bytes, hence the same decoded pixels.
    first = splits["test"][0]
    source = tf.io.decode_jpeg((DUMMY / "images_test/Airport/airport_81.jpg").read_bytes())
    np.testing.assert_array_equal(first["image"], source.numpy())


def test_official_lift_table_and_dominant_follow_the_train_split(official):
    """Independent recomputation (exact fractions) from the train split as written."""
    train = read_split(official, "train")
    n = len(train)
    table = official.info.metadata["dominant_table"]
    assert official.info.metadata["dominant_table_source"].startswith("lift on the train")
    for scene in ("airport", "beach", "park"):
        in_scene = [e for e in train if e["name"].startswith(scene)]
        for label, c in L.items():
            n_c = sum(int(e["labels"][c]) for e in train)
            n_sc = sum(int(e["labels"][c]) for e in in_scene)
            expected = Fraction(n_sc * n, len(in_scene) * n_c) if n_c else Fraction(0)
            assert table[scene][label] == float(expected), (scene, label)
    for split in ("train", "validation", "test"):
        for e in read_split(official, split):
            row = table[e["name"].rsplit("_", 1)[0]]
            best = max(row[label] for label in POSITIVES[e["name"]])
            first_best = min(L[lab] for lab in POSITIVES[e["name"]] if row[lab] == best)
            assert e["dominant_label"] == first_best, e["name"]


def test_arena_split_lift_table_and_dominant_by_hand(arena):
    splits = {s: read_split(arena, s) for s in ("train", "validation", "test")}
    assert [e["name"] for e in splits["train"]] == [
        "airport_1", "airport_2", "beach_1", "beach_2", "park_101", "park_102"]
    assert [e["name"] for e in splits["validation"]] == ["airport_3", "beach_3", "park_103"]
    assert [e["name"] for e in splits["test"]] == TEST_NAMES
    # lift = P(c|s) / P(c) = (n_sc / 2) / (n_c / 6) on the 6 training images.
    nonzero = {
        "airport": {"airplane": 3.0, "buildings": 2.0, "cars": 1.5, "pavement": 2.0},
        "beach": {"sand": 3.0, "sea": 3.0, "trees": 1.0},
        "park": {"buildings": 1.0, "cars": 1.5, "grass": 3.0, "pavement": 1.0, "trees": 2.0,
                 "water": 3.0},
    }
    table = arena.info.metadata["dominant_table"]
    assert set(table) == set(nonzero)
    for scene, row in table.items():
        assert {k: v for k, v in row.items() if v} == nonzero[scene]
        assert len(row) == 17
    expected_dominant = {
        "airport_1": "airplane", "airport_2": "airplane",
        "airport_3": "buildings",   # buildings 2 = pavement 2: tie to the lower index
        "airport_81": "airplane",
        "beach_1": "sand", "beach_2": "sand", "beach_3": "sand",  # sand 3 = sea 3: tie
        "beach_81": "sea",
        "park_101": "grass", "park_102": "grass",  # grass 3 = water 3: tie
        "park_103": "grass",
        "park_181": "court",        # court and mobile-home both 0 (mobile-home absent)
    }
    got = {e["name"]: e["dominant_label"] for s in splits.values() for e in s}
    assert got == {n: L[label] for n, label in expected_dominant.items()}


def test_user_table_replaces_lift(tmp_path):
    table_path = tmp_path / "table.json"
    park = [0.0] * 17
    park[L["trees"]] = park[L["water"]] = 5.0
    table_path.write_text(json.dumps(
        {"airport": "airplane", "beach": {"sand": 2, "trees": 1}, "park": park}))
    builder = prepare(tmp_path / "data", DUMMY,
                      aid_multilabel.make_config(dominant_table=str(table_path)))
    got = {e["name"]: e["dominant_label"] for s in ("train", "validation", "test")
           for e in read_split(builder, s)}
    expected = {
        "airport_1": "airplane", "airport_2": "airplane", "airport_81": "airplane",
        "airport_3": "buildings",   # no ranked positive: lowest index
        "beach_1": "sand", "beach_2": "sand", "beach_3": "sand", "beach_81": "trees",
        "park_101": "trees", "park_102": "trees", "park_103": "trees",  # trees 5 = water 5
        "park_181": "court",
    }
    assert got == {n: L[label] for n, label in expected.items()}
    metadata = builder.info.metadata
    assert metadata["dominant_table_source"] == str(table_path)
    assert metadata["dominant_table"]["airport"] == {"airplane": 1.0}
    assert metadata["dominant_table"]["beach"] == {"sand": 2.0, "trees": 1.0}
    assert metadata["dominant_table"]["park"]["water"] == 5.0


def test_user_table_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"airport": "grasss", "beach": "sea", "park": "trees"}')
    with dataset_error(common.FileContentError, r"'grasss'.*airplane, bare-soil", RELEASE_HINT):
        prepare(tmp_path / "data", DUMMY, aid_multilabel.make_config(dominant_table=str(bad)))
    partial = tmp_path / "partial.json"
    partial.write_text('{"airport": "airplane"}')
    with dataset_error(common.FileContentError, "lacks scenes present in the data: beach, park", RELEASE_HINT):
        prepare(tmp_path / "data", DUMMY,
                aid_multilabel.make_config(dominant_table=str(partial)))


def test_stratified_holdout_at_real_size():
    """The official rule on 2400 names (30 scenes x 80): 16 per scene, seeded, reproducible."""
    names = [f"{s}_{n}" for s in aid_multilabel.SCENE_NAMES for n in range(1, 81)]
    strata = [aid_multilabel.SCENE_NAMES.index(n.rsplit("_", 1)[0]) for n in names]
    held = common.stratified_holdout(names, strata, 0.2, seed=0, stream=0)
    assert len(held) == 480
    assert all(sum(n.startswith(s + "_") for n in held) == 16
               for s in aid_multilabel.SCENE_NAMES)
    assert held == common.stratified_holdout(names[::-1], strata[::-1], 0.2, 0, 0)
    assert held != common.stratified_holdout(names, strata, 0.2, seed=1, stream=0)


def test_mat_labels_when_csv_is_absent(tmp_path, official):
    import scipy.io

    manual = copy_dummy(tmp_path)
    (manual / "multilabel.csv").unlink()
    matrix = np.zeros((17, 3000), np.uint8)
    for name, positives in POSITIVES.items():
        scene, number = name.rsplit("_", 1)
        number = int(number) - (100 if scene == "park" else 0)
        matrix[:, aid_multilabel.SCENE_NAMES.index(scene) * 100 + number - 1] = \
            multi_hot(positives)
    scipy.io.savemat(manual / "multilabel.mat", {"labels": matrix})
    builder = prepare(tmp_path / "data", manual)
    for split in ("train", "validation", "test"):
        from_mat = read_split(builder, split)
        from_csv = read_split(official, split)
        assert [e["name"] for e in from_mat] == [e["name"] for e in from_csv]
        for a, b in zip(from_mat, from_csv):
            np.testing.assert_array_equal(a["labels"], b["labels"])


def test_parent_folder_is_accepted(tmp_path):
    shutil.copytree(DUMMY, tmp_path / "parent" / "AID_multilabel")
    builder = prepare(tmp_path / "data", tmp_path / "parent")
    assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} \
        == {"train": 6, "validation": 3, "test": 3}


def test_missing_manual_dir_names_layout_and_source(tmp_path):
    for manual in (tmp_path / "does_not_exist", tmp_path / "unrelated"):
        if manual.name == "unrelated":
            manual.mkdir()
            (manual / "readme.txt").write_text("not the data")
        with pytest.raises(DatasetError) as info:  # a missing folder is caught before the builder runs
            prepare(tmp_path / "data", manual)
        message = str(info.value)
        assert "images_tr/<Scene>/<scene>_<n>.jpg" in message
        assert "github.com/Hua-YS/AID-Multilabel-Dataset" in message
    assert_nothing_prepared(tmp_path / "data")


def test_missing_image_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    (manual / "images_tr" / "Beach" / "beach_2.jpg").unlink()
    with dataset_error(FileNotFoundError, r"Missing: image beach_2\.jpg", MISSING_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")


def test_corrupt_image_stops_cleanly_or_is_skipped(tmp_path):
    manual = copy_dummy(tmp_path)
    bad = manual / "images_test" / "Park" / "park_181.jpg"
    original = bad.read_bytes()
    bad.write_bytes(original[: len(original) // 2])
    data_dir = tmp_path / "data"
    # A truncated JPEG: TF's "Invalid JPEG data" is reported as a dataset error, with the way around it.
    with dataset_error(common.CorruptFileError,
                       rf"{bad} cannot be decoded \(jpeg::Uncompress failed\. Invalid JPEG data", SKIP_HINT) as info:
        prepare(data_dir, manual)
    assert "function_node" not in str(info.value) and "[Op:" not in str(info.value)
    # The error came while writing the test split, after train and validation were written:
    # TFDS wrote into a temporary folder and deleted it, so nothing looks prepared.
    assert_nothing_prepared(data_dir)

    config = aid_multilabel.make_config(skip_corrupt=True)
    skipping = tfds.builder("aid_multilabel", config=config, data_dir=str(data_dir))
    notices = prepare_lib.prepare(skipping, types.SimpleNamespace(manual_dir=str(manual)))
    assert notices == ["skipped 1 unreadable file (skip_corrupt=True): park_181.jpg"]
    assert prepare_lib.skipped_files(skipping) == [str(bad)]
    test = read_split(skipping, "test")
    assert [e["name"] for e in test] == ["airport_81", "beach_81"]
    assert [e["id"] for e in test] == [0, 1]
    skipped = skipping.info.metadata["skipped"]
    assert len(skipped) == 1 and skipped[0]["file"] == str(bad)
    # Reloading from disk keeps the list (it is part of the stored metadata).
    reloaded = tfds.builder("aid_multilabel", config=aid_multilabel.make_config(
        skip_corrupt=True), data_dir=str(data_dir))
    assert reloaded.info.metadata["skipped"][0]["file"] == str(bad)
    assert prepare_lib.skipped_files(reloaded) == [str(bad)]
    assert prepare_lib.prepare(reloaded, None) == []  # prepared: nothing to do, nothing to say again

    bad.write_bytes(original)  # a later run with the file repaired builds normally
    assert prepare(data_dir, manual).info.splits["test"].num_examples == 3


@pytest.mark.parametrize("shape", [(600, 500, 3), (600, 600, 1)])
def test_wrong_size_or_band_count_is_named(tmp_path, shape):
    manual = copy_dummy(tmp_path)
    bad = manual / "images_test" / "Airport" / "airport_81.jpg"
    bad.write_bytes(tf.io.encode_jpeg(np.full(shape, 90, np.uint8)).numpy())
    with dataset_error(common.FileContentError, r"airport_81\.jpg.*\(600, 600, 3\)", RELEASE_HINT):
        prepare(tmp_path / "data", manual, aid_multilabel.make_config(skip_corrupt=True))
    assert_nothing_prepared(tmp_path / "data", aid_multilabel.make_config(skip_corrupt=True))


def test_unknown_label_name_is_named_with_the_valid_ones(tmp_path):
    manual = copy_dummy(tmp_path)
    csv = manual / "multilabel.csv"
    csv.write_text(csv.read_text().replace(",grass,", ",grasss,", 1))
    with dataset_error(common.FileContentError, r"'grasss'.*airplane, bare-soil, buildings", RELEASE_HINT):
        prepare(tmp_path / "data", manual)


def test_duplicated_image_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    shutil.copy(manual / "images_tr" / "Beach" / "beach_1.jpg", manual / "images_test" / "Beach" / "beach_1.jpg")
    with dataset_error(common.FileContentError, r"Image 'beach_1' appears twice: .*beach_1\.jpg and .*beach_1\.jpg",
                       RELEASE_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")


def test_missing_label_column_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    csv = manual / "multilabel.csv"
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    column = rows[0].index("sand")
    csv.write_text("\n".join(",".join(r[:column] + r[column + 1:]) for r in rows) + "\n")
    with dataset_error(common.FileContentError, r"multilabel\.csv must have each of the 17 labels exactly once; "
                       r"missing: \['sand'\]", RELEASE_HINT):
        prepare(tmp_path / "data", manual)


def test_remove_orphans_takes_only_old_unfinished_folders_of_this_version(tmp_path):
    old = tmp_path / "incomplete.AB12CD_1.0.0"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "shard").write_text("x")
    fresh = tmp_path / "incomplete.ZZ99ZZ_1.0.0"
    fresh.mkdir()
    busy = tmp_path / "incomplete.BUSY00_1.0.0"  # old folder, but a file inside was just written
    busy.mkdir()
    other_version = tmp_path / "incomplete.QQ11QQ_2.0.0"
    other_version.mkdir()
    finished, unrelated = tmp_path / "1.0.0", tmp_path / "incomplete.notours"
    finished.mkdir()
    unrelated.mkdir()
    an_hour_ago = time.time() - 3600
    for path in (old, old / "sub", old / "sub" / "shard", busy, other_version, finished, unrelated):
        os.utime(path, (an_hour_ago, an_hour_ago))
    (busy / "shard").write_text("x")
    os.utime(busy, (an_hour_ago, an_hour_ago))
    assert prepare_lib.remove_orphans(str(tmp_path), "1.0.0") == [str(old)]
    assert not old.exists()
    assert all(p.exists() for p in (fresh, busy, other_version, finished, unrelated))


STALLED_PREPARE = """
import sys, time, types
import tensorflow_datasets as tfds
from adagc_jax import prepare as prepare_lib
from adagc_jax.datasets import aid_multilabel
original = aid_multilabel._read_checked_jpeg
def stall(path):
    if path.name == "park_181.jpg":  # in the test split, written last
        print("generating", flush=True)
        time.sleep(300)
    return original(path)
aid_multilabel._read_checked_jpeg = stall
tfds.disable_progress_bar()
builder = tfds.builder("aid_multilabel", data_dir=sys.argv[1])
prepare_lib.prepare(builder, types.SimpleNamespace(manual_dir=sys.argv[2]))
"""


def test_a_killed_preparation_is_waited_for_and_its_orphan_removed(tmp_path, monkeypatch):
    """A real kill -9 in the middle of generation: a second run waits on the prepare lock while the first is
    alive, then removes the `incomplete.*` folder the killed one left and prepares the dataset."""
    data_dir = tmp_path / "data"
    preparing = subprocess.Popen([sys.executable, "-c", STALLED_PREPARE, str(data_dir), str(DUMMY)], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    result, notices = {}, []

    def second_run():
        try:
            builder = tfds.builder("aid_multilabel", data_dir=str(data_dir))
            result["notices"] = prepare_lib.prepare(builder, types.SimpleNamespace(manual_dir=str(DUMMY)),
                                                       log=notices.append)
        except BaseException as e:  # pylint: disable=broad-except  # reported by the assertions below
            result["error"] = e

    thread = threading.Thread(target=second_run)
    try:
        lines = iter(preparing.stdout.readline, "")  # TFDS prints its own "Downloading and preparing" first
        assert "generating" in (line.strip() for line in lines)
        orphans = list((data_dir / "aid_multilabel" / "official").glob("incomplete.*_1.0.0"))
        assert len(orphans) == 1 and orphans[0].is_dir()
        monkeypatch.setattr(prepare_lib, "ORPHAN_MIN_AGE_S", 0.0)  # the orphan is seconds old here
        thread.start()
        deadline = time.monotonic() + 120
        while not notices and time.monotonic() < deadline:
            time.sleep(0.1)
        assert notices and notices[0].startswith("waiting for another process that is preparing aid_multilabel")
        assert thread.is_alive() and orphans[0].exists()
        preparing.send_signal(signal.SIGKILL)
        preparing.wait(timeout=30)
        thread.join(timeout=300)
        assert not thread.is_alive() and "error" not in result, result.get("error")
    finally:
        if preparing.poll() is None:
            preparing.kill()
        preparing.wait(timeout=30)
        preparing.stdout.close()
    assert result["notices"][1:] == [
        f"removed 1 unfinished preparation(s) of aid_multilabel left by a run that was killed: {orphans[0]}"]
    assert not orphans[0].exists() and not list(data_dir.rglob("incomplete.*"))
    prepared = tfds.builder("aid_multilabel", data_dir=str(data_dir))
    assert prepared.is_prepared() and prepared.info.splits["test"].num_examples == 3


def test_both_label_spellings_are_read():
    # multilabel.csv spells 'bare soil' / 'mobile home', the arena CSVs use hyphens.
    assert "mobile home" in (DUMMY / "multilabel.csv").read_text().splitlines()[0]
    assert "mobile-home" in (DUMMY / "aidmultilabel_train.csv").read_text().splitlines()[0]
    for spelling in ("bare soil", "Bare-Soil", "bare_soil", " bare  soil "):
        assert common.label_index(spelling, aid_multilabel.CLASS_NAMES, "test") == 1
    csv = common.read_label_table(DUMMY / "multilabel.csv", aid_multilabel.CLASS_NAMES)
    tsv = common.read_label_table(DUMMY / "aidmultilabel_test.csv", aid_multilabel.CLASS_NAMES)
    np.testing.assert_array_equal(csv["park_181"], tsv["park_181"])
    np.testing.assert_array_equal(csv["park_181"], multi_hot(["court", "mobile-home"]))


def test_dummy_data_regenerate_identically(tmp_path):
    make_dummy_data.write_aid(tmp_path / "aid")
    written = sorted(p.relative_to(tmp_path / "aid") for p in (tmp_path / "aid").rglob("*")
                     if p.is_file())
    stored = sorted(p.relative_to(DUMMY) for p in DUMMY.rglob("*") if p.is_file())
    assert written == stored
    for rel in written:
        assert (tmp_path / "aid" / rel).read_bytes() == (DUMMY / rel).read_bytes(), rel
