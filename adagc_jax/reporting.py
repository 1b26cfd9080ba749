"""Everything a run writes for people: the console line per epoch, TensorBoard scalars, results.json / config.json
(atomic), the package versions. Only the main process writes."""

from __future__ import annotations

import json
import os
import platform
import sys

import jax
import numpy as np
from tqdm import tqdm

from adagc_jax import parallel


def log(message: str) -> None:
    """One line on stdout (main process only), without breaking a progress bar."""
    if parallel.is_main_process():
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()


def write_json(path: str, obj) -> None:
    """Writes JSON atomically (a temporary file renamed over the target): a reader never sees half a file."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=False, default=lambda o: None)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def rate(value: float | None) -> str:
    """A throughput with 3 significant digits, so slow runs do not print '0 img/s'."""
    if not value:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


class TensorBoard:
    """TensorBoard scalars (one writer, main process only)."""

    def __init__(self, workdir: str, enabled: bool):
        self._writer = None
        if enabled:
            import tensorflow as tf  # the writer is TF's; the core library stays importable without TF

            self._tf = tf
            self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def scalars(self, step: int, values: dict) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                    self._tf.summary.scalar(k, v)
        self._writer.flush()


def epoch_line(record: dict, num_epochs: int) -> str:
    """The console line of one epoch."""
    parts = [f"epoch {record['epoch']:3d}/{num_epochs}", f"loss {record['train_loss']:.4f}"]
    for key, label in (("val_mAP", "val mAP"), ("test_mAP", "test mAP")):
        if record.get(key) is not None:
            parts.append(f"{label} {record[key]:.4f}")
    if record.get("observed_fit") is not None:
        parts.append(f"fit {record['observed_fit']:.3f}")
    if record.get("pseudo_label_recall") is not None:  # AdaGC
        parts.append(f"gc_w {record['gc_weight']:.2f}")
    if record.get("images_per_s"):
        parts.append(f"{rate(record['images_per_s'])} img/s")
    return " | ".join(parts)


def summary_line(results: dict, reported: str) -> str:
    """The end-of-run summary: the model `eval.select` reports, and the other protocol beside it."""
    def block(name):
        b = results.get(name)
        return "-" if not b else f"test mAP {b['test']['mAP']:.4f} (epoch {b['epoch']})"

    return (f"Done ({reported}; reported: {results['select']}): final {block('final')}, best validation "
            f"{block('best_val')}, best single-positive validation {block('best_val_single_positive')}")


def timing_line(timing: dict, input_wait_s: float | None = None) -> str:
    """Where a run's time went, e.g. 'time: train 61 s (80 %; waiting for data 1 s), eval 12 s (16 %), ...'."""
    total = sum(timing.values()) or 1.0
    parts = [f"{k[:-2]} {v:.0f} s ({100 * v / total:.0f} %)" for k, v in timing.items()]
    if input_wait_s is not None and "train_s" in timing:
        train = timing["train_s"]
        parts[list(timing).index("train_s")] = (f"train {train:.0f} s ({100 * train / total:.0f} %; waiting for data "
                                                f"{input_wait_s:.0f} s)")
    return f"time: {', '.join(parts)}; total {total:.0f} s"


def versions() -> dict:
    import flax
    import optax
    import orbax.checkpoint
    import tensorflow as tf
    import tensorflow_datasets as tfds

    import adagc_jax

    return {"adagc_jax": adagc_jax.__version__, "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": getattr(jax.lib, "__version__", None), "flax": flax.__version__, "optax": optax.__version__,
            "orbax_checkpoint": orbax.checkpoint.__version__, "tensorflow": tf.__version__,
            "tensorflow_datasets": tfds.__version__, "numpy": np.__version__,
            "devices": [str(d) for d in jax.devices()]}
