"""Tests of the `reben` TFDS builder (DATASETS.md sections 2, 7).

Prepared from the dummy release in adagc_jax/datasets/dummy_data/reben: metadata.parquet with
4 patches (2 train, 1 validation, 1 test), 12 uint16 band GeoTIFFs per patch at native
120 / 60 / 20 px and deflate reference maps. Band values are ramps base + (7 i + 3 j) * step
(step = 120 / native size), so bilinear upsampling has a closed form checked below.
"""

import re
import shutil
from pathlib import Path

import builder_helpers
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tifffile
from builder_helpers import MISSING_HINT, RELEASE_HINT, SKIP_HINT, dataset_error

import adagc_jax.datasets  # noqa: F401  (registers the builders)
from adagc_jax import prepare as prepare_lib
from adagc_jax.datasets import common, make_dummy_data, reben, resize
from adagc_jax.errors import DatasetError

DUMMY = Path(reben.__file__).parent / "dummy_data" / "reben"
A = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57"   # train
B = "S2B_MSIL2A_20180204T094159_N9999_R036_T35VNL_10_20"   # train
C = "S2A_MSIL2A_20170717T113321_N9999_R080_T29UPU_40_12"   # validation
D = "S2B_MSIL2A_20170924T093019_N9999_R136_T34VFN_55_71"   # test
# Positives (original class indices of 2.5) and the dominant label worked out from the maps.
EXPECTED = {
    A: ([2, 4, 8, 10], 2),   # 211: 7200 px of 14400 -> Arable land
    B: ([9, 17], 9),         # 122 (UNLABELED) largest; 312 = 512 = 4000 -> Coniferous forest
    C: ([0, 2, 4], 0),       # 111 + 112 = 6000 Urban fabric > 211 = 5000 Arable land
    D: ([14, 18], 18),       # 523: 11800 Marine waters (plus nodata 0 and 999)
}


prepare, read_split, copy_dummy = builder_helpers.for_builder("reben", DUMMY)


def assert_nothing_prepared(data_dir, config_name="all"):
    assert not (Path(data_dir) / "reben" / config_name / "1.0.0").exists()
    assert not list(Path(data_dir).rglob("*incomplete*"))


def band_file(root, patch_id, band):
    return reben.band_path(Path(root), patch_id, band)


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def all_bands(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("all"), DUMMY)


def test_interface_constants(all_bands):
    assert len(reben.CLASS_NAMES) == 19
    assert reben.CLASS_NAMES[0] == "Urban fabric"
    assert reben.CLASS_NAMES[6].startswith("Land principally occupied by agriculture")
    assert reben.CLASS_NAMES[13] == "Transitional woodland, shrub"
    assert reben.CLASS_NAMES[18] == "Marine waters"
    assert len(reben.CLC_TO_BEN19) == 32 and 999 in reben.UNLABELED_CODES
    mean, std = all_bands.band_statistics()
    assert mean.shape == std.shape == (12,) and mean.dtype == np.float32
    np.testing.assert_allclose(mean[[0, 8, 11]], [360.65, 2235.49, 997.72], rtol=1e-6)
    np.testing.assert_allclose(std[[0, 4, 9]], [563.17, 727.58, 1294.36], rtol=1e-6)
    rgb = tfds.builder("reben", config="rgb", data_dir="/nonexistent")
    mean, std = rgb.band_statistics()
    np.testing.assert_allclose(mean, [588.41, 614.06, 438.37], rtol=1e-6)
    np.testing.assert_allclose(std, [684.57, 603.30, 607.03], rtol=1e-6)


def test_make_config_names():
    assert reben.make_config() is reben._REGISTERED["all"]
    assert reben.make_config("rgb", seed=4) is reben._REGISTERED["rgb"]
    assert reben.make_config("all", 0.05, 0).name == "all_subset0p05_seed0"
    assert reben.make_config("rgb", 0.5, 3, skip_corrupt=True).name == \
        "rgb_subset0p5_seed3_skipcorrupt"
    with pytest.raises(ValueError, match="all, rgb"):
        reben.make_config("rgbn")
    with pytest.raises(ValueError, match="subset"):
        reben.make_config("all", 0.0)


def test_splits_labels_dominant_and_ids(all_bands):
    splits = {s: read_split(all_bands, s) for s in ("train", "validation", "test")}
    assert [e["name"] for e in splits["train"]] == [A, B]   # sorted, though not in the parquet
    assert [e["name"] for e in splits["validation"]] == [C]
    assert [e["name"] for e in splits["test"]] == [D]
    for examples in splits.values():
        assert [e["id"] for e in examples] == list(range(len(examples)))
        for e in examples:
            positives, dominant = EXPECTED[e["name"]]
            assert np.flatnonzero(e["labels"]).tolist() == positives
            assert e["labels"].dtype == np.uint8 and e["labels"].shape == (19,)
            assert e["dominant_label"] == dominant
            assert e["image"].shape == (120, 120, 12) and e["image"].dtype == np.uint16


