"""Wall time of preparing reBEN in-process vs as an Apache Beam pipeline (docs/scaling.md, issue 16).

`replicate` writes a copy of the dummy release (adagc_jax/datasets/dummy_data/reben, 4 patches) scaled to N patches:
patch k copies the files of dummy patch k mod 4 under a new patch id (same tile, new row/column), with its labels
and split, so every patch costs what a real one does to decode (12 GeoTIFF bands at native 120 / 60 / 20 px,
bilinear resampling, the reference map, zlib encoding of the example). `time` prepares a manual_dir into a fresh
data_dir through adagc_jax.prepare.prepare (as a training run does) and prints the seconds of that call; run it in a
fresh process per repeat, with the Beam options or without:

  python benchmarks/reben_prepare_time.py replicate /tmp/reben400 400
  python benchmarks/reben_prepare_time.py time /tmp/reben400 /tmp/data_a
  beamenv/bin/python benchmarks/reben_prepare_time.py time /tmp/reben400 /tmp/data_b \\
      --beam_options=direct_num_workers=2,direct_running_mode=multi_processing
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

# Run as a script from anywhere: the project root goes on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def replicate(target: Path, num_patches: int) -> None:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    from adagc_jax.datasets import reben  # pylint: disable=import-outside-toplevel

    dummy = Path(reben.__file__).parent / "dummy_data" / "reben"
    sources = sorted(pq.read_table(dummy / reben.METADATA_FILE).to_pylist(), key=lambda row: row["patch_id"])
    rows = []
    for k in range(num_patches):
        source = sources[k % len(sources)]
        patch_id = f"{reben.tile_of(source['patch_id'])}_{k // 100}_{k % 100}"
        for band in reben.BAND_NAMES:
            _copy(reben.band_path(dummy, source["patch_id"], band), reben.band_path(target, patch_id, band))
        _copy(reben.map_path(dummy, source["patch_id"]), reben.map_path(target, patch_id))
        rows.append({"patch_id": patch_id, "labels": source["labels"], "split": source["split"]})
    pq.write_table(pa.Table.from_pylist(rows), target / reben.METADATA_FILE)
    print(f"{num_patches} patches in {target}")


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def time_prepare(manual_dir: Path, data_dir: Path, beam_options: str) -> None:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    import adagc_jax.datasets  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
    from adagc_jax import prepare  # pylint: disable=import-outside-toplevel

    tfds.disable_progress_bar()
    shutil.rmtree(data_dir, ignore_errors=True)
    builder = tfds.builder("reben", data_dir=str(data_dir))
    start = time.perf_counter()
    prepare.prepare(builder, types.SimpleNamespace(manual_dir=str(manual_dir), beam_options=beam_options))
    seconds = time.perf_counter() - start
    count = sum(split.num_examples for split in builder.info.splits.values())
    print(f"prepared {count} examples in {seconds:.2f} s ({'beam ' + beam_options if beam_options else 'in-process'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rep = commands.add_parser("replicate")
    rep.add_argument("target", type=Path)
    rep.add_argument("num_patches", type=int)
    tim = commands.add_parser("time")
    tim.add_argument("manual_dir", type=Path)
    tim.add_argument("data_dir", type=Path, nargs="?", default=None)
    tim.add_argument("--beam_options", default="")
    args = parser.parse_args()
    if args.command == "replicate":
        replicate(args.target, args.num_patches)
    else:
        time_prepare(args.manual_dir, args.data_dir or Path(tempfile.mkdtemp()), args.beam_options)


if __name__ == "__main__":
    main()
