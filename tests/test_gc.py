"""Tests of adagc_jax.gc (METHOD.md sections 2 and 4)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adagc_jax import gc

B, C = 4, 6


def _random_case(seed, logit_scale):
    """Random logits, one-hot observed positives and pseudo-labels forced to 1 there."""
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-logit_scale, logit_scale, size=(B, C)).astype(np.float32)
    observed = np.eye(C, dtype=np.float32)[rng.integers(0, C, size=B)]
    predictions = rng.uniform(0, 1, size=(B, C)).astype(np.float32)
    pseudo = np.asarray(gc.pseudo_labels(jnp.asarray(predictions), jnp.asarray(observed)))
    return jnp.asarray(logits), jnp.asarray(observed), jnp.asarray(pseudo)


def _extreme_case():
    logits, observed, pseudo = _random_case(1, logit_scale=1e4)
    # Saturated and exact-zero logits on observed and unobserved entries alike.
    logits = logits.at[0, :3].set(jnp.array([1e4, -1e4, 0.0]))
    logits = logits.at[1].set(jnp.where(observed[1] == 1, -1e4, 1e4))
    return logits, observed, pseudo


@pytest.mark.parametrize('mode', gc.GC_MODES)
@pytest.mark.parametrize('case', ['random', 'extreme'])
def test_grad_of_loss_is_calibrated_gradient_over_bc(mode, case):
    if case == 'random':
        logits, observed, pseudo = _random_case(0, logit_scale=5.0)
    else:
        logits, observed, pseudo = _extreme_case()
    loss, grad = jax.jit(jax.value_and_grad(gc.gc_loss), static_argnums=3)(
        logits, observed, pseudo, mode)
    g = gc.calibrated_gradient(logits, observed, pseudo, mode)
    assert g.shape == (B, C)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(g))
    np.testing.assert_allclose(grad * (B * C), g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('mode', gc.GC_MODES)
def test_no_gradient_flows_into_pseudo_labels(mode):
    logits, observed, pseudo = _random_case(2, logit_scale=3.0)
    grad_q = jax.grad(gc.gc_loss, argnums=2)(logits, observed, pseudo, mode)
    np.testing.assert_array_equal(grad_q, np.zeros((B, C), np.float32))


def test_expected_mode_with_zero_pseudo_labels_is_log_sigmoid_an_loss():
    logits, observed, _ = _random_case(3, logit_scale=4.0)
    loss = gc.gc_loss(logits, observed, jnp.zeros((B, C)), 'expected')
    np.testing.assert_allclose(loss, gc.log_sigmoid_an_loss(logits, observed), rtol=1e-6)
    # And, as a gradient: the assume-negative gradient p - o.
    np.testing.assert_allclose(
        gc.calibrated_gradient(logits, observed, jnp.zeros((B, C))),
        jax.nn.sigmoid(logits) - observed, rtol=1e-6)


def test_bce_is_exact_for_saturated_logits_and_fractional_targets():
    """The project's one BCE: finite value and gradient sigmoid(s) - t at |s| = 1e4, fractional t."""
    logits = jnp.array([[1e4, -1e4, 1e4, -1e4, 0.0]])
    targets = jnp.array([[0.3, 0.3, 1.0, 0.0, 0.25]])
    values, vjp = jax.vjp(lambda s: gc.bce_with_logits(s, targets), logits)
    # BCE(1e4, 0.3) = 0.7 * 1e4, BCE(-1e4, 0.3) = 0.3 * 1e4, exact targets cost 0, BCE(0, t) = ln 2.
    np.testing.assert_allclose(values, [[7000.0, 3000.0, 0.0, 0.0, math.log(2.0)]], rtol=1e-6)
    (grad,) = vjp(jnp.ones_like(logits))
    # Exactly sigmoid(s) - t in float32 (sigmoid(+-1e4) is exactly 1 or 0).
    np.testing.assert_array_equal(grad, np.float32([[1.0, 0.0, 1.0, 0.0, 0.5]]) - np.asarray(targets))


def test_hard_mode_thresholds_at_tau():
    logits = jnp.zeros((1, 4))
    observed = jnp.array([[1.0, 0.0, 0.0, 0.0]])
    pseudo = jnp.array([[1.0, 0.29, 0.3, 0.31]])
    targets = gc.calibrated_targets(observed, pseudo, 'hard', tau=0.3)
    np.testing.assert_array_equal(targets['target'], [[1.0, 0.0, 1.0, 1.0]])
    g = gc.calibrated_gradient(logits, observed, pseudo, 'hard', tau=0.3)
    np.testing.assert_allclose(g, [[-0.5, 0.5, -0.5, -0.5]])
    # The default tau is 0.5.
    g = gc.calibrated_gradient(logits, observed, pseudo, 'hard')
    np.testing.assert_allclose(g, [[-0.5, 0.5, 0.5, 0.5]])


