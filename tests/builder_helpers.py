"""Helpers shared by the tests of the real-data TFDS builders (prepare from a manual_dir, read a split back)."""

import functools
import shutil

import tensorflow_datasets as tfds


def prepare(name, data_dir, manual_dir, config=None):
    builder = tfds.builder(name, config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def read_split(builder, split):
    """All examples of a split as numpy, names decoded, in id order."""
    examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
    for example in examples:
        example["name"] = example["name"].decode()
    return sorted(examples, key=lambda e: e["id"])


def copy_dummy(dummy_dir, tmp_path):
    """A private copy of a builder's dummy release that a test may damage."""
    target = tmp_path / "manual"
    shutil.copytree(dummy_dir, target)
    return target


def for_builder(name, dummy_dir):
    """(prepare, read_split, copy_dummy) bound to one builder, with the call signatures the tests use."""
    return (functools.partial(prepare, name), read_split, functools.partial(copy_dummy, dummy_dir))
