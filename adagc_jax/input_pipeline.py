"""TFDS -> tf.data -> numpy batches (ARCHITECTURE.md data flow).

Per example the pipeline carries `image` (augmented, normalised per band), `observed` (the stored single positive,
train only), `labels` (the hidden full labels: diagnostics and the `full` upper bound only), `id` (indexes the
per-sample state, e.g. the memory bank) and, in evaluation, `mask` (0 for padding).

Determinism, so that a resumed run replays exactly what an uninterrupted run saw:
  * the order of epoch e is a shuffle seeded by (seed, e), over a dataset decoded once and cached;
  * augmentation draws are stateless, seeded by (seed, e, id), independent of order and parallelism;
  * evaluation covers the WHOLE split: the last batch is padded and the padding masked, no image is dropped.

Getting the dataset ready in data_dir first (generation, manual_dir, errors, orphan cleanup) is prepare.py's job.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from adagc_jax import config_utils
from adagc_jax.dataset_info import DatasetInfo  # noqa: F401 (re-exported: input_pipeline.DatasetInfo)
from adagc_jax.errors import DatasetError

# Builder modules by dataset name (imported lazily: importing one registers its builder with TFDS).
DATASET_MODULES = {
    "synthetic_scenes": "adagc_jax.datasets.synthetic_scenes",
    "aid_multilabel": "adagc_jax.datasets.aid_multilabel",
    "ucm_multilabel": "adagc_jax.datasets.ucm_multilabel",
    "reben": "adagc_jax.datasets.reben",
}
SPLITS = ("train", "validation", "test")


def get_builder(dataset_config):
    """The TFDS builder the config names (not yet prepared: prepare.prepare does that)."""
    name = dataset_config.name
    module = importlib.import_module(config_utils.lookup(DATASET_MODULES, name, "dataset.name"))
    data_dir = os.path.expanduser(dataset_config.data_dir) if dataset_config.data_dir else None
    fields = dict(dataset_config.builder_config)
    config_name = dataset_config.config_name
    if fields:
        if config_name:
            raise DatasetError("set either dataset.config_name or dataset.builder_config, not both")
        if not hasattr(module, "make_config"):
            raise DatasetError(f"dataset {name!r} takes no builder_config fields; use dataset.config_name")
        try:
            builder_config = module.make_config(**fields)
        except TypeError as e:
            raise DatasetError(f"bad dataset.builder_config for {name!r}: {e}") from e
        return tfds.builder_cls(name)(config=builder_config, data_dir=data_dir)
    full_name = f"{name}/{config_name}" if config_name else name
    try:
        return tfds.builder(full_name, data_dir=data_dir)
    except (ValueError, tfds.core.registered.DatasetNotFoundError) as e:
        raise DatasetError(f"cannot build dataset {full_name!r}: {e}") from e


def dataset_info(builder, dataset_config) -> DatasetInfo:
    features = builder.info.features
    native_shape = tuple(features["image"].shape)
    size = int(dataset_config.image_size) if dataset_config.image_size else native_shape[0]
    mean, std = builder.band_statistics()
    return DatasetInfo(
        name=builder.name,
        num_classes=features["dominant_label"].num_classes,
        class_names=tuple(features["dominant_label"].names),
        num_examples={s: builder.info.splits[s].num_examples for s in SPLITS},
        image_shape=(size, size, native_shape[-1]),
        mean=np.asarray(mean, np.float32),
        std=np.asarray(std, np.float32),
    )


def read_label_table(builder, split: str) -> dict:
    """`labels` (N, C) float32 and `dominant_label` (N,) of a split, in id order (images are not decoded)."""
    decoders = tfds.decode.PartialDecoding({"labels": True, "dominant_label": True, "id": True})
    ds = builder.as_dataset(split=split, decoders=decoders, read_config=tfds.ReadConfig(try_autocache=False))
    ids, labels, dominant = [], [], []
    for batch in tfds.as_numpy(ds.batch(4096)):
        ids.append(batch["id"])
        labels.append(batch["labels"])
        dominant.append(batch["dominant_label"])
    ids = np.concatenate(ids)
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(ids[order], np.arange(n)):
        raise DatasetError(f"{builder.name}/{split}: example ids must be exactly 0..N-1 (they index per-sample "
                           "state such as the memory bank); rebuild the dataset")
    return {"labels": np.concatenate(labels)[order].astype(np.float32),
            "dominant_label": np.concatenate(dominant)[order].astype(np.int64)}


def resize_image(image, height: int, width: int):
    """A stored image (H, W, bands) at the model's input size: bilinear with antialiasing in float32, rounded back
    to the stored integer dtype (so the cache holds compact images); unchanged when it has that size already.

    The one definition of the resize, used by the training and evaluation pipelines and by predict.py on new files.
    """
    image = tf.convert_to_tensor(image)
    if image.shape[0] == height and image.shape[1] == width:
        return image
    dtype = image.dtype
    resized = tf.image.resize(tf.cast(image, tf.float32), [height, width], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), dtype.min, dtype.max), dtype)


def normalise(image, mean, std):
    """(x - mean) / std per band, float32: the model's input (mean and std from DatasetInfo)."""
    return (tf.cast(image, tf.float32) - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def _stateless_seed(seed: int, epoch: int) -> int:
    # A different stream per (seed, epoch); 31 bits so it fits the int64 stateless seed with room to spare.
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**31 - 1)


def _augment(image, seed_pair, flip: bool, rot90: bool):
    """Random element of the dihedral group (flips and 90-degree rotations): overhead imagery has no 'up'."""
    draw = tf.random.stateless_uniform([2], seed=seed_pair, minval=0, maxval=4, dtype=tf.int32)
    if rot90:
        image = tf.image.rot90(image, k=draw[0])
    if flip:
        image = tf.cond(draw[1] >= 2, lambda: tf.image.flip_left_right(image), lambda: image)
    return image


