"""The configs in configs/ (issue 5): every config and variant loads, is locked and has the key tree of
configs/default.py; the reBEN and UCM CPU configs train end to end on their dummy releases (DATASETS.md 2.2-2.4,
2.9, 3).

Budget: about 60 s on 2 CPU cores, most of it the two end-to-end epochs (compilation of the small CNN).
"""

import glob
import importlib
import json
import math
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import REPO

from adagc_jax import config_checks, config_utils, input_pipeline, models, prepare, train

CONFIG_DIR = os.path.join(REPO, "configs")
REBEN_DUMMY = os.path.join(REPO, "adagc_jax", "datasets", "dummy_data", "reben")
AID_DUMMY = os.path.join(REPO, "adagc_jax", "datasets", "dummy_data", "aid_multilabel")
UCM_DUMMY = os.path.join(REPO, "adagc_jax", "datasets", "dummy_data", "ucm_multilabel")

# Variants (the argument after the colon) each config must accept; None = no argument. A new config file in
# configs/ is covered by the None variant automatically.
VARIANTS = {
    "default.py": [None, "method=full", "noise=dominant,seed=1,epochs=2"],
    "benchmark.py": [None, "config=synthetic_memorization,seeds=3,methods=an+adagc", "dataset=reben,cpu=1,epochs=2"],
    "reben.py": [None, "cpu=1", "subset=1.0,cpu=1", "subset=0.05", "noise=dominant,seed=2,epochs=3",
                 "method=full,cpu=1"],
    "aid_multilabel.py": [None, "cpu=1", "split=arena", "split=arena,cpu=1,noise=dominant,seed=3,epochs=2",
                          "method=full"],
    "ucm_multilabel.py": [None, "cpu=1", "noise=dominant,seed=2,epochs=3", "method=full,cpu=1"],
}
# dataset.builder_config holds the arguments of the chosen builder's make_config: its own fields per dataset.
BUILDER_SPECIFIC = "dataset.builder_config."

# DATASETS.md 2.9, ConfigILM `120_bilinear` statistics of the official train split, B01..B12 (B8A after B08).
REBEN_MEAN = (360.65, 438.37, 614.06, 588.41, 942.75, 1769.85, 2049.48, 2193.29, 2235.49, 2241.11, 1568.21,
              997.72)
REBEN_STD = (563.17, 607.03, 603.30, 684.57, 727.58, 1087.43, 1261.43, 1369.37, 1342.49, 1294.36, 1063.92,
             806.88)


def config_files():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
                  if not p.endswith(("__init__.py", "common.py")))


def load(name, arg=None):
    return config_utils.load_config_file(os.path.join(CONFIG_DIR, name) + (f":{arg}" if arg else ""))


# configs/benchmark.py adds its own block (which methods and seeds to run) on top of a dataset config's keys; the
# model block holds the chosen model's own options.
RUNNER_SPECIFIC = "benchmark."
MODEL_SPECIFIC = "model."


def key_tree(config):
    return sorted(k for k in config_utils.flat_keys(config)
                  if not k.startswith((BUILDER_SPECIFIC, RUNNER_SPECIFIC, MODEL_SPECIFIC)))


def test_every_config_is_covered():
    assert {"default.py", "reben.py", "aid_multilabel.py", "ucm_multilabel.py"} <= set(config_files())


@pytest.mark.parametrize("name,arg", [(f, a) for f in config_files() for a in VARIANTS.get(f, [None])])
def test_config_locked_same_keys_valid(name, arg):
    reference = key_tree(load("default.py"))
    config = load(name, arg)
    assert isinstance(config, ml_collections.ConfigDict)
    assert config.is_locked
    with pytest.raises(AttributeError):
        config.not_a_key = 1
    with pytest.raises(AttributeError):
        config.dataset.not_a_key = 1
    assert key_tree(config) == reference
    # Names and values are runnable (the check launch.py does first), and the builder takes the fields.
    config_checks.validate_config(config)
    # The model block holds exactly the picked model's options (resnet50: no widths).
    options = set(models.model_options(models.MODELS[config.model.name]))
    assert set(config.model) - set(models.NON_MODEL_KEYS) == options - {"num_classes"}
    models.model_from_config(config.model, 19)
    module = importlib.import_module(input_pipeline.DATASET_MODULES[config.dataset.name])
    module.make_config(**dict(config.dataset.builder_config))
    # The docstring gives the command and the expected runtime (ARCHITECTURE.md style rule 2).
    with open(os.path.join(CONFIG_DIR, name)) as f:
        text = f.read()
    assert f"python launch.py --config configs/{name}" in text and "Expected" in text


def test_real_config_arguments():
    cpu = load("reben.py", "subset=1.0,cpu=1,method=full,noise=dominant,seed=4,epochs=7")
    assert (cpu.method, cpu.noise, cpu.seed, cpu.num_epochs) == ("full", "dominant", 4, 7)
    assert cpu.dataset.builder_config.subset == 1.0 and cpu.model.name == "small_cnn"
    assert load("reben.py", "cpu=1").dataset.builder_config.subset == 0.01
    full = load("reben.py")
    assert (full.method, full.model.name, full.dataset.image_size, full.dataset.builder_config.subset) == \
        ("adagc", "resnet50", 120, 1.0)
    assert full.dataset.manual_dir == ""  # the user's folder: --config.dataset.manual_dir=/path
    aid = load("aid_multilabel.py", "split=arena,cpu=1")
    assert aid.dataset.builder_config.split == "arena" and aid.model.name == "small_cnn"
    assert load("aid_multilabel.py").model.name == "resnet50"
    for name, arg, match in (("reben.py", "bands=rgb", "valid arguments"), ("reben.py", "cpu=2", "cpu"),
                             ("aid_multilabel.py", "subset=0.5", "valid arguments"),
                             ("aid_multilabel.py", "split=val", "official")):
        with pytest.raises(config_utils.ConfigError, match=match):
            load(name, arg)