def test_closed_form_values():
    # s = (0, ln 3): p = (1/2, 3/4); observed positive on class 0; q = 1/2 on class 1.
    logits = jnp.array([[0.0, math.log(3.0)]])
    observed = jnp.array([[1.0, 0.0]])
    pseudo = jnp.array([[1.0, 0.5]])
    ln2 = math.log(2.0)
    # BCE(0, 1) = ln 2;  BCE(ln 3, 0) = -ln(1/4) = 2 ln 2;  BCE(ln 3, 1) = ln(4/3);
    # BCE(ln 3, 1/2) = -(1/2) ln(3/4) - (1/2) ln(1/4) = (1/2) ln(16/3).
    np.testing.assert_allclose(
        gc.bce_with_logits(logits, jnp.array([[1.0, 0.5]])),
        [[ln2, 0.5 * math.log(16 / 3)]], rtol=1e-6)
    np.testing.assert_allclose(gc.log_sigmoid_an_loss(logits, observed), 1.5 * ln2, rtol=1e-6)
    expected = {
        # mode: (loss, gradient per entry)
        'expected': ((ln2 + 0.5 * math.log(16 / 3)) / 2, [[-0.5, 0.25]]),
        'hard': ((ln2 + math.log(4 / 3)) / 2, [[-0.5, -0.25]]),
        'reweight': ((ln2 + 0.5 * 2 * ln2) / 2, [[-0.5, 0.375]]),
    }
    for mode, (loss, g) in expected.items():
        np.testing.assert_allclose(gc.gc_loss(logits, observed, pseudo, mode), loss,
                                   rtol=1e-6, err_msg=mode)
        np.testing.assert_allclose(gc.calibrated_gradient(logits, observed, pseudo, mode), g,
                                   rtol=1e-6, err_msg=mode)


def test_reweight_never_reverses_an_unobserved_gradient():
    logits, observed, pseudo = _random_case(4, logit_scale=6.0)
    unobserved = np.asarray(observed) == 0
    p = np.asarray(jax.nn.sigmoid(logits))
    g = np.asarray(gc.calibrated_gradient(logits, observed, pseudo, 'reweight'))
    # Same direction as the assume-negative gradient p, never larger.
    assert np.all(g[unobserved] >= 0)
    assert np.all(g[unobserved] <= p[unobserved])
    np.testing.assert_allclose(g[unobserved], ((1 - np.asarray(pseudo)) * p)[unobserved], rtol=1e-6)
    np.testing.assert_allclose(g[~unobserved], p[~unobserved] - 1, rtol=1e-6)
    # Whereas 'expected' does reverse it where q > p (the point of the ablation).
    g_expected = np.asarray(gc.calibrated_gradient(logits, observed, pseudo, 'expected'))
    reversed_entries = unobserved & (np.asarray(pseudo) > p)
    assert reversed_entries.any()
    assert np.all(g_expected[reversed_entries] < 0)


def test_pseudo_labels_force_observed_positive_to_one():
    predictions = jnp.array([[0.2, 0.7, 0.1], [0.0, 0.4, 0.9]])
    observed = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(gc.pseudo_labels(predictions, observed),
                               [[1.0, 0.7, 0.1], [0.0, 0.4, 1.0]])


def test_loss_on_mixed_targets_matches_mixed_gradient():
    """gc_loss_from_targets on Mixup-style fractional targets: grad = (p - yhat~) / (B*C)."""
    logits, observed, pseudo = _random_case(5, logit_scale=3.0)
    lam, perm = 0.3, jnp.array([2, 0, 3, 1])
    for mode in gc.GC_MODES:
        targets = gc.calibrated_targets(observed, pseudo, mode)
        mixed = jax.tree.map(lambda t: lam * t + (1 - lam) * t[perm], targets)
        grad = jax.grad(gc.gc_loss_from_targets)(logits, mixed, mode)
        p = jax.nn.sigmoid(logits)
        if mode == 'reweight':
            o, q = mixed['observed'], mixed['pseudo']
            g = o * (p - 1) + (1 - o) * (1 - q) * p
        else:
            g = p - mixed['target']
        np.testing.assert_allclose(grad * (B * C), g, rtol=1e-5, atol=1e-6, err_msg=mode)


def test_unknown_mode_lists_valid_modes():
    logits, observed, pseudo = _random_case(6, logit_scale=1.0)
    for fn in (gc.gc_loss, gc.calibrated_gradient):
        with pytest.raises(ValueError, match='expected.*hard.*reweight'):
            fn(logits, observed, pseudo, mode='soft')
    with pytest.raises(ValueError, match='valid values'):
        gc.calibrated_targets(observed, pseudo, mode='soft')
