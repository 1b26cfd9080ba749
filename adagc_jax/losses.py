"""SPML baseline losses, restated from the official code (BASELINES.md sections 3-8, API section 11).

Every loss takes logits x (B, C) and the observed matrix o (B, C) and returns the float32 (B, C)
matrix of its per-entry terms; the caller chooses the reduction (methods.py's Method.loss, the
tests). The official loss of each baseline is
  - mean_bc(terms) for an, an_ls, wan, ll, em, em_apl, gr and full;
  - reduce(terms, reduction) for hill and splc, whose official reduction is a sum ('sum'/'mean'
    is their hyper-parameter, section 7);
  - mean_bc(terms) + regulariser for epr and role, which return the pair (terms, regulariser):
    their R_k term is a function of the whole batch, (1/B) sum_{b,c} p[b,c], not a sum of
    per-entry terms, so it cannot be folded into the matrix without changing the numbers.
ll's terms are per entry but WHICH entries are rejected or corrected is decided over the whole
batch (the k largest unobserved losses, section 4): reduce them over the same batch they were
computed on. All functions are pure and jit-able; per-epoch knobs (LL rate, GR/SPLC epoch) may be
traced scalars, and per-dataset state (ROLE's Z rows, APL's soft negatives, LL-Cp's corrections) is
passed in explicitly; its initial values and updates, and the per-epoch schedules, are computed by
loss_schedules.py (LL-Cp's flip mask, ll_cp_flips, is here: it shares ll's batch selection).

Numerics follow the official code on purpose (BASELINES.md section 8), not this project's own
log-sigmoid BCE (METHOD.md): Cole/EM/APL use nl_e(z) = -log(z + 1e-5) on p = sigmoid(x), GR uses
e = 1e-7; LL, SPLC and full use BCE-with-logits. full calls the project's BCE
(gc.bce_with_logits). LL and SPLC select between the two single-target terms softplus(-x) =
BCE(x, 1) and softplus(x) = BCE(x, 0) (log_sigmoid(+-x) = -softplus(-+x) in SPLC) as they always
did: routed through gc.bce_with_logits, their jitted losses or gradients change in the last bit or
the sign of a zero (see _ll_base_and_corrected, splc). The few places where a float32 overflow of
the official formula (inf or nan) is avoided are noted in the docstrings.

Notation (section 0): P = {o == 1} observed positives, U = {o == 0} unobserved entries; mean_BC
divides by B*C and counts every entry, including those with no term.
"""

import jax
import jax.numpy as jnp

from adagc_jax import gc, loss_schedules

COLE_EPS = 1e-5  # LOG_EPSILON of Cole et al., also used by EM/APL (section 3, 5)
GR_EPS = 1e-7  # GRLoss uses a smaller epsilon (section 6)
LL_SCHEMES = ('R', 'Ct')
REDUCTIONS = ('sum', 'mean')


# ----------------------------------------------------------------------------------------------
# Shared pieces


def _as_float(logits):
    """Logits as at least float32 (a bf16 forward is scored in fp32, as robust-loss-mlml does)."""
    x = jnp.asarray(logits)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def neg_log(z, eps=COLE_EPS):
    """nl_e(z) = -log(z + e): the official "neg_log" helper (section 0); nothing is clamped."""
    return -jnp.log(z + eps)


def _masks(observed):
    """(P, U) boolean masks: o == 1 and o == 0 (other values get no term, as in Cole's indexing)."""
    observed = jnp.asarray(observed)
    return observed == 1, observed == 0


def mean_bc(loss_matrix):
    """mean_BC: sum over all B*C entries / (B*C); the zero entries count in the denominator.

    jnp.mean, not a sum divided by B*C: that is the reduction the official numbers (and this
    project's earlier scalar losses) were computed with, and the two differ in the last bits.
    """
    return jnp.mean(loss_matrix)


def reduce(loss_matrix, reduction):
    """Hill/SPLC's reduction: 'sum' (robust-loss-mlml default) or 'mean' over all B*C entries (section 7)."""
    if reduction == 'sum':
        return jnp.sum(loss_matrix)
    if reduction == 'mean':
        return jnp.mean(loss_matrix)
    raise ValueError(f'Unknown reduction {reduction!r}; valid: {REDUCTIONS}')


