"""`dataset.beam_options`: the user's choice to prepare a dataset as an Apache Beam pipeline (docs/scaling.md).

One job: parse and check the option text before any work, and turn it into Beam's PipelineOptions. The text has
the form of `tfds build --beam_pipeline_options`, comma-separated `key=value` pairs, each one a Beam pipeline flag
without its `--`: "direct_num_workers=2,direct_running_mode=multi_processing" (DirectRunner on this machine), or
"runner=DataflowRunner,project=P,region=R,temp_location=gs://..." beyond it. '' (the default) prepares in-process.
Apache Beam is optional (requirements-beam.txt); nothing here imports it unless the option is set.
"""

from __future__ import annotations

import importlib.util
import re

from adagc_jax.errors import ConfigError

# Builders whose splits can be generated as a Beam pipeline (the others ignore Beam, so the option is refused).
BEAM_DATASETS = ("reben",)

INSTALL_HINT = ("install Apache Beam in a separate virtual environment (it pins protobuf and pyarrow below this "
                "project's pins): python -m venv --system-site-packages beamenv && beamenv/bin/pip install -r "
                "requirements-beam.txt, then run with beamenv/bin/python (docs/scaling.md)")

_FLAG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S+")


def parse(text: str) -> list[str]:
    """'a=1,b=x' -> ['--a=1', '--b=x']; ConfigError for a pair that is not key=value."""
    pairs = [pair.strip() for pair in text.split(",")] if text.strip() else []
    for pair in pairs:
        if not _FLAG.fullmatch(pair):
            raise ConfigError(
                f"dataset.beam_options={text!r}: {pair!r} is not key=value; write Beam pipeline flags without "
                "their '--', separated by commas, e.g. direct_num_workers=2,direct_running_mode=multi_processing")
    return [f"--{pair}" for pair in pairs]


def check(text: str, dataset_name: str) -> None:
    """ConfigError when the option is malformed, set for a dataset without a Beam path, or Beam is missing."""
    if not text:
        return
    parse(text)
    if dataset_name not in BEAM_DATASETS:
        raise ConfigError(
            f"dataset.beam_options is set but dataset {dataset_name!r} is prepared in-process only (Beam: "
            f"{', '.join(BEAM_DATASETS)}); remove --config.dataset.beam_options")
    if importlib.util.find_spec("apache_beam") is None:
        raise ConfigError(f"dataset.beam_options={text!r} needs Apache Beam, which is not installed: {INSTALL_HINT}")


def pipeline_options(text: str):
    """Beam's PipelineOptions for the option text, None for '' (in-process preparation)."""
    if not text:
        return None
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel

    return PipelineOptions(flags=parse(text))
