"""Helpers shared by the tests of the real-data TFDS builders (prepare from a manual_dir, read a split back)."""

import contextlib
import functools
import re
import shutil
import types

import pytest
import tensorflow_datasets as tfds

from adagc_jax import prepare as prepare_lib
from adagc_jax.errors import DatasetError


def prepare(name, data_dir, manual_dir, config=None):
    """Prepares through adagc_jax.prepare.prepare, as a training run does, so errors arrive as the user sees them."""
    builder = tfds.builder(name, config=config, data_dir=str(data_dir))
    prepare_lib.prepare(builder, types.SimpleNamespace(manual_dir=str(manual_dir)))
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


@contextlib.contextmanager
def dataset_error(cause, match, fix):
    """Expects ONE DatasetError: caused by a `cause` raised in the builder, a first paragraph (before any layout
    listing) that matches `match` (regex) and contains the `fix` text, and that says the partial preparation was
    discarded. Yields the pytest ExceptionInfo."""
    with pytest.raises(DatasetError) as info:
        yield info
    assert isinstance(info.value.__cause__, cause), repr(info.value.__cause__)
    paragraph = str(info.value).split("\n")[0]
    assert paragraph.startswith("preparing "), paragraph
    assert re.search(match, paragraph), paragraph
    assert fix in paragraph, paragraph
    assert "partial preparation was discarded" in paragraph, paragraph


SKIP_HINT = "--config.dataset.builder_config.skip_corrupt=True to skip unreadable files"
RELEASE_HINT = "Fix or replace that file"
MISSING_HINT = "Put the missing files in place"
