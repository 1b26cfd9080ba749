"""evaluate.EvalSplitCache: a split that fits is read from the input pipeline once and then served from the devices,
with the same predictions; a split that does not fit keeps streaming; 0 bytes turns the cache off."""

import types

import jax
import jax.numpy as jnp
import numpy as np

from adagc_jax import evaluate, parallel
from adagc_jax.dataset_info import DatasetInfo

SHAPE, CLASSES, BATCH = (4, 4, 2), 3, 4


class CountingPipeline:
    """The evaluation interface of InputPipeline over fixed random splits, counting the passes it streams."""

    def __init__(self, sizes: dict):
        rng = np.random.default_rng(0)
        self.info = DatasetInfo("fake", CLASSES, ("a", "b", "c"), sizes, SHAPE, np.zeros(2, np.float32),
                                np.ones(2, np.float32))
        self.config = types.SimpleNamespace(eval_batch_size=BATCH)
        self.images = {split: rng.normal(size=(n, *SHAPE)).astype(np.float32) for split, n in sizes.items()}
        self.passes = dict.fromkeys(sizes, 0)

    def num_eval_batches(self, split):
        return -(-self.info.num_examples[split] // BATCH)

    def eval_batches(self, split):
        self.passes[split] += 1
        images, total = self.images[split], self.num_eval_batches(split) * BATCH
        padded = np.zeros((total, *SHAPE), np.float32)
        padded[:len(images)] = images
        ids = np.full(total, -1, np.int32)
        ids[:len(images)] = np.arange(len(images))
        for start in range(0, total, BATCH):
            rows = slice(start, start + BATCH)
            yield {"image": padded[rows], "labels": np.zeros((BATCH, CLASSES), np.float32), "id": ids[rows],
                   "mask": (ids[rows] >= 0).astype(np.float32)}


def _eval_step(variables, images):
    return jax.nn.sigmoid(jnp.mean(images, axis=(1, 2)) @ variables["w"])


def test_split_that_fits_is_streamed_once_then_served_from_the_devices():
    pipeline = CountingPipeline({"validation": 10, "test": 7})
    mesh = parallel.make_mesh(None)
    split_bytes = 3 * BATCH * int(np.prod(SHAPE)) * 4  # 10 images -> 3 batches of 4, padding included
    cache = evaluate.EvalSplitCache(pipeline, mesh, max_bytes=split_bytes)
    assert cache.split_bytes("validation") == split_bytes
    models = {"m": {"w": jnp.asarray(np.random.default_rng(1).normal(size=(2, CLASSES)), jnp.float32)}}
    streamed = evaluate.predict(_eval_step, models, pipeline, "validation", mesh)
    passes = []
    for _ in range(3):
        out = evaluate.predict(_eval_step, models, cache, "validation", mesh)
        np.testing.assert_array_equal(out["m"], streamed["m"])
        np.testing.assert_array_equal(out["ids"], np.arange(10))
        passes.append(pipeline.passes["validation"])
    assert passes == [2, 2, 2]  # the direct predict above, then one pass for the cache; later calls: none
    assert cache.used_bytes == split_bytes
    # The test split (2 batches) no longer fits in what is left: it streams every time, still complete.
    for _ in range(2):
        assert len(evaluate.predict(_eval_step, models, cache, "test", mesh)["ids"]) == 7
    assert pipeline.passes["test"] == 2 and cache.used_bytes == split_bytes


def test_zero_bytes_turns_the_cache_off():
    pipeline = CountingPipeline({"validation": 5})
    cache = evaluate.EvalSplitCache(pipeline, parallel.make_mesh(None), max_bytes=0)
    models = {"m": {"w": jnp.ones((2, CLASSES))}}
    for _ in range(2):
        evaluate.predict(_eval_step, models, cache, "validation", parallel.make_mesh(None))
    assert pipeline.passes["validation"] == 2 and cache.used_bytes == 0
