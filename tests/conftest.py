"""Shared fixtures: 4 forced CPU devices, a tiny synthetic_scenes dataset (generated once per session), a tiny run
config, and `make_experiment`, the run's own setup (experiment.build) on made-up data."""

import contextlib
import os
import subprocess
import sys

# Before jax is imported anywhere: 4 CPU devices, so the multi-device tests are ordinary test functions. Runs use 1
# device unless a test asks for more (TINY_OVERRIDES' num_devices), so single-device numbers are unaffected.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A run small enough for CI (2 CPU cores): 128 training images of 32 px, a 2-stage CNN, batch 32.
TINY_OVERRIDES = {
    "dataset.builder_config.image_size": 32,
    "dataset.builder_config.num_train": 128,
    "dataset.builder_config.num_validation": 40,
    "dataset.builder_config.num_test": 72,
    "dataset.image_size": 32,
    "model.widths": (8, 16),
    "batch_size": 32,
    "eval_batch_size": 32,  # 40 and 72 images: the last eval batches are padded
    "num_epochs": 2,
    "num_devices": 1,
    "log.progress_bar": False,
}


def tiny_config(data_dir, **overrides):
    """configs/default.py shrunk to TINY_OVERRIDES (+ overrides, dotted keys with '__' for '.')."""
    from adagc_jax import config_utils
    from configs import default

    config = default.get_config()
    values = dict(TINY_OVERRIDES)
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    values["dataset.data_dir"] = str(data_dir)
    config_utils.set_keys(config, values)
    return config


def tiny_flags(data_dir, **overrides):
    """The same config as launch.py flags."""
    values = dict(TINY_OVERRIDES)
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    values["dataset.data_dir"] = str(data_dir)
    return [f"--config.{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """TFDS data_dir holding the tiny synthetic_scenes config, prepared once for the whole session."""
    from adagc_jax import input_pipeline, prepare

    path = tmp_path_factory.mktemp("tfds")
    config = tiny_config(path)
    builder = input_pipeline.get_builder(config.dataset)
    prepare.prepare(builder, config.dataset)
    return path


def run_python(code_or_args, env_extra=None, timeout=900):
    """Runs python in a subprocess from the repository root; returns the CompletedProcess."""
    env = dict(os.environ)
    env.update({"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO})
    env.update(env_extra or {})
    args = [sys.executable] + (["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args))
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def fake_info(num_classes, num_train, image_shape):
    """A DatasetInfo for made-up data (no dataset is read)."""
    from adagc_jax import input_pipeline

    bands = image_shape[-1]
    return input_pipeline.DatasetInfo("fake", num_classes, tuple(f"c{i}" for i in range(num_classes)),
                                      {"train": num_train}, tuple(image_shape), np.zeros(bands, np.float32),
                                      np.ones(bands, np.float32))


@pytest.fixture
def make_experiment():
    """make_experiment(config, num_classes, num_train, image_shape, steps_per_epoch=4, num_devices=1): the run's
    own setup (adagc_jax.experiment.build) on a DatasetInfo for made-up data."""
    from adagc_jax import experiment, parallel

    def make(config, num_classes, num_train, image_shape, steps_per_epoch=4, num_devices=1):
        info = fake_info(num_classes, num_train, image_shape)
        return experiment.build(config, info, steps_per_epoch, parallel.make_mesh(num_devices))

    return make


@contextlib.contextmanager
def mounted_tmpfs(path, options):
    """A tmpfs mounted at `path` with mount options `options` (e.g. 'size=256k', 'ro,size=64k') for the block;
    the test is skipped where mounting is not allowed (it needs root)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)