def test_bands_order_and_bilinear_resampling(all_bands):
    image = read_split(all_bands, "train")[0]["image"]   # patch A (index 0 in the dummy)
    rows, cols = np.mgrid[0:120, 0:120]
    for k, band in enumerate(reben.BAND_NAMES):
        source = tifffile.imread(band_file(DUMMY, A, band))
        assert source.shape == (reben.NATIVE_SIZE[band],) * 2
        if reben.NATIVE_SIZE[band] == 120:
            np.testing.assert_array_equal(image[..., k], source)
        else:   # same as TF's bilinear (half-pixel centres, no antialias), rounded
            reference = tf.image.resize(source[..., None].astype(np.float32), (120, 120),
                                        method="bilinear", antialias=False).numpy()[..., 0]
            assert np.abs(image[..., k] - reference).max() <= 0.5 + 1e-3, band
    # Closed forms. B05 (60 px, step 2): v = 2200 + 14 r + 6 c, output pixel o samples
    # r = o / 2 - 0.25, so inside the clamped border the result is 2195 + 7 o_r + 3 o_c.
    b05 = image[..., reben.BAND_NAMES.index("B05")].astype(np.int64)
    np.testing.assert_array_equal(b05[1:119, 1:119], (2195 + 7 * rows + 3 * cols)[1:119, 1:119])
    assert b05[0, 0] == 2200 and b05[119, 119] == 2200 + 14 * 59 + 6 * 59
    # B01 (20 px, step 6): v = 1000 + 42 r + 18 c, r = (o + 0.5) / 6 - 0.5 -> 975 + 7 o + 3 o.
    b01 = image[..., 0].astype(np.int64)
    np.testing.assert_array_equal(b01[3:117, 3:117], (975 + 7 * rows + 3 * cols)[3:117, 3:117])
    assert b01[0, 0] == 1000


def test_resize_matches_tensorflow_on_random_data():
    rng = np.random.default_rng(0)
    for shape in ((20, 20), (60, 60), (7, 5)):
        data = rng.integers(0, 10000, shape).astype(np.uint16)
        ours = resize.resize_bilinear(data, 120, 120)
        theirs = tf.image.resize(data[..., None].astype(np.float32), (120, 120), "bilinear")
        np.testing.assert_allclose(ours, theirs.numpy()[..., 0], atol=2e-2)


def test_rgb_config_is_b04_b03_b02(tmp_path, all_bands):
    rgb = prepare(tmp_path / "data", DUMMY, "rgb")
    for split in ("train", "validation", "test"):
        for a, r in zip(read_split(all_bands, split), read_split(rgb, split)):
            assert r["image"].shape == (120, 120, 3) and r["image"].dtype == np.uint16
            np.testing.assert_array_equal(r["image"], a["image"][..., [3, 2, 1]])
            assert r["dominant_label"] == a["dominant_label"]