@pytest.fixture(scope="module")
def reben_cpu(tmp_path_factory):
    """The reBEN CPU config on the dummy release (2 / 1 / 1 patches), 1 epoch, prepared once."""
    tfds.disable_progress_bar()
    config = load("reben.py", "subset=1.0,cpu=1,epochs=1")
    config.dataset.manual_dir = REBEN_DUMMY
    config.dataset.data_dir = str(tmp_path_factory.mktemp("tfds"))
    config.log.progress_bar = False
    config.num_devices = 1
    builder = input_pipeline.get_builder(config.dataset)
    prepare.prepare(builder, config.dataset)
    return config, builder


def test_reben_pipeline_resizes_and_normalises_per_band(reben_cpu):
    """uint16 12-band 120 px patches -> 48 px float32, (x - mean) / std with the statistics of DATASETS.md 2.9."""
    config, builder = reben_cpu
    info = input_pipeline.dataset_info(builder, config.dataset)
    assert info.image_shape == (48, 48, 12) and info.num_classes == 19
    np.testing.assert_allclose(info.mean, REBEN_MEAN, rtol=1e-6)
    np.testing.assert_allclose(info.std, REBEN_STD, rtol=1e-6)
    pipeline = input_pipeline.InputPipeline(builder, config, info)
    batch = next(iter(pipeline.eval_batches("test")))
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (32, 48, 48, 12)
    raw = next(iter(tfds.as_numpy(builder.as_dataset(split="test"))))["image"]
    assert raw.dtype == np.uint16 and raw.shape == (120, 120, 12)
    resized = tf.image.resize(raw.astype(np.float32), [48, 48], antialias=True).numpy().round()
    np.testing.assert_allclose(batch["image"][0], (resized - info.mean) / info.std, atol=1e-4)
    assert batch["mask"].tolist() == [1.0] + [0.0] * 31  # one test patch, the rest padding


def test_reben_cpu_end_to_end(reben_cpu, tmp_path):
    config, _ = reben_cpu
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert math.isfinite(on_disk["test"]["mAP"]) and 0.0 <= on_disk["test"]["mAP"] <= 1.0
    assert on_disk["test"]["mAP"] == pytest.approx(results["test"]["mAP"])
    assert on_disk["dataset"]["num_examples"] == {"train": 2, "validation": 1, "test": 1}
    assert on_disk["dataset"]["image_shape"] == [48, 48, 12]
    assert [h["epoch"] for h in on_disk["history"]] == [1]
    assert math.isfinite(on_disk["history"][0]["train_loss"])


def test_ucm_cpu_end_to_end(tmp_path):
    """configs/ucm_multilabel.py:cpu=1 on the dummy release (15 TIFFs of 3 scenes: 9 / 3 / 3), 1 epoch."""
    tfds.disable_progress_bar()
    config = load("ucm_multilabel.py", "cpu=1,epochs=1")
    assert (config.model.name, config.dataset.image_size, config.batch_size) == ("small_cnn", 64, 3)
    config.dataset.manual_dir = UCM_DUMMY
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.log.progress_bar = False
    config.num_devices = 1
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["test"]["mAP"] == pytest.approx(results["test"]["mAP"])
    assert math.isfinite(on_disk["test"]["mAP"]) and 0.0 <= on_disk["test"]["mAP"] <= 1.0
    assert on_disk["dataset"]["name"] == "ucm_multilabel"
    assert on_disk["dataset"]["num_examples"] == {"train": 9, "validation": 3, "test": 3}
    assert on_disk["dataset"]["image_shape"] == [64, 64, 3] and len(on_disk["dataset"]["class_names"]) == 17
    assert [h["epoch"] for h in on_disk["history"]] == [1] and math.isfinite(on_disk["history"][0]["train_loss"])
    assert on_disk["test"]["reported_model"] == "teacher"  # AdaGC by default


def test_batch_larger_than_train_split_is_a_clear_error(reben_cpu, tmp_path):
    config, _ = reben_cpu
    config = config.copy_and_resolve_references()
    config.batch_size = 4
    with pytest.raises(config_utils.ConfigError, match=r"batch_size=4 is larger than the train split of "
                                                        r"reben/all/1.0.0 \(2 images\).*--config.batch_size=2"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def test_set_keys_sets_dotted_keys_and_names_unknown_ones():
    from adagc_jax import config_utils
    from configs import default

    config = default.get_config()
    config_utils.set_keys(config, {"optimizer.learning_rate": 3e-4, "num_epochs": 7})
    assert config.optimizer.learning_rate == 3e-4 and config.num_epochs == 7
    with pytest.raises(config_utils.ConfigError, match="optimizer.learning_rate"):
        config_utils.set_keys(config, {"optimizer.learning_rat": 1.0})