class InputPipeline:
    """tf.data pipelines of one dataset for one run (the decoded splits are cached once and reused every epoch)."""

    def __init__(self, builder, config, info: DatasetInfo, process_index: int = 0, process_count: int = 1):
        self.builder = builder
        self.config = config
        self.info = info
        self.process_index = process_index
        self.process_count = process_count
        self._decoded = {}

    # -- shared --------------------------------------------------------------------------------------------------
    def _decoded_split(self, split: str) -> tf.data.Dataset:
        """Decoded (and resized) examples {'image', 'labels', 'id'}, in storage order, cached after the first pass."""
        if split not in self._decoded:
            ds = self.builder.as_dataset(split=split, shuffle_files=False,
                                         read_config=tfds.ReadConfig(try_autocache=False))
            height, width, bands = self.info.image_shape

            def decode(ex):
                image = tf.ensure_shape(resize_image(ex["image"], height, width), [height, width, bands])
                return {"image": image, "labels": tf.cast(ex["labels"], tf.float32),
                        "id": tf.cast(ex["id"], tf.int32)}

            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            if self.config.dataset.cache:
                ds = ds.cache()
            self._decoded[split] = ds
        return self._decoded[split]

    def _normalise(self, image):
        return normalise(image, self.info.mean, self.info.std)

    def _options(self):
        options = tf.data.Options()
        options.deterministic = True
        options.experimental_optimization.map_parallelization = True
        return options

    # -- training ------------------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        """Full batches per epoch (the last partial batch is dropped); a train split smaller than one batch is an
        error that says what to change (real-data subsets and dummy releases can be that small)."""
        n, batch = self.info.num_examples["train"], int(self.config.batch_size)
        if n < batch:
            images = f"{n} image" + ("s" if n != 1 else "")
            raise config_utils.ConfigError(
                f"batch_size={batch} is larger than the train split of {self.builder.info.full_name} ({images}), "
                f"so not one training step fits (the last partial batch of an epoch is dropped). Lower it, e.g. "
                f"--config.batch_size={n} (a multiple of the number of devices), or train on more data.")
        return n // batch

    def train_dataset(self, epoch: int, observed_table: np.ndarray) -> tf.data.Dataset:
        """Epoch `epoch` (1-based) of training: local batches of this process, the last partial batch dropped."""
        cfg = self.config
        local_batch = int(cfg.batch_size) // self.process_count
        seed = _stateless_seed(cfg.seed, epoch)
        table = tf.constant(np.asarray(observed_table, np.float32))
        aug = cfg.dataset.augment
        n = self.info.num_examples["train"]
        buffer = n if cfg.dataset.cache else min(n, int(cfg.dataset.shuffle_buffer))

        def attach(ex):
            image = _augment(ex["image"], tf.stack([tf.constant(seed, tf.int32), ex["id"]]),
                             bool(aug.flip), bool(aug.rot90))
            return {"image": self._normalise(image), "observed": tf.gather(table, ex["id"]),
                    "labels": ex["labels"], "id": ex["id"]}

        ds = self._decoded_split("train").shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
        if self.process_count > 1:
            ds = self._own_slice_of_each_batch(ds, local_batch)
        ds = ds.map(attach, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(local_batch, drop_remainder=True).take(self.steps_per_epoch())
        return ds.prefetch(tf.data.AUTOTUNE).with_options(self._options())

    def _own_slice_of_each_batch(self, ds: tf.data.Dataset, local_batch: int) -> tf.data.Dataset:
        """This process's contiguous slice [i * local, (i + 1) * local) of every global batch: the global array
        is the processes' slices in process order, so N processes feed exactly the batch one process would
        (`ds.shard` would interleave the examples instead and train on other batches)."""
        index, global_batch = self.process_index, local_batch * self.process_count

        def mine(position, ex):
            del ex
            return tf.equal((position % global_batch) // local_batch, index)

        return ds.enumerate().filter(mine).map(lambda position, ex: ex)

    def train_batches(self, epoch: int, observed_table: np.ndarray):
        return tfds.as_numpy(self.train_dataset(epoch, observed_table))

    # -- evaluation ----------------------------------------------------------------------------------------------
    def num_eval_batches(self, split: str) -> int:
        return -(-self.info.num_examples[split] // int(self.config.eval_batch_size))

    def eval_dataset(self, split: str) -> tf.data.Dataset:
        """The WHOLE split, un-augmented; padded to full batches with mask 0 (ARCHITECTURE.md)."""
        local_batch = int(self.config.eval_batch_size) // self.process_count
        ds = self._decoded_split(split)
        if self.process_count > 1:
            ds = ds.shard(self.process_count, self.process_index)

        def present(ex):
            return {"image": self._normalise(ex["image"]), "labels": ex["labels"], "id": ex["id"],
                    "mask": tf.constant(1.0)}

        ds = ds.map(present, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        padding = tf.data.Dataset.from_tensors(
            {"image": tf.zeros(self.info.image_shape, tf.float32),
             "labels": tf.zeros([self.info.num_classes], tf.float32),
             "id": tf.constant(-1, tf.int32), "mask": tf.constant(0.0)}).repeat()
        total = self.num_eval_batches(split) * local_batch
        ds = ds.concatenate(padding).take(total).batch(local_batch, drop_remainder=True)
        return ds.prefetch(tf.data.AUTOTUNE).with_options(self._options())

    def eval_batches(self, split: str):
        return tfds.as_numpy(self.eval_dataset(split))
