"""Tests of the `synthetic_scenes` TFDS builder (SYNTHETIC_SCENES.md): a small config is prepared
with TFDS once per module and its statistics, features and determinism are checked."""

import dataclasses
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from adagc_jax.datasets import synthetic_scenes as ss

SMALL = dict(num_train=160, num_validation=40, num_test=40)


@pytest.fixture(scope="module")
def small_config():
    return ss.make_config(**SMALL)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, small_config):
    """The small config written by TFDS, read back as numpy: split -> list of examples."""
    builder = ss.SyntheticScenes(config=small_config, data_dir=tmp_path_factory.mktemp("tfds"))
    builder.download_and_prepare()
    examples = {split: list(tfds.as_numpy(builder.as_dataset(split=split))) for split in ss.SPLITS}
    return builder, examples


def test_class_names():
    assert ss.CLASS_NAMES == ("water", "trees", "grass", "field", "bare_soil", "pavement", "sand",
                              "buildings", "car", "ship", "tank", "court")
    assert ss.REGION_CLASSES + ss.OBJECT_CLASSES == ss.CLASS_NAMES
    assert len(ss.REGION_CLASSES) == 8
    assert set(ss.OBJECT_HOSTS) == set(ss.OBJECT_CLASSES)


def test_split_sizes_ids_and_names(prepared):
    builder, examples = prepared
    for split, n in zip(ss.SPLITS, (160, 40, 40)):
        assert builder.info.splits[split].num_examples == n
        ids = sorted(int(e["id"]) for e in examples[split])
        assert ids == list(range(n))
        for e in examples[split]:
            assert e["name"].decode() == f"{split}_{int(e['id']):06d}"


def test_features_dtypes_and_shapes(prepared):
    builder, examples = prepared
    e = examples["train"][0]
    assert e["image"].dtype == np.uint8 and e["image"].shape == (48, 48, 3)
    assert e["labels"].dtype == np.uint8 and e["labels"].shape == (12,)
    assert e["area"].dtype == np.float32 and e["area"].shape == (12,)
    assert e["id"].dtype == np.int64
    features = builder.info.features
    assert tuple(features["dominant_label"].names) == ss.CLASS_NAMES
    assert builder.info.version == "1.0.0"


def test_labels_consistent_with_area(prepared):
    _, examples = prepared
    for split in ss.SPLITS:
        for e in examples[split]:
            area, labels = e["area"], e["labels"]
            np.testing.assert_allclose(area.sum(), 1.0, atol=1e-5)
            assert set(np.unique(labels)) <= {0, 1}
            np.testing.assert_array_equal(labels[:8], (area[:8] >= 0.02).astype(np.uint8))
            np.testing.assert_array_equal(labels[8:], (area[8:] > 0).astype(np.uint8))
            assert e["dominant_label"] == np.argmax(area)
            assert e["dominant_label"] < 8  # objects are small, a region always dominates


def test_label_statistics(prepared):
    _, examples = prepared
    labels = np.stack([e["labels"] for e in examples["train"]])
    cardinality = labels.sum(axis=1)
    assert 4.0 <= cardinality.mean() <= 6.0, cardinality.mean()
    assert cardinality.min() >= 1
    frequency = labels.mean(axis=0)
    assert frequency.min() >= 0.10, dict(zip(ss.CLASS_NAMES, frequency))
    # Not every image has every class: a single positive leaves labels unannotated.
    assert frequency.max() <= 0.8, dict(zip(ss.CLASS_NAMES, frequency))


def test_prepared_examples_equal_generate_example(prepared, small_config):
    _, examples = prepared
    for e in examples["validation"][:5]:
        regenerated = ss.generate_example(small_config, "validation", int(e["id"]))
        np.testing.assert_array_equal(e["image"], regenerated["image"])  # PNG is lossless
        np.testing.assert_array_equal(e["labels"], regenerated["labels"])
        np.testing.assert_array_equal(e["area"], regenerated["area"])
        assert e["dominant_label"] == regenerated["dominant_label"]


def test_generate_example_is_deterministic(small_config):
    a = ss.generate_example(small_config, "train", 7)
    b = ss.generate_example(small_config, "train", 7)
    for key in ("image", "labels", "area"):
        np.testing.assert_array_equal(a[key], b[key])
    assert (a["dominant_label"], a["name"], a["id"]) == (b["dominant_label"], "train_000007", 7)
    # Another index, split or seed is another scene.
    assert not np.array_equal(a["image"], ss.generate_example(small_config, "train", 8)["image"])
    assert not np.array_equal(a["image"], ss.generate_example(small_config, "test", 7)["image"])
    other_seed = ss.make_config(seed=1, **SMALL)
    assert not np.array_equal(a["image"], ss.generate_example(other_seed, "train", 7)["image"])
    # The split sizes do not change an example: it depends on (seed, split, index) alone.
    np.testing.assert_array_equal(a["image"], ss.generate_example(ss.make_config(), "train", 7)["image"])


def test_objects_sit_on_their_hosts():
    counts = dict.fromkeys(ss.OBJECT_CLASSES, 0)
    for index in range(40):
        region_map, class_map, _ = ss._scene(np.random.default_rng([0, 0, index]), 48)
        assert region_map.max() < 8  # regions are region classes only
        np.testing.assert_array_equal(class_map[class_map < 8], region_map[class_map < 8])
        for obj in ss.OBJECT_CLASSES:
            pixels = class_map == ss.CLASS_INDEX[obj]
            hosts = [ss.CLASS_INDEX[h] for h in ss.OBJECT_HOSTS[obj]]
            assert np.isin(region_map[pixels], hosts).all(), obj
            counts[obj] += pixels.sum()
    # Every object class occurs, with at least a few pixels per image on average.
    assert min(counts.values()) > 40 * 2, counts


