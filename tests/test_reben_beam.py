"""reBEN prepared as an Apache Beam pipeline (dataset.beam_options, docs/scaling.md) gives exactly the examples of
the in-process preparation, and the option is checked before any work.

The Beam tests need apache_beam, which requirements.txt does not install (requirements-beam.txt, in a separate
virtual environment: Beam pins protobuf and pyarrow below this project's pins); they skip without it. The
DirectRunner runs 2 worker processes (multi_processing), as a user on one machine would.
"""

import importlib.util
import types

import builder_helpers
import numpy as np
import pytest
import tensorflow_datasets as tfds
from test_reben import DUMMY, A, B, band_file

import adagc_jax.datasets  # noqa: F401  (registers the builders)
from adagc_jax import beam_options
from adagc_jax import prepare as prepare_lib
from adagc_jax.datasets import reben
from adagc_jax.errors import ConfigError, DatasetError

BEAM = "direct_num_workers=2,direct_running_mode=multi_processing"
needs_beam = pytest.mark.skipif(
    importlib.util.find_spec("apache_beam") is None,
    reason="apache_beam is not installed (optional: pip install -r requirements-beam.txt in a separate venv)")


def prepare(data_dir, manual_dir, beam="", config=None):
    builder = tfds.builder("reben", config=config, data_dir=str(data_dir))
    prepare_lib.prepare(builder, types.SimpleNamespace(manual_dir=str(manual_dir), beam_options=beam))
    return builder


def all_examples(builder):
    """{split: [(id, name, image bytes, image shape, labels, dominant label)]} in id order."""
    return {split: [(int(e["id"]), e["name"], e["image"].tobytes(), e["image"].shape, e["labels"].tolist(),
                     int(e["dominant_label"])) for e in builder_helpers.read_split(builder, split)]
            for split in ("train", "validation", "test")}


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    tfds.disable_progress_bar()


@needs_beam
def test_beam_and_in_process_give_identical_examples(tmp_path):
    in_process = prepare(tmp_path / "in_process", DUMMY)
    with_beam = prepare(tmp_path / "beam", DUMMY, BEAM)
    assert with_beam._use_beam and not in_process._use_beam  # pylint: disable=protected-access
    expected = all_examples(in_process)
    assert [len(expected[s]) for s in expected] == [2, 1, 1]
    assert all(np.frombuffer(e[2], np.uint16).any() for split in expected.values() for e in split)
    assert all_examples(with_beam) == expected
    assert with_beam.info.metadata["skipped"] == in_process.info.metadata["skipped"] == []
    assert with_beam.info.splits["train"].num_examples == 2


@needs_beam
def test_beam_skips_and_lists_corrupt_files_as_in_process(tmp_path):
    manual = builder_helpers.copy_dummy(DUMMY, tmp_path)
    bad = band_file(manual, B, "B8A")
    bad.write_bytes(bad.read_bytes()[:4000])
    config = reben.make_config(skip_corrupt=True)
    in_process = prepare(tmp_path / "in_process", manual, config=config)
    with_beam = prepare(tmp_path / "beam", manual, BEAM, config=config)
    expected = all_examples(in_process)
    assert [(e[0], e[1]) for e in expected["train"]] == [(0, A)]  # B skipped, ids stay 0..N-1
    assert all_examples(with_beam) == expected
    assert with_beam.info.metadata["skipped"] == in_process.info.metadata["skipped"]
    assert prepare_lib.skipped_files(with_beam) == [str(bad)]


@needs_beam
def test_a_corrupt_file_in_a_beam_worker_is_one_clear_dataset_error(tmp_path):
    manual = builder_helpers.copy_dummy(DUMMY, tmp_path)
    bad = band_file(manual, B, "B8A")
    bad.write_bytes(bad.read_bytes()[:4000])
    with pytest.raises(DatasetError) as info:
        prepare(tmp_path / "data", manual, BEAM)
    message = str(info.value)
    assert message.startswith("preparing reben/all/1.0.0 from manual_dir=") and "with Apache Beam" in message
    assert f"Cannot decode {bad}: failed to read" in message and builder_helpers.SKIP_HINT in message
    assert "Traceback" not in message and "partial preparation was discarded" in message
    assert not list((tmp_path / "data").rglob("*.tfrecord*"))


def test_beam_options_are_parsed_like_tfds_build():
    assert beam_options.parse(BEAM) == ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    assert beam_options.parse("") == []
    with pytest.raises(ConfigError, match="'direct_num_workers' is not key=value"):
        beam_options.parse("direct_num_workers,runner=DirectRunner")


def test_beam_options_are_refused_for_a_dataset_without_a_beam_path():
    with pytest.raises(ConfigError, match="'aid_multilabel' is prepared in-process only"):
        beam_options.check(BEAM, "aid_multilabel")
    beam_options.check("", "aid_multilabel")  # the default is fine everywhere


def test_missing_beam_is_a_config_error_that_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs Apache Beam, which is not installed.*requirements-beam.txt"):
        beam_options.check(BEAM, "reben")