def _expected_positive_reg(probs, expected_num_pos):
    """R_k(p) = ((1/B) sum_{b,c} p[b,c] - k)^2 / C^2: EPR's squared-L2 regulariser (section 3)."""
    batch_size, num_classes = probs.shape
    return (jnp.sum(probs) / batch_size - expected_num_pos) ** 2 / num_classes**2


# ----------------------------------------------------------------------------------------------
# Cole et al. (section 3)


def an(logits, observed):
    """AN (assume negative), Cole's form: nl_e(p) on P, nl_e(1 - p) on U (section 3); reduce with mean_bc.

    Not gc.log_sigmoid_an_loss (AdaGC's own AN, log-sigmoid BCE): the epsilon caps nl_e(1 - p) at
    about 11.5, so on vector C the two means differ (1.9540 against 2.1155). 1 - p is formed in
    float32 as in the official code, so p near 1 loses precision (vector C: float32 gives 1.953946
    against 1.954509 in float64).
    """
    p = jax.nn.sigmoid(_as_float(logits))
    pos, unobs = _masks(observed)
    return jnp.where(pos, neg_log(p), 0.0) + jnp.where(unobs, neg_log(1.0 - p), 0.0)


def an_ls(logits, observed, ls_coef=0.1):
    """AN with label smoothing (section 3): targets 1 - ls_coef on P and ls_coef on U (0.9 / 0.1); mean_bc."""
    p = jax.nn.sigmoid(_as_float(logits))
    pos, unobs = _masks(observed)
    toward_one = (1.0 - ls_coef) * neg_log(p) + ls_coef * neg_log(1.0 - p)
    toward_zero = (1.0 - ls_coef) * neg_log(1.0 - p) + ls_coef * neg_log(p)
    return jnp.where(pos, toward_one, 0.0) + jnp.where(unobs, toward_zero, 0.0)


def wan(logits, observed):
    """WAN (weak assume negative, section 3): the U term of AN down-weighted by gamma = 1/(C - 1); mean_bc.

    C is the number of columns of the batch, i.e. the dataset's class count.
    """
    num_classes = jnp.shape(logits)[-1]
    if num_classes < 2:
        raise ValueError(f'wan needs at least 2 classes (gamma = 1/(C-1)), got C={num_classes}')
    p = jax.nn.sigmoid(_as_float(logits))
    pos, unobs = _masks(observed)
    return jnp.where(pos, neg_log(p), 0.0) + jnp.where(unobs, neg_log(1.0 - p) / (num_classes - 1), 0.0)


def epr(logits, observed, expected_num_pos):
    """EPR (section 3): (terms, R_k(p)) with terms = nl_e(p) on P, nothing on U; no stop-gradient.

    The loss is mean_bc(terms) + R_k(p). R_k is returned apart because it is a batch-level term (the
    squared distance of the batch's mean positive count from k), not a sum of per-entry terms; both
    come from one p so that the gradient is summed at p exactly as in the scalar formula.
    expected_num_pos is k (pascal 1.5, coco 2.9, nuswide 1.9, cub 31.4).
    """
    p = jax.nn.sigmoid(_as_float(logits))
    pos, _ = _masks(observed)
    return jnp.where(pos, neg_log(p), 0.0), _expected_positive_reg(p, expected_num_pos)


def role(logits, observed, label_logits, expected_num_pos):
    """ROLE (section 3): (Lmat, R) for classifier p = sigmoid(x) and label estimates q = sigmoid(Z[idx]).

    Lmat = 0.5 (pos1 + pos2) + 0.5 (cross1 + cross2) (B, C), R = 0.5 (R_k(p) + R_k(q)) a batch-level
    scalar (see epr), loss = mean_bc(Lmat) + R.
    Each cross term trains one side toward the *detached* other side, so x gets gradient only from
    pos1, cross1 and R_k(p), and label_logits (the batch rows of Z) only from pos2, cross2 and R_k(q).
    """
    p = jax.nn.sigmoid(_as_float(logits))
    q = jax.nn.sigmoid(_as_float(label_logits))
    p_fixed = jax.lax.stop_gradient(p)
    q_fixed = jax.lax.stop_gradient(q)
    pos, _ = _masks(observed)
    pos1 = jnp.where(pos, neg_log(p), 0.0)
    pos2 = jnp.where(pos, neg_log(q), 0.0)
    cross1 = q_fixed * neg_log(p) + (1.0 - q_fixed) * neg_log(1.0 - p)
    cross2 = p_fixed * neg_log(q) + (1.0 - p_fixed) * neg_log(1.0 - q)
    loss = 0.5 * (pos1 + pos2) + 0.5 * (cross1 + cross2)
    reg = 0.5 * (_expected_positive_reg(p, expected_num_pos) + _expected_positive_reg(q, expected_num_pos))
    return loss, reg


