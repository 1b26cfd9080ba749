"""Tests of the `ucm_multilabel` TFDS builder (DATASETS.md sections 3, 7).

Prepared from the dummy release in adagc_jax/datasets/dummy_data/ucm_multilabel: 15 TIFFs of
3 scenes x 5 (harbor03 is 256 x 252, agricultural00 uncompressed) and
LandUse_Multilabeled.txt. Labels below are re-typed by hand from make_dummy_data.py.
"""

import shutil
from fractions import Fraction
from pathlib import Path

import builder_helpers
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tifffile
from builder_helpers import MISSING_HINT, RELEASE_HINT, SKIP_HINT, dataset_error

import adagc_jax.datasets  # noqa: F401  (registers the builders)
from adagc_jax.datasets import common, make_dummy_data, ucm_multilabel
from adagc_jax.errors import DatasetError

DUMMY = Path(ucm_multilabel.__file__).parent / "dummy_data" / "ucm_multilabel"
IMAGES = Path("UCMerced_LandUse") / "Images"
L = {name: i for i, name in enumerate(ucm_multilabel.CLASS_NAMES)}
SCENES = ("agricultural", "beach", "harbor")

POSITIVES = {
    "agricultural00": ("field",),
    "agricultural01": ("field", "trees"),
    "agricultural02": ("field", "grass"),
    "agricultural03": ("bare-soil", "field"),
    "agricultural04": ("field", "grass", "trees"),
    "beach00": ("sand", "sea"),
    "beach01": ("sand", "sea", "trees"),
    "beach02": ("sand", "sea"),
    "beach03": ("grass", "sand", "sea"),
    "beach04": ("sand", "sea", "water"),
    "harbor00": ("dock", "sea", "ship"),
    "harbor01": ("dock", "ship", "water"),
    "harbor02": ("buildings", "dock", "sea", "ship"),
    "harbor03": ("dock", "pavement", "sea", "ship"),
    "harbor04": ("cars", "dock", "ship", "water"),
}


def multi_hot(names):
    vector = np.zeros(17, np.uint8)
    vector[[L[n] for n in names]] = 1
    return vector


def scene_of(name):
    return name.rstrip("0123456789")


prepare, read_split, copy_dummy = builder_helpers.for_builder("ucm_multilabel", DUMMY)


def assert_nothing_prepared(data_dir, config=None):
    config = config or ucm_multilabel.make_config()
    assert not (Path(data_dir) / "ucm_multilabel" / config.name / "1.0.0").exists()
    assert not list(Path(data_dir).rglob("*incomplete*"))


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("ucm"), DUMMY)


