"""Gradient calibration (GC) of AdaGC: METHOD.md sections 2 and 4.

Every function here is pure and jit-able; arrays are (B, C) with B images and
C classes. Losses are elementwise BCE from logits (log-sigmoid, never from the
probabilities, so they stay finite for any logit) reduced by a mean over all
B*C entries, which is part of the definition (METHOD.md section 2).

The train step composes them in this order, because Mixup mixes the calibrated
TARGET, not the observed labels and pseudo-labels separately (METHOD.md
section 5: "o~, yhat~ mixed the same way"):

    q       = pseudo_labels(memory[idx], observed)
    targets = calibrated_targets(observed, q, mode, tau)   # dict of (B, C)
    x~, targets~, lam = mixup(rng, x, targets, alpha)      # mixes every entry
    loss    = gc_loss_from_targets(student(x~), targets~, mode)

Without Mixup, `gc_loss` is the same computation in one call, and
`calibrated_gradient` is the per-entry gradient it produces (times B*C).
"""

import jax
import jax.numpy as jnp

from adagc_jax import config_utils

GC_MODES = ('expected', 'hard', 'reweight')


def _check_mode(mode):
    config_utils.lookup(GC_MODES, mode, 'gc.mode')


def bce_with_logits(logits, targets):
    """Elementwise BCE(s, t) = -[t log sigmoid(s) + (1 - t) log sigmoid(-s)].

    METHOD.md section 1 (notation). Computed with log_sigmoid so that it is
    finite and has the exact gradient sigmoid(s) - t even for |s| ~ 1e4.
    Targets may be fractional (Mixup, pseudo-labels).

    The project's one BCE-with-logits (losses.full uses it too). Not
    optax.sigmoid_binary_cross_entropy, although that is the same function:
    it writes -t a - (1 - t) b instead of -(t a + (1 - t) b), and under jit
    XLA's fused mean of the two expressions differs in the last bit on some
    inputs (the GC and AN losses of this project's earlier runs would change).
    """
    logits = jnp.asarray(logits)
    targets = jnp.asarray(targets, logits.dtype)
    return -(targets * jax.nn.log_sigmoid(logits)
             + (1.0 - targets) * jax.nn.log_sigmoid(-logits))


def log_sigmoid_an_loss(logits, observed):
    """AdaGC's assume-negative loss L_AN = mean over b, c of BCE(s_bc, o_bc) (METHOD.md section 2).

    The log-sigmoid BCE, finite for any logit and valid for Mixup's fractional
    o~. Not the `an` baseline (losses.an: Cole et al.'s -log(p + 1e-5) form,
    which caps each term at about 11.5).
    """
    return jnp.mean(bce_with_logits(logits, observed))


def pseudo_labels(predictions, observed):
    """q = predictions with the observed positive forced to 1 (METHOD.md section 3).

    The observed positive is clean under single-positive noise (only the
    unobserved entries hide false negatives), so there is nothing to estimate
    there: the teacher's probability, however immature, would only add noise.
    """
    return jnp.where(observed == 1, jnp.ones_like(predictions), predictions)


def calibrated_targets(observed, pseudo, mode='expected', tau=0.5):
    """The (B, C) arrays of the GC loss that Mixup must mix (METHOD.md section 4).

    - 'expected': {'target': yhat}, yhat = o + (1 - o) q.
    - 'hard':     {'target': yhat}, yhat = o + (1 - o) 1[q >= tau].
    - 'reweight': {'observed': o, 'pseudo': q}; the loss is not a BCE against one
                  target, so both arrays are mixed and combined after Mixup.
    """
    _check_mode(mode)
    observed = observed.astype(pseudo.dtype)
    if mode == 'reweight':
        return {'observed': observed, 'pseudo': pseudo}
    if mode == 'hard':
        pseudo = (pseudo >= tau).astype(pseudo.dtype)
    return {'target': observed + (1.0 - observed) * pseudo}


def gc_loss_from_targets(logits, targets, mode):
    """L_GC on (possibly Mixup-mixed) targets, mean over B*C (METHOD.md section 4).

    - 'expected' / 'hard': mean BCE(s, stop_gradient(yhat~)).
    - 'reweight': mean [o~ BCE(s, 1) + (1 - o~)(1 - stop_gradient(q~)) BCE(s, 0)].

    The targets are stop-gradiented: they are labels computed by the teacher,
    and the loss must only move the student's logits.
    """
    _check_mode(mode)
    if mode == 'reweight':
        observed = jax.lax.stop_gradient(targets['observed']).astype(logits.dtype)
        pseudo = jax.lax.stop_gradient(targets['pseudo']).astype(logits.dtype)
        per_entry = (observed * bce_with_logits(logits, jnp.ones_like(logits))
                     + (1.0 - observed) * (1.0 - pseudo)
                     * bce_with_logits(logits, jnp.zeros_like(logits)))
        return jnp.mean(per_entry)
    target = jax.lax.stop_gradient(targets['target'])
    return jnp.mean(bce_with_logits(logits, target))


def gc_loss(logits, observed, pseudo, mode='expected', tau=0.5):
    """L_GC without Mixup; jax.grad w.r.t. logits is calibrated_gradient / (B*C)."""
    return gc_loss_from_targets(
        logits, calibrated_targets(observed, pseudo, mode, tau), mode)


def calibrated_gradient(logits, observed, pseudo, mode='expected', tau=0.5):
    """Per-entry calibrated gradient g_bc w.r.t. the logit s_bc (METHOD.md section 4).

    - 'expected': g = p - yhat, the expectation of dBCE/ds = q (p - 1) + (1 - q) p
                  under a label that is positive with probability q.
    - 'hard':     g = p - yhat_hard, yhat_hard = o + (1 - o) 1[q >= tau].
    - 'reweight': g = o (p - 1) + (1 - o)(1 - q) p: p - 1 on the observed
                  positive, the assume-negative gradient p scaled by (1 - q) (so
                  never reversed) on unobserved entries.
    """
    _check_mode(mode)
    p = jax.nn.sigmoid(logits)
    targets = calibrated_targets(observed, pseudo.astype(p.dtype), mode, tau)
    if mode == 'reweight':
        o, q = targets['observed'], targets['pseudo']
        return o * (p - 1.0) + (1.0 - o) * (1.0 - q) * p
    return p - targets['target']
