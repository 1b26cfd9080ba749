"""TFDS builders. Importing this package registers every builder with TFDS."""
from adagc_jax.datasets import synthetic_scenes  # noqa: F401
from adagc_jax.datasets import aid_multilabel  # noqa: F401
from adagc_jax.datasets import reben  # noqa: F401
from adagc_jax.datasets import ucm_multilabel  # noqa: F401