def test_generate_example_rejects_unknown_split(small_config):
    with pytest.raises(ValueError, match="validation"):
        ss.generate_example(small_config, "val", 0)


def test_images_vary_in_illumination_and_use_the_range(small_config):
    images = np.stack([ss.generate_example(small_config, "train", i)["image"] for i in range(32)])
    per_image_mean = images.reshape(32, -1).mean(axis=1)
    assert per_image_mean.std() > 10  # per-image illumination and class mix, not one global look
    assert images.min() < 30 and images.max() > 200
    # Textures and sensor noise: no image is flat inside.
    assert images.reshape(32, -1, 3).std(axis=1).min() > 3


def test_multispectral_example():
    config = ss.make_config(bands=12, **SMALL)
    e = ss.generate_example(config, "train", 3)
    assert e["image"].dtype == np.uint16 and e["image"].shape == (48, 48, 12)
    assert 0 < e["image"].max() < 65535  # within range, not saturated
    # Same scene as the RGB config (the bands only change how it is recorded).
    rgb = ss.generate_example(ss.make_config(**SMALL), "train", 3)
    np.testing.assert_array_equal(e["labels"], rgb["labels"])
    np.testing.assert_array_equal(e["area"], rgb["area"])
    # Closed form up to sensor noise (std <= 0.035 * 1.5): bands 0-2 are the lit R, G, B scene and
    # bands 3-11 fixed linear mixes of it, at MULTISPECTRAL_SCALE; the uint8 image is the same scene.
    _, _, lit = ss._scene(np.random.default_rng([0, 0, 3]), 48)
    mix = ss._multispectral_mix()
    assert mix.shape == (3, 12)
    np.testing.assert_array_equal(mix[:, :3], np.eye(3))
    expected = np.clip(lit @ mix, 0.0, None)
    measured = e["image"].astype(np.float64) / ss.MULTISPECTRAL_SCALE
    assert np.abs(measured - expected).mean(axis=(0, 1)).max() < 0.05
    assert np.abs(rgb["image"] / 255.0 - np.clip(lit, 0.0, 1.0)).mean() < 0.05


def test_band_statistics(tmp_path):
    config = ss.make_config(num_train=6, num_validation=1, num_test=1)
    mean, std = ss.SyntheticScenes(config=config, data_dir=tmp_path).band_statistics()
    assert mean.dtype == np.float32 and std.dtype == np.float32
    assert mean.shape == (3,) and std.shape == (3,)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    # Closed form: the per-band moments of the first min(256, num_train) training images.
    pixels = np.stack([ss.generate_example(config, "train", i)["image"] for i in range(6)])
    pixels = pixels.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-6)
    mean[:] = 0  # the caller owns its arrays: the cached statistics are unchanged
    np.testing.assert_allclose(ss.band_statistics_for(config)[0], pixels.mean(axis=0), rtol=1e-6)


def test_band_statistics_multispectral(tmp_path):
    config = ss.make_config(bands=12, num_train=4, num_validation=1, num_test=1)
    mean, std = ss.SyntheticScenes(config=config, data_dir=tmp_path).band_statistics()
    assert mean.shape == (12,) and std.shape == (12,)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    assert np.all(mean > 100) and np.all(mean < ss.MULTISPECTRAL_SCALE * 1.5)


def test_make_config_naming():
    assert ss.make_config() is ss.DEFAULT_CONFIG
    assert ss.make_config() == ss.DEFAULT_CONFIG
    assert ss.make_config(bands=12) is ss.MULTISPECTRAL_CONFIG
    config = ss.make_config(num_train=64)
    assert config.name == "s0_48px_3b_64-600-2000"
    assert (config.image_size, config.bands, config.num_train, config.num_validation,
            config.num_test, config.seed) == (48, 3, 64, 600, 2000, 0)
    assert ss.make_config(num_train=64) == config  # deterministic
    assert ss.make_config(image_size=32, bands=12, num_train=8, num_validation=4, num_test=2,
                          seed=3).name == "s3_32px_12b_8-4-2"
    # Every field enters the name: no two of these collide, none takes a built-in name.
    overrides = [{"image_size": 64}, {"bands": 12, "num_test": 7}, {"num_train": 1},
                 {"num_validation": 1}, {"num_test": 1}, {"seed": 1}]
    names = {ss.make_config(**override).name for override in overrides}
    assert len(names) == len(overrides) and not names & {"default", "multispectral"}


def test_config_is_validated_and_frozen():
    with pytest.raises(ValueError, match="image_size"):
        ss.make_config(size=32)
    with pytest.raises(ValueError, match=r"\(3, 12\)"):
        ss.make_config(bands=4)
    with pytest.raises(ValueError, match="num_test"):
        ss.make_config(num_test=0)
    config = ss.make_config(num_train=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_train = 65
    assert pickle.loads(pickle.dumps(config)) == config
    assert hash(pickle.loads(pickle.dumps(config))) == hash(config)


def test_registered_builders(tmp_path):
    builder = tfds.builder("synthetic_scenes", data_dir=tmp_path)
    assert isinstance(builder, ss.SyntheticScenes)
    assert builder.builder_config is ss.DEFAULT_CONFIG
    multispectral = tfds.builder("synthetic_scenes/multispectral", data_dir=tmp_path)
    image = multispectral.info.features["image"]
    assert image.shape == (48, 48, 12) and image.dtype == np.uint16
    assert set(ss.SyntheticScenes(config=ss.make_config(**SMALL), data_dir=tmp_path).info.features) == {
        "image", "labels", "area", "dominant_label", "name", "id"}
