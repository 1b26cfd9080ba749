"""Per-epoch schedules and per-dataset label-state updates of the SPML baselines (BASELINES.md sections 3-6).

One job: the values that change between steps or epochs OUTSIDE a loss's per-entry terms (losses.py), so the
trainer can compute them on the host once per epoch, or once per run, and pass them in:
  - epoch-dependent knobs: LL's rate and its official k (ll_rate, ll_num_modified), GR's (w, b, mu, sigma)
    (gr_schedule; losses.gr and losses.gr_from_schedule consume it);
  - per-dataset label state: ROLE's initial label logits Z (role_init_label_logits) and APL's negative
    pseudo-labelling of the observed table after an epoch (apl_update).
LL-Cp's flip mask (losses.ll_cp_flips) stays in losses.py: it is computed in the training step from the logits
with ll's own batch selection. Numerics follow the official code, as in losses.py (the docstrings say where).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

ROLE_LOGIT_CLAMP = 1e-5  # Cole's inverse_sigmoid clamps p to [1e-5, 1 - 1e-5] (section 3)


# ----------------------------------------------------------------------------------------------
# Kim et al., Large Loss Matters (section 4)


def ll_num_modified(num_entries, rate):
    """The official k = math.ceil(B*C*rate) in float64 (host side, for logging and checks)."""
    return math.ceil(num_entries * rate)


def ll_rate(epoch, delta_rel):
    """rate = 1 - clean_rate for 1-based epoch e, by the official repeated float64 subtraction.

    clean_rate starts at 1 and loses delta_rel after every epoch (section 4 "Schedule"), so epoch 2
    with delta 0.002 gives 0.0020000000000000018, not 0.002. delta_rel is a fraction (CLI 0.2 -> 0.002).
    """
    if epoch < 1:
        raise ValueError(f'epoch is 1-based, got {epoch}')
    clean_rate = 1.0
    for _ in range(epoch - 1):
        clean_rate -= delta_rel
    return 1.0 - clean_rate


# ----------------------------------------------------------------------------------------------
# Zhou et al., APL (section 5)


def apl_update(probs, observed, initial_unobserved_counts, neg_proportion, num_epochs, warmup):
    """APL state update (section 5), run on the host after training epoch e >= warmup (1-based).

    probs: (N, C) p for every training image (eval-mode model over the shuffled, flipped train
    loader); observed: the current (N, C) table; initial_unobserved_counts: U_c^0 = (o0 == 0).sum(0)
    of the *initial* table. Per class, n_c = int(neg_proportion * U_c^0 / (T - warmup)) of the
    entries still at o == 0 with the smallest p get o = -p. Already pseudo-labelled entries are
    negative, so they are never re-selected or revised; no positive pseudo-labels are made.
    Returns a new table (float, the input's float dtype or float32). Ties in p go to the lower row.
    """
    probs = np.asarray(probs)
    observed = np.asarray(observed)
    if num_epochs <= warmup:
        raise ValueError(f'APL needs num_epochs > warmup, got {num_epochs} <= {warmup}')
    counts = np.asarray(initial_unobserved_counts, dtype=np.float64)
    # Same float64 operation order as the official int(neg_proportion * U0 / (T - warmup)).
    per_class = (neg_proportion * counts / (num_epochs - warmup)).astype(np.int64)
    unobserved = observed == 0
    per_class = np.minimum(per_class, unobserved.sum(axis=0))
    order = np.argsort(np.where(unobserved, probs, np.inf), axis=0, kind='stable')
    within_quota = np.arange(observed.shape[0])[:, None] < per_class[None, :]
    selected = np.zeros_like(unobserved)
    np.put_along_axis(selected, order, within_quota, axis=0)
    out_dtype = observed.dtype if np.issubdtype(observed.dtype, np.floating) else np.float32
    return np.where(selected, -probs, observed).astype(out_dtype)


# ----------------------------------------------------------------------------------------------
# Chen et al., GR loss (section 6)


def gr_schedule(epoch, num_epochs, linear_init_epochs=0, beta=(0, 2, -2, -2), alpha=(0.5, 2, 0.8, 0.5)):
    """(w, b, mu, sigma) of 1-based epoch e (section 6 "Schedule"); epoch may be traced.

    a(e) = max(e - n - 1, 0) / (T - n) drives w, b (one epoch behind, so w never reaches wT);
    c(e) = max(e - n, 0) / (T - n) drives mu, sigma. beta = (w0, wT, b0, bT),
    alpha = (mu0, sigma0, muT, sigmaT).
    """
    w0, w_end, b0, b_end = beta
    mu0, sigma0, mu_end, sigma_end = alpha
    span = num_epochs - linear_init_epochs
    lagged = jnp.maximum(epoch - linear_init_epochs - 1, 0) / span
    current = jnp.maximum(epoch - linear_init_epochs, 0) / span
    return (
            w0 + (w_end - w0) * lagged,
            b0 + (b_end - b0) * lagged,
            mu0 + (mu_end - mu0) * current,
            sigma0 + (sigma_end - sigma0) * current,
    )


# ----------------------------------------------------------------------------------------------
# ROLE state (section 3)


def _clamped_logit(p):
    """Cole's inverse_sigmoid: log(p / (1 - p)) with p clamped to [1e-5, 1 - 1e-5], as float32.

    Evaluated in float64 on the host (an init-time helper): in float32 the bound 1 - 1e-5 itself
    rounds, which moves the capped logit by 1e-3.
    """
    p = np.clip(np.asarray(p, np.float64), ROLE_LOGIT_CLAMP, 1.0 - ROLE_LOGIT_CLAMP)
    return jnp.asarray(np.log(p / (1.0 - p)), jnp.float32)


def role_init_label_logits(rng, observed, estimates=None):
    """Initial ROLE label logits Z (N_train, C) (section 3 "State").

    Unobserved: a (2u - 1) with u ~ U(0, 1) and a = logit(0.6), so q starts in (0.4, 0.6);
    observed positive (o = 1): logit(0.995); observed negative (o = -1): logit(0.005).
    With `estimates` (q of a previous stage, e.g. Cole's linear_init phase) Z = logit(clamped q)
    instead and rng is unused; the clamp caps |Z| at logit(1 - 1e-5) = 11.51.
    """
    observed = jnp.asarray(observed)
    if estimates is not None:
        return _clamped_logit(estimates)
    uniform = jax.random.uniform(rng, observed.shape, jnp.float32)
    z = _clamped_logit(0.6) * (2.0 * uniform - 1.0)
    z = jnp.where(observed == 1, _clamped_logit(0.995), z)
    return jnp.where(observed == -1, _clamped_logit(0.005), z)