def test_interface_and_config_names(prepared):
    assert ucm_multilabel.CLASS_NAMES[1] == "bare-soil" and len(ucm_multilabel.CLASS_NAMES) == 17
    assert len(ucm_multilabel.SCENE_NAMES) == 21
    assert list(ucm_multilabel.SCENE_NAMES) == sorted(ucm_multilabel.SCENE_NAMES)
    mean, std = prepared.band_statistics()
    np.testing.assert_allclose(mean, [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(std, [58.395, 57.12, 57.375], rtol=1e-6)
    assert ucm_multilabel.make_config() is ucm_multilabel._REGISTERED["stratified"]
    assert ucm_multilabel.make_config(seed=2).name == "stratified_seed2"
    assert ucm_multilabel.make_config(seed=2, skip_corrupt=True).name == \
        "stratified_seed2_skipcorrupt"
    assert prepared.info.features["scene"].names == list(ucm_multilabel.SCENE_NAMES)


def test_split_rule_at_real_size():
    """2100 names (21 x 100): 1344 / 336 / 420, 64 / 16 / 20 per scene, seeded."""
    names = [f"{s}{i:02d}" for s in ucm_multilabel.SCENE_NAMES for i in range(100)]
    scenes = [ucm_multilabel.SCENE_NAMES.index(scene_of(n)) for n in names]
    split_of = ucm_multilabel.assign_splits(names, scenes, seed=0)
    for split, per_scene in (("train", 64), ("validation", 16), ("test", 20)):
        members = [n for n in names if split_of[n] == split]
        assert len(members) == 21 * per_scene
        assert all(sum(scene_of(n) == s for n in members) == per_scene
                   for s in ucm_multilabel.SCENE_NAMES)
    assert split_of == ucm_multilabel.assign_splits(names, scenes, seed=0)
    assert split_of != ucm_multilabel.assign_splits(names, scenes, seed=1)


def test_splits_shapes_labels_and_ids(prepared):
    splits = {s: read_split(prepared, s) for s in ("train", "validation", "test")}
    # 5 per scene: test round(0.2 * 5) = 1, validation round(0.2 * 4) = 1, train 3.
    for split, per_scene in (("train", 3), ("validation", 1), ("test", 1)):
        names = [e["name"] for e in splits[split]]
        assert sorted(scene_of(n) for n in names) == sorted(SCENES * per_scene)
        assert names == sorted(names)
        assert [e["id"] for e in splits[split]] == list(range(len(names)))
    assert sorted(e["name"] for s in splits.values() for e in s) == sorted(POSITIVES)
    for examples in splits.values():
        for e in examples:
            np.testing.assert_array_equal(e["labels"], multi_hot(POSITIVES[e["name"]]))
            assert ucm_multilabel.SCENE_NAMES[e["scene"]] == scene_of(e["name"])
            assert e["image"].shape == (256, 256, 3) and e["image"].dtype == np.uint8
            source = tifffile.imread(DUMMY / IMAGES / scene_of(e["name"]) / f"{e['name']}.tif")
            if e["name"] == "harbor03":
                assert source.shape == (256, 252, 3)  # the deliberately odd file, resized
                resized = tf.image.resize(source.astype(np.float32), (256, 256), "bilinear")
                assert np.abs(e["image"].astype(np.float32) - resized.numpy()).max() <= 0.5
            else:
                np.testing.assert_array_equal(e["image"], source)  # PNG is lossless


def test_lift_table_and_dominant_labels(prepared):
    train = read_split(prepared, "train")
    table = prepared.info.metadata["dominant_table"]
    assert set(table) == set(SCENES)
    # Independent of which images were drawn: field only occurs in (every) agricultural
    # image, sand in every beach, dock and ship in every harbor: P(c|s) = 1, P(c) = 3/9.
    for scene, label in (("agricultural", "field"), ("beach", "sand"), ("harbor", "dock"),
                         ("harbor", "ship")):
        assert table[scene][label] == 3.0
    # Every entry, recomputed with exact fractions from the train split as written.
    for scene in SCENES:
        in_scene = [e for e in train if scene_of(e["name"]) == scene]
        for label, c in L.items():
            n_c = sum(int(e["labels"][c]) for e in train)
            n_sc = sum(int(e["labels"][c]) for e in in_scene)
            expected = Fraction(n_sc * len(train), len(in_scene) * n_c) if n_c else 0
            assert table[scene][label] == float(expected), (scene, label)
    for split in ("train", "validation", "test"):
        for e in read_split(prepared, split):
            row = table[scene_of(e["name"])]
            best = max(row[label] for label in POSITIVES[e["name"]])
            first_best = min(L[lab] for lab in POSITIVES[e["name"]] if row[lab] == best)
            assert e["dominant_label"] == first_best, e["name"]


def test_parent_folder_is_accepted(tmp_path):
    shutil.copytree(DUMMY, tmp_path / "parent" / "UCM_multilabel")
    builder = prepare(tmp_path / "data", tmp_path / "parent")
    assert builder.info.splits["train"].num_examples == 9


def test_missing_manual_dir_names_layout_and_source(tmp_path):
    with pytest.raises(DatasetError) as info:  # a missing folder is caught before the builder runs
        prepare(tmp_path / "data", tmp_path / "nowhere")
    assert "UCMerced_LandUse/Images/<class>/<class>NN.tif" in str(info.value)
    assert "bigearth.net" in str(info.value)
    assert_nothing_prepared(tmp_path / "data")


def test_missing_or_unlabelled_image_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    (manual / IMAGES / "beach" / "beach02.tif").unlink()
    with dataset_error(FileNotFoundError, r"Missing: UCMerced_LandUse/Images/<class>/beach02\.tif", MISSING_HINT):
        prepare(tmp_path / "data", manual)
    shutil.copy(manual / IMAGES / "beach" / "beach01.tif",
                manual / IMAGES / "beach" / "beach02.tif")
    shutil.copy(manual / IMAGES / "beach" / "beach01.tif",
                manual / IMAGES / "beach" / "beach07.tif")
    with dataset_error(common.FileContentError, r"Images without a row in .*: .*beach07\.tif", RELEASE_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")


def test_corrupt_tiff_stops_cleanly_or_is_skipped(tmp_path):
    manual = copy_dummy(tmp_path)
    # Corrupt one image of every scene, so one is surely in the (last written) test split.
    for name in ("agricultural00", "beach00", "harbor00", "agricultural01", "beach01",
                 "harbor01"):
        path = manual / IMAGES / scene_of(name) / f"{name}.tif"
        path.write_bytes(path.read_bytes()[:300])
    with dataset_error(common.CorruptFileError, r"(agricultural|beach|harbor)0[01]\.tif cannot be decoded",
                       SKIP_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")
    config = ucm_multilabel.make_config(skip_corrupt=True)
    builder = prepare(tmp_path / "data", manual, config)
    skipped = sorted(Path(s["file"]).name for s in builder.info.metadata["skipped"])
    assert skipped == ["agricultural00.tif", "agricultural01.tif", "beach00.tif",
                       "beach01.tif", "harbor00.tif", "harbor01.tif"]
    total = sum(builder.info.splits[s].num_examples for s in ("train", "validation", "test"))
    assert total == 9
    for split in ("train", "validation", "test"):
        examples = read_split(builder, split)
        assert [e["id"] for e in examples] == list(range(len(examples)))


@pytest.mark.parametrize("shape", [(300, 300, 3), (256, 256, 4)])
def test_wrong_size_or_band_count_is_named(tmp_path, shape):
    manual = copy_dummy(tmp_path)
    path = manual / IMAGES / "harbor" / "harbor04.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8), photometric="rgb")
    with dataset_error(common.FileContentError, r"harbor04\.tif", RELEASE_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")


def test_unknown_label_name_is_named_with_the_valid_ones(tmp_path):
    manual = copy_dummy(tmp_path)
    txt = manual / "LandUse_Multilabeled.txt"
    txt.write_text(txt.read_text().replace("\tdock\t", "\tpier\t", 1))
    with dataset_error(common.FileContentError, r"'pier'.*airplane, bare-soil", RELEASE_HINT):
        prepare(tmp_path / "data", manual)


def test_dummy_data_regenerate_identically(tmp_path):
    make_dummy_data.write_ucm(tmp_path / "ucm")
    written = sorted(p.relative_to(tmp_path / "ucm") for p in (tmp_path / "ucm").rglob("*")
                     if p.is_file())
    stored = sorted(p.relative_to(DUMMY) for p in DUMMY.rglob("*") if p.is_file())
    assert written == stored
    for rel in written:
        assert (tmp_path / "ucm" / rel).read_bytes() == (DUMMY / rel).read_bytes(), rel