def test_subset_is_seeded_per_split(tmp_path):
    chosen = {}
    for seed in range(4):
        config = reben.make_config("rgb", subset=0.5, seed=seed)
        builder = prepare(tmp_path / f"data{seed}", DUMMY, config)
        sizes = {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")}
        assert sizes == {"train": 1, "validation": 1, "test": 1}  # round(0.5*1) kept >= 1
        assert builder.info.metadata["patches_before_subset"] == \
            {"train": 2, "validation": 1, "test": 1}
        train = read_split(builder, "train")
        assert train[0]["id"] == 0
        chosen[seed] = train[0]["name"]
    again = prepare(tmp_path / "again", DUMMY, reben.make_config("rgb", subset=0.5, seed=0))
    assert read_split(again, "train")[0]["name"] == chosen[0]
    assert set(chosen.values()) == {A, B}   # different seeds draw different patches


def test_dominant_from_map_rule():
    codes = np.full((120, 120), 999)
    codes.flat[:10] = 312   # Coniferous forest (9)
    codes.flat[10:20] = 511  # Inland waters (17): tie -> 9
    assert reben.dominant_from_map(codes, np.eye(19, dtype=np.uint8)[[9, 17]].sum(0), "m") == 9
    codes.flat[20:25] = 523  # Marine waters 5 px, but only the patch's labels compete
    assert reben.dominant_from_map(codes, np.eye(19, dtype=np.uint8)[18], "m") == 18
    with pytest.raises(common.FileContentError, match="no pixel"):
        reben.dominant_from_map(codes, np.eye(19, dtype=np.uint8)[0], "m")


def test_parent_folder_is_accepted(tmp_path):
    shutil.copytree(DUMMY, tmp_path / "parent" / "reBEN")
    builder = prepare(tmp_path / "data", tmp_path / "parent", "rgb")
    assert builder.info.splits["train"].num_examples == 2


def test_missing_manual_dir_names_layout_and_source(tmp_path):
    with pytest.raises(DatasetError) as info:  # a missing folder is caught before the builder runs
        prepare(tmp_path / "data", tmp_path / "nowhere")
    assert "10.5281/zenodo.10891137" in str(info.value)
    assert "BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_<band>.tif" in str(info.value)
    assert_nothing_prepared(tmp_path / "data")


def test_missing_band_file_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    missing = band_file(manual, D, "B09")
    missing.unlink()
    with dataset_error(FileNotFoundError, f"Missing: {re.escape(str(missing))}", MISSING_HINT) as info:
        prepare(tmp_path / "data", manual)
    assert "BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_<band>.tif" in str(info.value)  # the layout follows
    assert_nothing_prepared(tmp_path / "data")


def test_corrupt_band_stops_cleanly_or_is_skipped(tmp_path):
    manual = copy_dummy(tmp_path)
    bad = band_file(manual, B, "B8A")
    bad.write_bytes(bad.read_bytes()[:4000])
    with dataset_error(common.CorruptFileError, f"{re.escape(str(bad))} cannot be decoded", SKIP_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")
    builder = prepare(tmp_path / "data", manual, reben.make_config(skip_corrupt=True))
    train = read_split(builder, "train")
    assert [(e["name"], e["id"]) for e in train] == [(A, 0)]
    assert [s["file"] for s in builder.info.metadata["skipped"]] == [str(bad)]
    assert prepare_lib.skipped_files(builder) == [str(bad)]


def test_corrupt_reference_map_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    bad = reben.map_path(manual, D)
    bad.write_bytes(bad.read_bytes()[:250])
    with dataset_error(common.CorruptFileError, r"reference_map\.tif cannot be decoded", SKIP_HINT):
        prepare(tmp_path / "data", manual, "rgb")
    assert_nothing_prepared(tmp_path / "data", "rgb")


@pytest.mark.parametrize("shape", [(120, 120), (60, 60, 2)])
def test_wrong_band_size_or_count_is_named(tmp_path, shape):
    manual = copy_dummy(tmp_path)
    bad = band_file(manual, C, "B05")
    tifffile.imwrite(bad, np.ones(shape, np.uint16), photometric="minisblack",
                     planarconfig="contig")
    with dataset_error(common.FileContentError, r"B05\.tif.*60", RELEASE_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")


def test_unknown_clc_code_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    path = reben.map_path(manual, C)
    codes = tifffile.imread(path)
    codes[0, :5] = 777
    tifffile.imwrite(path, codes, compression="zlib")
    with dataset_error(common.FileContentError, r"reference_map\.tif.*\[777\]", RELEASE_HINT):
        prepare(tmp_path / "data", manual, "rgb")


def test_unknown_label_name_is_named_with_the_valid_ones(tmp_path):
    manual = copy_dummy(tmp_path)
    rows = pq.read_table(manual / "metadata.parquet").to_pylist()
    rows[0]["labels"].append("Arable Land")   # capital L: not a BEN-19 name
    schema = pq.read_schema(manual / "metadata.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), manual / "metadata.parquet")
    with dataset_error(common.FileContentError, r"'Arable Land'.*Urban fabric; Industrial", RELEASE_HINT):
        prepare(tmp_path / "data", manual)
    assert_nothing_prepared(tmp_path / "data")


def test_missing_metadata_column_or_duplicated_patch_is_named(tmp_path):
    manual = copy_dummy(tmp_path)
    table = pq.read_table(manual / "metadata.parquet")
    pq.write_table(table.drop(["split"]), manual / "metadata.parquet")
    with dataset_error(common.FileContentError,
                       r"metadata\.parquet as the reBEN metadata \(columns patch_id, labels, split\)", RELEASE_HINT):
        prepare(tmp_path / "data", manual, "rgb")
    rows = table.to_pylist()
    pq.write_table(pa.Table.from_pylist(rows + rows[:1], schema=table.schema), manual / "metadata.parquet")
    with dataset_error(common.FileContentError, rf"metadata\.parquet: patch {rows[0]['patch_id']} listed twice",
                       RELEASE_HINT):
        prepare(tmp_path / "data", manual, "rgb")
    assert_nothing_prepared(tmp_path / "data", "rgb")


def test_dummy_data_regenerate_identically(tmp_path):
    make_dummy_data.write_reben(tmp_path / "reben")
    written = sorted(p.relative_to(tmp_path / "reben") for p in (tmp_path / "reben").rglob("*")
                     if p.is_file())
    stored = sorted(p.relative_to(DUMMY) for p in DUMMY.rglob("*") if p.is_file())
    assert written == stored
    for rel in written:
        assert (tmp_path / "reben" / rel).read_bytes() == (DUMMY / rel).read_bytes(), rel
    # The real schema of 2.4, with labels sorted within each row.
    schema = pq.read_schema(DUMMY / "metadata.parquet")
    assert schema.names == ["patch_id", "labels", "split", "country", "s1_name", "s2v1_name",
                            "contains_seasonal_snow", "contains_cloud_or_shadow"]
    for row in pq.read_table(DUMMY / "metadata.parquet").to_pylist():
        assert row["labels"] == sorted(row["labels"])
    with tifffile.TiffFile(reben.map_path(DUMMY, A)) as tif:
        assert tif.pages[0].compression == 8   # deflate, as the real maps
