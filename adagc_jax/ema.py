"""The dual EMA module of AdaGC: METHOD.md section 3.

EMA 1 (`ema_update`) averages the teacher's weights and BatchNorm statistics
toward the student's; EMA 2 (`update_memory`) averages the teacher's
predictions per training sample in a memory bank M (N, C), which gives the
pseudo-labels q. Both are pure and jit-able.
"""

import jax
import jax.numpy as jnp


def ema_update(teacher_tree, student_tree, momentum):
    """theta_bar <- m theta_bar + (1 - m) theta, leaf by leaf (METHOD.md section 3, EMA 1).

    Works on any pytree of arrays with the student's structure: the params AND
    the BatchNorm statistics of the teacher follow the same EMA. `momentum` may
    be a Python float or a traced scalar (e.g. 0 to make the teacher a copy of
    the student when `ema.weights` is off, without recompiling).

    Floating leaves keep the teacher's dtype. Non-floating leaves (counters) have
    no meaningful average, so they take the student's value.
    """

    def average(teacher, student):
        if not jnp.issubdtype(teacher.dtype, jnp.floating):
            return student
        m = jnp.asarray(momentum, teacher.dtype)
        return m * teacher + (1 - m) * student.astype(teacher.dtype)

    return jax.tree.map(average, teacher_tree, student_tree)


def _replicate_if_explicit(x):
    """All-gather x to every device when it is sharded over Explicit mesh axes.

    With Explicit axes JAX refuses to index a replicated array with sharded
    indices (the output sharding would be ambiguous), so the gather of all
    shards' ids and predictions must be asked for. Without a mesh, or with Auto
    axes, x is returned as is and XLA's partitioner inserts the gather.
    """
    sharding = jax.typeof(x).sharding
    if not sharding.mesh.explicit_axes:
        return x
    return jax.sharding.reshard(x, sharding.update(spec=jax.P()))


def update_memory(memory, visits, idx, preds, momentum):
    """Per-sample prediction memory update (METHOD.md section 3, EMA 2).

      M[idx_b] <- preds_b                                  on the first visit
      M[idx_b] <- m M[idx_b] + (1 - m) preds_b             on later visits

    The first visit writes the prediction directly: averaging it into the
    initial value (e.g. zeros) would bias q toward that value for many epochs.

    Args:
      memory: (N, C) float32 memory bank M.
      visits: (N,) int32 number of updates each sample has received.
      idx: (B,) int sample ids of the batch. They must be UNIQUE within one call
        (true for an epoch's batch without duplicates): with a repeated id the
        scatter would keep one of the duplicate rows, unspecified which, and
        count several visits.
      preds: (B, C) teacher probabilities t_b on the un-mixed view.
      momentum: m_p, a Python float or traced scalar.

    Returns:
      (memory, visits) updated; rows not in idx are unchanged.

    Under data parallelism (jit over the mesh axis 'data', memory and visits
    replicated, idx and preds sharded), every replica must apply the updates of
    ALL shards so that replicas stay identical (METHOD.md section 3). On a mesh
    with Auto axes XLA inserts that all-gather for the scatter by itself; on a
    mesh with Explicit axes the gather is written out (`_replicate_if_explicit`).
    Both are tested in tests/test_ema.py.
    """
    memory, visits = jnp.asarray(memory), jnp.asarray(visits)
    idx, preds = _replicate_if_explicit(idx), _replicate_if_explicit(preds)
    preds = preds.astype(memory.dtype)
    m = jnp.asarray(momentum, memory.dtype)
    first_visit = (visits[idx] == 0)[:, None]
    averaged = m * memory[idx] + (1 - m) * preds
    memory = memory.at[idx].set(jnp.where(first_visit, preds, averaged))
    visits = visits.at[idx].add(1)
    return memory, visits