# ----------------------------------------------------------------------------------------------
# Kim et al., Large Loss Matters (section 4)


def _ll_base_and_corrected(x, observed):
    """BCE(x, o) and BCE(x, 1 - o) with logits: softplus(-x) for target 1, softplus(x) for target 0.

    Not two calls of gc.bce_with_logits: base and corrected share the two softplus terms, so their
    gradients are summed before the softplus derivative, as in this project's earlier runs; two
    separate BCE calls change the sign of zero gradients at saturated logits (and the float-target
    form changes the last bit of the jitted mean on some inputs).
    """
    pos, _ = _masks(observed)
    target_one, target_zero = jax.nn.softplus(-x), jax.nn.softplus(x)
    base = jnp.where(pos, target_one, target_zero)
    corrected = jnp.where(pos, target_zero, target_one)
    return base, corrected


def _ll_selection(base, observed, rate):
    """(u, do_modify, t): unobserved losses, whether k > 0, and t = the k-th largest u.

    k = ceil(B*C*rate) is computed in rate's dtype (float32 unless jax_enable_x64), t by sorting
    all B*C values of u (duplicates count, like torch.topk(...).values[-1]), so a changing rate
    is data, not shape, and nothing recompiles.
    """
    _, unobs = _masks(observed)
    # Selection is a hard mask; no gradient should ever flow through the sort.
    u = jax.lax.stop_gradient(jnp.where(unobs, base, 0.0))
    num_entries = u.size
    k = jnp.ceil(num_entries * jnp.asarray(rate)).astype(jnp.int32)
    kth_largest = jnp.sort(u.reshape(-1))[num_entries - jnp.clip(k, 1, num_entries)]
    return u, k > 0, kth_largest


def ll(logits, observed, scheme, rate):
    """LL-R / LL-Ct (section 4): BCE-with-logits terms where the largest unobserved losses are modified.

    base = BCE(x, o), corr = BCE(x, 1 - o), u = 1[o = 0] * base, k = ceil(B*C*rate),
    t = k-th largest u, M = {u >= t} (ties at t are all modified, so M may exceed k entries).
    'R' (rejection) puts 0 on M, 'Ct' (temporary correction) puts corr on M; loss = mean_bc(terms).
    M is chosen over the whole batch, so reduce the terms over the batch they were computed on.
    rate = 1 - clean_rate (see loss_schedules.ll_rate); rate 0 (epoch 1) modifies nothing. As in the
    official code, if t = 0 the observed positives are in M too (unreachable at realistic rates).

    LL-Cp (intended version, first commit ac475fe) is ll(..., 'Ct', delta_rel) in epochs >= 2 (a fixed
    k = ceil(B*C*delta_rel), not the growing schedule; rate 0 in epoch 1) plus ll_cp_flips written
    into the observed table after the step. The released LL-Cp behaves like LL-Ct (see ll_cp_flips);
    that bug is not reproduced.

    scheme must be static under jit; rate may be traced. Precision caveat: the official k is
    ceil in float64 of a rate built by repeated float64 subtraction (e.g. 320 * 0.025000000000000022
    = 8.000000000000007 -> k = 9), which float32 rounds to an exact integer (k = 8). With x64 off this
    happens only where B*C*rate is an integer in exact arithmetic; loss_schedules.ll_num_modified gives
    the official k.
    """
    if scheme not in LL_SCHEMES:
        raise ValueError(f'Unknown LL scheme {scheme!r}; valid: {LL_SCHEMES} (LL-Cp = "Ct" + ll_cp_flips)')
    x = _as_float(logits)
    base, corrected = _ll_base_and_corrected(x, observed)
    u, do_modify, threshold = _ll_selection(base, observed, rate)
    modified = do_modify & (u >= threshold)
    replacement = jnp.zeros_like(base) if scheme == 'R' else corrected
    return jnp.where(modified, replacement, base)


