"""Images/s of the tf.data training pipeline alone (decode, augment, normalise, batch, prefetch), per CPU core, and
the share of a step's time it would need.

    python benchmarks/pipeline.py --config configs/default.py configs/synthetic_memorization_fast.py --measure_step
    python benchmarks/pipeline.py --config configs/reben.py:subset=1.0,cpu=1 --images 400 \
        --manual_dir adagc_jax/datasets/dummy_data/reben --data_dir /tmp/tfds_reben_dummy
    python benchmarks/pipeline.py --config configs/default.py --data_dir /tmp/tfds_reben_like --measure_step --set \
        dataset.image_size=120 dataset.builder_config.image_size=120 dataset.builder_config.bands=12 \
        dataset.builder_config.num_train=512 dataset.builder_config.num_validation=16 \
        dataset.builder_config.num_test=16        # reBEN-sized images (120 px, 12 bands) in synthetic_scenes

Per config, the dataset is prepared as a run prepares it (prepare.prepare; --data_dir / --manual_dir override the
config's), then InputPipeline.train_batches is drained epoch after epoch, as the training loop calls it, until at
least --images images came out (small datasets such as the dummy reBEN release are scaled up by repeating
epochs; with only a few images per epoch the per-epoch setup of the pipeline dominates, so the last command
above times reBEN-sized images in a synthetic_scenes dataset large enough to measure the per-image cost). Epoch 1
decodes and fills the in-memory cache and is reported apart; `images/s` is over the later epochs.
`per core` divides by the CPU cores this process may use (os.sched_getaffinity).

`pipeline/step` is the pipeline's time per image over the train step's (the step's images/s from
--step_images_per_s, or measured on this machine with --measure_step by benchmarks/step_cost.py's runner for the
same config and --method): below 1 the pipeline keeps up with the step; on a machine where both share the same
cores it is also roughly the fraction of step time spent producing data.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from adagc_jax import config_utils, input_pipeline, noise, prepare  # noqa: E402

COLUMNS = ("config", "batch", "train images", "epochs", "epoch 1 s", "images/s", "per core", "step images/s",
           "pipeline/step")


def parse_value(text: str):
    """A --set value: a Python literal (120, 0.5, True, (8, 16)) or else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_config(spec: str, data_dir: str | None, manual_dir: str | None, batch_size: int | None, sets=()):
    config = config_utils.load_config_file(spec)
    with config.unlocked():
        config_utils.set_keys(config, {key: parse_value(value) for key, _, value in (s.partition("=") for s in sets)})
        if data_dir:
            config.dataset.data_dir = data_dir
        if manual_dir:
            config.dataset.manual_dir = manual_dir
        if batch_size:
            config.batch_size = batch_size
    return config


def measure_pipeline(config, images: int) -> dict:
    """Drains the training pipeline of `config` for at least `images` images (at least 2 epochs)."""
    builder = input_pipeline.get_builder(config.dataset)
    prepare.prepare(builder, config.dataset)
    info = input_pipeline.dataset_info(builder, config.dataset)
    pipeline = input_pipeline.InputPipeline(builder, config, info)
    table = input_pipeline.read_label_table(builder, "train")
    observed = noise.single_positive(table["labels"], config.noise, config.seed, dominant=table["dominant_label"])
    per_epoch = pipeline.steps_per_epoch() * int(config.batch_size)
    epochs = max(2, 1 + math.ceil(images / per_epoch))
    times, count = [], 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        for batch in pipeline.train_batches(epoch, observed):
            count += batch["image"].shape[0]
        times.append(time.perf_counter() - start)
    steady = per_epoch * (epochs - 1) / sum(times[1:])
    cores = len(os.sched_getaffinity(0))
    return {"batch": int(config.batch_size), "train images": info.num_examples["train"], "epochs": epochs,
            "epoch 1 s": times[0], "images/s": steady, "per core": steady / cores, "images": count}


def measure_step(config, method: str, steps: int) -> float:
    """images/s of `method`'s train step for the same config (benchmarks/step_cost.py's runner, median of 3)."""
    from benchmarks.step_cost import build_runner  # imports jax and the model only when asked

    run = build_runner(config, method, steps)
    return steps * int(config.batch_size) / float(np.median([run() for _ in range(3)]))


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        step = row.get("step images/s")
        cells = [row["config"], str(row["batch"]), str(row["train images"]), str(row["epochs"]),
                 f"{row['epoch 1 s']:.2f}", f"{row['images/s']:.0f}", f"{row['per core']:.0f}",
                 f"{step:.1f}" if step else "n/a", f"{step / row['images/s']:.3f}" if step else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["configs/default.py", "configs/synthetic_memorization_fast.py"],
                        help="config files (with their :arguments)")
    parser.add_argument("--images", type=int, default=20000, help="at least this many images per config")
    parser.add_argument("--data_dir", default=None, help="replaces dataset.data_dir")
    parser.add_argument("--manual_dir", default=None, help="replaces dataset.manual_dir (real datasets)")
    parser.add_argument("--batch_size", type=int, default=None, help="replaces the config's batch_size")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config keys to set, e.g. dataset.builder_config.bands=12 (as --config.KEY=VALUE)")
    parser.add_argument("--step_images_per_s", type=float, default=None,
                        help="the train step's images/s to compare with (else n/a, or --measure_step)")
    parser.add_argument("--measure_step", action="store_true",
                        help="measure the step's images/s here (benchmarks/step_cost.py) for each config")
    parser.add_argument("--method", default="an", help="the step measured by --measure_step")
    parser.add_argument("--step_steps", type=int, default=10, help="timed steps per repeat for --measure_step")
    args = parser.parse_args(argv)
    print(f"{len(os.sched_getaffinity(0))} CPU core(s) available to this process")
    rows = []
    for spec in args.config:
        config = load_config(spec, args.data_dir, args.manual_dir, args.batch_size, args.set)
        row = {"config": spec, **measure_pipeline(config, args.images)}
        if args.measure_step:
            row["step images/s"] = measure_step(config, args.method, args.step_steps)
        elif args.step_images_per_s:
            row["step images/s"] = args.step_images_per_s
        rows.append(row)
        print(f"  {spec}: {row['images/s']:.0f} images/s over {row['images']} images", flush=True)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
