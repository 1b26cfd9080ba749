"""Tests of adagc_jax.ema (METHOD.md section 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from adagc_jax import ema


def _nested_trees():
    teacher = {'params': {'conv': {'kernel': jnp.full((2, 3), 2.0), 'bias': jnp.array([1.0, -1.0])}},
               'batch_stats': {'bn': {'mean': jnp.array([0.5]), 'var': jnp.array([4.0])}},
               'layers': [jnp.array(10.0), (jnp.array([0.0, 1.0]),)]}
    student = {'params': {'conv': {'kernel': jnp.full((2, 3), 4.0), 'bias': jnp.array([3.0, 1.0])}},
               'batch_stats': {'bn': {'mean': jnp.array([1.5]), 'var': jnp.array([2.0])}},
               'layers': [jnp.array(0.0), (jnp.array([1.0, 3.0]),)]}
    return teacher, student


def test_ema_update_closed_form_on_nested_tree():
    teacher, student = _nested_trees()
    out = jax.jit(ema.ema_update)(teacher, student, 0.75)
    assert jax.tree.structure(out) == jax.tree.structure(teacher)
    # 0.75 t + 0.25 s, by hand.
    np.testing.assert_allclose(out['params']['conv']['kernel'], np.full((2, 3), 2.5))
    np.testing.assert_allclose(out['params']['conv']['bias'], [1.5, -0.5])
    np.testing.assert_allclose(out['batch_stats']['bn']['mean'], [0.75])
    np.testing.assert_allclose(out['batch_stats']['bn']['var'], [3.5])
    np.testing.assert_allclose(out['layers'][0], 7.5)
    np.testing.assert_allclose(out['layers'][1][0], [0.25, 1.5])
    for leaf in jax.tree.leaves(out):
        assert leaf.dtype == jnp.float32


def test_ema_momentum_zero_copies_student_and_one_keeps_teacher():
    teacher, student = _nested_trees()
    # Momentum as a traced scalar: one compiled function serves both.
    update = jax.jit(ema.ema_update)
    copied = update(teacher, student, jnp.float32(0.0))
    kept = update(teacher, student, jnp.float32(1.0))
    jax.tree.map(np.testing.assert_array_equal, copied, student)
    jax.tree.map(np.testing.assert_array_equal, kept, teacher)


def test_ema_integer_leaves_take_the_student_value():
    out = ema.ema_update({'w': jnp.array([1.0]), 'count': jnp.array(3)},
                         {'w': jnp.array([3.0]), 'count': jnp.array(7)}, 0.5)
    np.testing.assert_array_equal(out['count'], 7)
    np.testing.assert_allclose(out['w'], [2.0])


def test_update_memory_first_visit_writes_then_averages():
    n, c = 6, 2
    memory = jnp.full((n, c), 0.25, jnp.float32)  # a nonzero initial value must not leak in
    visits = jnp.zeros((n,), jnp.int32)
    update = jax.jit(ema.update_memory)

    memory, visits = update(memory, visits, jnp.array([4, 1]), jnp.array([[0.8, 0.1], [0.3, 0.6]]), 0.9)
    np.testing.assert_allclose(memory[4], [0.8, 0.1])  # written, not 0.9 * 0.25 + 0.1 * 0.8
    np.testing.assert_allclose(memory[1], [0.3, 0.6])
    np.testing.assert_array_equal(visits, [0, 1, 0, 0, 1, 0])

    # Second visit of 4, first of 0, in one call.
    memory, visits = update(memory, visits, jnp.array([0, 4]), jnp.array([[0.5, 0.5], [0.0, 1.0]]), 0.9)
    np.testing.assert_allclose(memory[4], [0.9 * 0.8 + 0.1 * 0.0, 0.9 * 0.1 + 0.1 * 1.0], rtol=1e-6)
    np.testing.assert_allclose(memory[0], [0.5, 0.5])
    np.testing.assert_allclose(memory[1], [0.3, 0.6])  # not in this batch: unchanged
    np.testing.assert_array_equal(visits, [1, 1, 0, 0, 2, 0])
    # Never visited rows keep their initial value exactly.
    np.testing.assert_array_equal(memory[np.array([2, 3, 5])], np.full((3, c), 0.25, np.float32))
    assert memory.dtype == jnp.float32 and visits.dtype == jnp.int32


def test_update_memory_momentum_zero_is_no_memory():
    # m_p = 0 makes q this step's teacher prediction (the `ema.predictions` off ablation).
    memory, visits = ema.update_memory(jnp.zeros((3, 2)), jnp.array([5, 5, 5], jnp.int32),
                                       jnp.array([2]), jnp.array([[0.7, 0.2]]), 0.0)
    np.testing.assert_array_equal(memory, np.array([[0, 0], [0, 0], [0.7, 0.2]], np.float32))
    np.testing.assert_array_equal(visits, [5, 5, 6])


@pytest.mark.parametrize('axis_type', ['Auto', 'Explicit'])
def test_update_memory_data_parallel_replicas_apply_all_updates(axis_type):
    """On 4 devices (forced in conftest) with the batch sharded, every replica of the memory applies every update:
    four full, identical (N, C) copies, bit-equal to one device, which equals the numpy reference."""
    assert jax.device_count() == 4, jax.devices()
    n, c, b, calls, momentum = 24, 3, 8, 5, 0.9
    rng = np.random.default_rng(0)
    # Unique ids within a call; across calls ids repeat, so later visits average.
    batches = [(rng.permutation(n)[:b].astype(np.int32), rng.uniform(size=(b, c)).astype(np.float32))
               for _ in range(calls)]

    # Plain numpy reference of METHOD.md section 3, EMA 2.
    ref_memory, ref_visits = np.zeros((n, c), np.float32), np.zeros((n,), np.int32)
    for idx, preds in batches:
        for i, t in zip(idx, preds):
            m = np.float32(momentum)
            ref_memory[i] = t if ref_visits[i] == 0 else m * ref_memory[i] + (np.float32(1) - m) * t
            ref_visits[i] += 1

    single = jax.jit(ema.update_memory)
    memory1, visits1 = jnp.zeros((n, c)), jnp.zeros((n,), jnp.int32)
    for idx, preds in batches:
        memory1, visits1 = single(memory1, visits1, idx, preds, momentum)
    assert np.max(np.abs(np.asarray(memory1) - ref_memory)) < 1e-6
    np.testing.assert_array_equal(visits1, ref_visits)

    mesh = jax.make_mesh((4,), ('data',), axis_types=(getattr(AxisType, axis_type),))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    step = jax.jit(ema.update_memory, in_shardings=(replicated, replicated, sharded, sharded, replicated),
                   out_shardings=(replicated, replicated))
    memory = jax.device_put(jnp.zeros((n, c)), replicated)
    visits = jax.device_put(jnp.zeros((n,), jnp.int32), replicated)
    m = jax.device_put(jnp.float32(momentum), replicated)
    for idx, preds in batches:
        memory, visits = step(memory, visits, jax.device_put(idx, sharded), jax.device_put(preds, sharded), m)
    copies = [np.asarray(s.data) for s in memory.addressable_shards]
    visit_copies = [np.asarray(s.data) for s in visits.addressable_shards]
    assert len(copies) == 4 and copies[0].shape == (24, 3)
    assert all(np.array_equal(x, copies[0]) for x in copies)
    assert all(np.array_equal(v, visit_copies[0]) for v in visit_copies)
    np.testing.assert_array_equal(np.asarray(memory), np.asarray(memory1))
    np.testing.assert_array_equal(np.asarray(visits), np.asarray(visits1))


@pytest.mark.parametrize('momentum', [0.5, jnp.float32(0.5)])
def test_update_memory_eager_numpy_inputs(momentum):
    memory, visits = ema.update_memory(np.ones((2, 1), np.float32), np.array([1, 0], np.int32),
                                       np.array([0, 1]), np.array([[3.0], [2.0]], np.float32), momentum)
    np.testing.assert_allclose(memory, [[2.0], [2.0]])
    np.testing.assert_array_equal(visits, [2, 1])