def ll_cp_flips(logits, observed, rate):
    """Intended LL-Cp permanent corrections (section 4): a bool (B, C) mask of entries with u > t.

    Call with rate = delta_rel (k = ceil(B*C*delta_rel) fixed, epochs >= 2) on the logits of the
    training step; after the optimiser step the trainer writes o = 1 at these entries of the
    dataset's observed table, so they are observed positives from the next epoch. Strictly above
    the k-th value: with no ties that is at most k - 1 entries (always within U, since u = 0 on P).

    Released-code quirk: HEAD tests `P['mod_scheme'] is 'LL-Cp'`; a string from argv is not the
    interned literal, so `is` is False, both the fixed k and the write are skipped, and released
    LL-Cp behaves exactly like LL-Ct. This project implements the intended version instead.
    """
    x = _as_float(logits)
    base, _ = _ll_base_and_corrected(x, observed)
    u, do_modify, threshold = _ll_selection(base, observed, rate)
    return do_modify & (u > threshold)


# ----------------------------------------------------------------------------------------------
# Zhou et al., EM and APL (section 5)


def _entropy(p):
    """H_e(p) = p nl_e(p) + (1 - p) nl_e(1 - p) with Cole's epsilon."""
    return p * neg_log(p) + (1.0 - p) * neg_log(1.0 - p)


def em(logits, observed, alpha):
    """EM (section 5): nl_e(p) on P, -alpha H_e(p) on U (entropy maximisation); mean_bc.

    The loss can be negative; the entropy term has no stop-gradient.
    """
    p = jax.nn.sigmoid(_as_float(logits))
    pos, unobs = _masks(observed)
    return jnp.where(pos, neg_log(p), 0.0) + jnp.where(unobs, -alpha * _entropy(p), 0.0)


def em_apl(logits, observed, alpha, beta):
    """EM + APL (section 5): EM on o in {1, 0}, plus beta * soft BCE toward s on o = -s < 0; mean_bc.

    Soft negatives are stored in observed as -s (s = the probability when pseudo-labelled, see
    loss_schedules.apl_update); observed is read as float32, so s is the float32-rounded stored value.
    """
    x = _as_float(logits)
    p = jax.nn.sigmoid(x)
    o = jnp.asarray(observed).astype(x.dtype)
    pos, unobs = _masks(o)
    s = -o
    soft_bce = s * neg_log(p) + (1.0 - s) * neg_log(1.0 - p)
    return (
            jnp.where(pos, neg_log(p), 0.0)
            + jnp.where(unobs, -alpha * _entropy(p), 0.0)
            + jnp.where(o < 0, beta * soft_bce, 0.0)
    )


# ----------------------------------------------------------------------------------------------
# Chen et al., GR loss (section 6)


def gr(
        logits,
        observed,
        epoch,
        num_epochs,
        linear_init_epochs=0,
        beta=(0, 2, -2, -2),
        alpha=(0.5, 2, 0.8, 0.5),
        q2=0.01,
        q3=1.0,
):
    """GR loss (section 6): -log(p + 1e-7) on P; on U v [k L1(p; q2) + (1 - k) L2(p; q3)]; mean_bc.

    L1 = (1 - p^q2)/q2 treats the entry as positive, L2 = (1 - (1-p)^q3)/q3 as negative;
    k = sigmoid(w sg(p) + b) and v = exp(-0.5 ((sg(p) - mu)/sigma)^2) use the detached p, so the
    gradient flows through L1 and L2 only. epoch (1-based) may be traced.

    p^q and (1-p)^q are evaluated as exp(q log_sigmoid(+-x)): the same function, but finite in
    value and gradient where float32 sigmoid underflows to 0 (torch's p**q gives inf * 0 = nan there).
    """
    w, b, mu, sigma = loss_schedules.gr_schedule(epoch, num_epochs, linear_init_epochs, beta, alpha)
    return gr_from_schedule(logits, observed, w, b, mu, sigma, q2=q2, q3=q3)


