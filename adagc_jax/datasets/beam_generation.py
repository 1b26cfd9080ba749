"""A TFDS split generated as an Apache Beam pipeline, with the same examples as the in-process generator.

TFDS runs a builder's split as a Beam pipeline when `_generate_examples` returns a PTransform and the
DownloadConfig carries beam_options (docs/scaling.md). `split_transform` wraps the builder's per-item function,
the one its in-process generator calls too, so both paths compute every example with the same code:

  items --Create--> Reshuffle (spreads the work over the workers) --read_example--> (index, key, example)
  the ids: `id` counts only the examples actually written, in item order (0..N-1, as in-process); workers see
  items out of order, so the written indices are gathered once and turned into an index -> id table (a side input).

Skipped corrupt files (skip_corrupt=True) cannot be appended to the driver's metadata from a worker process; they
are counted and listed in Beam metrics, which `record_skipped` copies into metadata['skipped'] after the pipeline.
Beam is imported lazily (tfds.core.lazy_imports), so this module loads without it.
"""

from __future__ import annotations

import json

import tensorflow_datasets as tfds
from absl import logging

from adagc_jax.datasets import common

NAMESPACE = "adagc_jax"
SKIPPED_COUNTER = "skipped"
SKIPPED_FILES = "skipped_files"


def split_transform(split: str, items: list, read_example, skip_corrupt: bool):
    """The PTransform that yields the (key, example) pairs of one split.

    `read_example(item)` -> (key, example without 'id'), raising CorruptFileError for an undecodable file; it must
    be picklable (a module-level function or a functools.partial of one), as workers run it in other processes.
    """
    beam = tfds.core.lazy_imports.apache_beam

    def expand(pipeline):
        read = (pipeline
                | "Create" >> beam.Create(list(enumerate(items)))
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.Map(_read_one, split, read_example, skip_corrupt)
                | "Written" >> beam.Filter(_is_written))
        id_table = (read
                    | "Indices" >> beam.Map(_index)
                    | "AllIndices" >> beam.combiners.ToList()
                    | "IdTable" >> beam.Map(_id_table))
        return read | "WithId" >> beam.Map(_keyed_example, beam.pvalue.AsSingleton(id_table))

    return beam.ptransform_fn(expand)()


def _read_one(item, split: str, read_example, skip_corrupt: bool):
    """(index, key, example) of one item, or (index, None, None) for a skipped corrupt file."""
    index, payload = item
    try:
        key, example = read_example(payload)
    except common.CorruptFileError as err:
        if not skip_corrupt:
            raise
        beam = tfds.core.lazy_imports.apache_beam
        logging.warning("Skipping corrupt file %s: %s", err.path, err)
        beam.metrics.Metrics.counter(NAMESPACE, SKIPPED_COUNTER).inc()
        beam.metrics.Metrics.string_set(NAMESPACE, SKIPPED_FILES).add(json.dumps(
            {"split": split, "index": index, "file": str(err.path), "error": str(err)}))
        return index, None, None
    return index, key, example


def _is_written(record) -> bool:
    return record[1] is not None


def _index(record) -> int:
    return record[0]


def _id_table(indices: list[int]) -> dict[int, int]:
    """item index -> id: the rank of the index among the written ones."""
    return {index: rank for rank, index in enumerate(sorted(indices))}


def _keyed_example(record, id_table: dict[int, int]):
    index, key, example = record
    return key, {**example, "id": id_table[index]}


def record_skipped(pipeline_result, metadata: dict, split_order) -> None:
    """Copies the skipped files of the Beam metrics into metadata['skipped'], in the in-process order (split, item).

    Beam caps a string-set metric at 1 MB of text (thousands of files); files past it are counted, not listed:
    metadata['skipped_not_listed'] says how many.
    """
    beam = tfds.core.lazy_imports.apache_beam
    results = pipeline_result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    count = sum(_value(r) for r in results.get("counters", []) if r.key.metric.name == SKIPPED_COUNTER)
    records = [json.loads(text) for r in results.get("string_sets", []) if r.key.metric.name == SKIPPED_FILES
               for text in _value(r)]
    records.sort(key=lambda r: (list(split_order).index(r["split"]), r["index"]))
    metadata["skipped"] = [{"file": r["file"], "error": r["error"]} for r in records]
    if count > len(records):
        metadata["skipped_not_listed"] = count - len(records)
        logging.warning("%d skipped files are counted but not listed (Beam's metric size cap).",
                        count - len(records))


def _value(metric_result):
    """The committed value where the runner reports one, else the attempted value."""
    committed = metric_result.committed
    return committed if committed is not None else metric_result.attempted
