"""TFDS builders. Importing this package registers every builder with TFDS."""
from adagc_jax.datasets import (
    aid_multilabel,  # noqa: F401
    reben,  # noqa: F401
    synthetic_scenes,  # noqa: F401
    ucm_multilabel,  # noqa: F401
)