def gr_from_schedule(logits, observed, w, b, mu, sigma, q2=0.01, q3=1.0):
    """GR loss (section 6) at schedule values (w, b, mu, sigma) = loss_schedules.gr_schedule(epoch, ...).

    The trainer computes the schedule on the host once per epoch and passes the four values as traced
    scalars; gr(...) is this function after loss_schedules.gr_schedule.
    """
    x = _as_float(logits)
    p = jax.nn.sigmoid(x)
    p_fixed = jax.lax.stop_gradient(p)
    soft_label = jax.nn.sigmoid(w * p_fixed + b)
    weight = jnp.exp(-0.5 * ((p_fixed - mu) / sigma) ** 2)
    treat_positive = -jnp.expm1(q2 * jax.nn.log_sigmoid(x)) / q2
    treat_negative = -jnp.expm1(q3 * jax.nn.log_sigmoid(-x)) / q3
    pos, unobs = _masks(observed)
    unobserved_term = weight * (soft_label * treat_positive + (1.0 - soft_label) * treat_negative)
    return jnp.where(pos, neg_log(p, GR_EPS), 0.0) + jnp.where(unobs, unobserved_term, 0.0)


# ----------------------------------------------------------------------------------------------
# Zhang et al., Hill and SPLC (section 7)


def hill(logits, observed, lamb=1.5, margin=1.0, gamma=2.0):
    """Hill (section 7): focal-margin BCE on y = 1, (lamb - p) p^2 on y = 0; reduce ('sum' officially).

    Positive: -(1 - sigmoid(x - m))^gamma log sigmoid(x - m). The official code takes torch.log of
    the sigmoid; log_sigmoid is used here (equal up to float32 rounding) so the loss stays finite
    where sigmoid(x - m) underflows (the official gives inf, and nan on negatives via 0 * log 0).
    Unobserved entries are negatives; no stop-gradient (the focal weight is differentiated too).
    """
    x = _as_float(logits)
    pos, _ = _masks(observed)
    shifted = x - margin
    positive = -((1.0 - jax.nn.sigmoid(shifted)) ** gamma) * jax.nn.log_sigmoid(shifted)
    p = jax.nn.sigmoid(x)
    negative = (lamb - p) * p**2
    return jnp.where(pos, positive, negative)


def splc(logits, observed, epoch, tau=0.6, change_epoch=1, margin=1.0, gamma=2.0):
    """SPLC (section 7): focal BCE-with-logits with a margin on positives and pseudo-positives.

    x' = x - m on y = 1; from epoch >= change_epoch (0-based, may be traced) y' = 1 where
    sigmoid(x') > tau (re-decided every batch, nothing stored; pseudo-positives keep x' = x).
    q = sigmoid(x'), w = ((1 - q) y' + q (1 - y'))^gamma (negatives get q^gamma too),
    L = -w [y' logsigmoid(x') + (1 - y') logsigmoid(-x')]; reduce ('sum' officially).

    L is w BCE(x', y'), written as a select of log_sigmoid(+-x') rather than a call of
    gc.bce_with_logits: with the same per-entry values, XLA's fused sum of a rewritten expression
    differs in the last bit on some inputs, and this project's earlier SPLC losses would change.
    """
    x = _as_float(logits)
    pos, _ = _masks(observed)
    shifted = jnp.where(pos, x - margin, x)
    q = jax.nn.sigmoid(shifted)
    target = pos | ((epoch >= change_epoch) & (q > tau))
    focal_weight = jnp.where(target, 1.0 - q, q) ** gamma
    log_likelihood = jnp.where(target, jax.nn.log_sigmoid(shifted), jax.nn.log_sigmoid(-shifted))
    return -focal_weight * log_likelihood


# ----------------------------------------------------------------------------------------------
# Upper bound


def full(logits, observed):
    """BCE-with-logits (log-sigmoid form) on the FULL 0/1 labels (the upper bound); mean_bc.

    Here `observed` is the full label matrix; every entry has a target.
    """
    return gc.bce_with_logits(_as_float(logits), observed)


# ----------------------------------------------------------------------------------------------
# Lookup


LOSSES = {
        'an': an,
        'an_ls': an_ls,
        'wan': wan,
        'epr': epr,
        'role': role,
        'll': ll,
        'em': em,
        'em_apl': em_apl,
        'gr': gr,
        'hill': hill,
        'splc': splc,
        'full': full,
}
