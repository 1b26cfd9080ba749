"""adagc_jax: single-positive multi-label learning (AdaGC and SPML baselines) in JAX/Flax."""

__version__ = "0.1.0"
