"""The one pytree the train step updates (ARCHITECTURE.md: state.py)."""

from __future__ import annotations

from typing import Any

import flax
import jax.numpy as jnp

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything the jitted step reads and writes, replicated on every device and checkpointed as one tree.

    Attributes:
      step: number of optimizer updates so far (int32 scalar).
      params, batch_stats: the student network.
      opt_state: optax state of the student's optimizer.
      teacher: {'params', 'batch_stats'} of the weight-EMA teacher (METHOD.md section 3, EMA 1), or None when
        `ema.weights` is off.
      method_params: trainable per-method tensors, optimised in the same step with their own optimizer (ROLE's
        label-logit table Z); {} for most methods.
      method_opt_state: optax state for method_params.
      method_state: non-trainable per-method state updated in the step or at epoch end: AdaGC's prediction memory
        bank and visit counts (METHOD.md section 3, EMA 2), LL-Cp's corrected observed table, ...; {} if none.
      rng: raw PRNG key (uint32[2]) for Mixup and any other randomness inside the step.
    """

    step: jnp.ndarray
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    teacher: PyTree
    method_params: PyTree
    method_opt_state: PyTree
    method_state: PyTree
    rng: jnp.ndarray

    def student_variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}

    def reported_variables(self) -> dict:
        """The reported model: the teacher where there is one, else the student (ARCHITECTURE.md)."""
        return self.teacher if self.teacher is not None else self.student_variables()
