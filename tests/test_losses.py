"""Tests for adagc_jax.losses (and loss_schedules) against the test vectors of BASELINES.md section 10.

The losses return per-entry (B, C) terms; the vectors are the official scalars, i.e. the terms reduced
as methods.py reduces them (mean_bc; Hill/SPLC: reduce(..., 'sum'); EPR/ROLE: mean_bc + regulariser).
The reference numbers were computed in float64 from the spec; float32 must match to rtol 1e-5,
except vector C (1 - sigmoid(12) loses precision in float32), which uses rtol 2e-3.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adagc_jax import config_utils, gc, loss_schedules, losses

RTOL = 1e-5
RTOL_C = 2e-3


def _one_hot_rows(shape, positions):
    observed = np.zeros(shape, np.float32)
    for row, col in positions:
        observed[row, col] = 1.0
    return observed


# Section 10 inputs: (logits, observed).
A = (
    np.array([[2.0, -1.0, 0.5, -3.0], [-0.5, 1.5, -2.0, 0.0]], np.float32),
    np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32),
)
B = (
    np.array([[0.3, -0.7, 1.2], [-2.5, 0.8, 0.1], [4.0, -4.0, -0.2]], np.float32),
    np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32),
)
C = (
    np.array([[12, -12, 0], [-12, 12, 30]], np.float32),
    np.array([[1, 0, 0], [0, 0, 1]], np.float32),
)
D = (
    np.array(
        [
            [1.2, -0.4, 2.2, -1.5, 0.7],
            [-2.0, 0.9, -0.3, 1.8, -1.1],
            [0.0, 3.0, -2.6, 0.4, 1.6],
            [-0.8, -1.3, 0.6, -0.1, 2.4],
        ],
        np.float32,
    ),
    _one_hot_rows((4, 5), [(0, 0), (1, 3), (2, 1), (3, 4)]),
)
E = (
    np.array([[1.0, 0.5, 0.5], [0.5, 2.0, -1.0]], np.float32),
    np.array([[1, 0, 0], [0, 1, 0]], np.float32),
)
VECTORS = {'A': A, 'B': B, 'C': C, 'D': D, 'E': E}

QA = np.array([[0.9, 0.3, 0.55, 0.1], [0.45, 0.95, 0.2, 0.6]])
QB = np.array([[0.5, 0.4, 0.995], [0.995, 0.52, 0.41], [0.7, 0.995, 0.3]])


def _logit32(q):
    return np.log(q / (1.0 - q)).astype(np.float32)


def _rtol(name):
    return RTOL_C if name == 'C' else RTOL


def _check(value, expected, rtol=RTOL):
    assert jnp.asarray(value).dtype == jnp.float32
    np.testing.assert_allclose(float(value), expected, rtol=rtol)


def _official(name, terms, reduction='sum'):
    """The official scalar of a loss's output (BASELINES.md section 11), reduced as methods.py does."""
    if name in ('epr', 'role'):
        per_entry, regulariser = terms
        return losses.mean_bc(per_entry) + regulariser
    if name in ('hill', 'splc'):
        return losses.reduce(terms, reduction)
    return losses.mean_bc(terms)


def _loss(name, *args, reduction='sum', **kwargs):
    return _official(name, losses.LOSSES[name](*args, **kwargs), reduction)


# ----------------------------------------------------------------------------------------------
# Cole et al.


@pytest.mark.parametrize(
    'loss_name, kwargs, expected',
    [
        ('an', {}, {'A': 0.3697872277, 'B': 1.627587012, 'C': 1.954509482, 'D': 0.6319691892}),
        ('an_ls', {}, {'A': 0.4885320841, 'B': 1.520933554, 'C': 2.514190244, 'D': 0.6924664435}),
        ('wan', {}, {'A': 0.1506222180, 'B': 1.194883588, 'C': 0.9772535864, 'D': 0.1786787040}),
    ],
)
def test_cole_losses_match_vectors(loss_name, kwargs, expected):
    for name, value in expected.items():
        _check(_loss(loss_name, *VECTORS[name], **kwargs), value, _rtol(name))


def test_an_uses_epsilon_form_not_log_sigmoid():
    # On C the epsilon caps -log(1 - p) at ~11.5 (float32 official value 1.953946); log-sigmoid gives 2.1155.
    np.testing.assert_allclose(float(losses.mean_bc(losses.an(*C))), 1.953946, atol=2e-6)
    np.testing.assert_allclose(float(losses.mean_bc(losses.full(*C))), 2.115528626, rtol=RTOL)
    # AdaGC's own AN (gc.log_sigmoid_an_loss) is the log-sigmoid one: `full` on the observed matrix.
    np.testing.assert_allclose(float(gc.log_sigmoid_an_loss(*C)), 2.115528626, rtol=RTOL)


@pytest.mark.parametrize('name, k, expected', [('A', 1.5, 0.04731912195), ('B', 2.9, 0.9887818284),
                                               ('C', 1.5, 0.00694213515), ('D', 1.9, 0.05315647739)])
def test_epr_matches_vectors(name, k, expected):
    _check(_loss('epr', *VECTORS[name], expected_num_pos=k), expected, _rtol(name))


@pytest.mark.parametrize('inputs, q, k, expected', [(A, QA, 1.5, 0.5659400017), (A, QA, 2.9, 0.6147675492),
                                                    (B, QB, 1.5, 1.877470765)])
def test_role_total_matches_vectors(inputs, q, k, expected):
    _check(_loss('role', *inputs, label_logits=_logit32(q), expected_num_pos=k), expected)


def test_epr_and_role_return_per_entry_terms_and_a_batch_regulariser():
    terms, regulariser = losses.epr(*A, expected_num_pos=1.5)
    assert terms.shape == A[0].shape and regulariser.shape == ()
    # Only the observed positives have a per-entry term; R_k = ((1/B) sum p - k)^2 / C^2.
    np.testing.assert_array_equal(np.asarray(terms) != 0, A[1] == 1)
    p = 1.0 / (1.0 + np.exp(-A[0].astype(np.float64)))
    np.testing.assert_allclose(float(regulariser), (p.sum() / 2 - 1.5) ** 2 / 16, rtol=1e-6)
    terms, regulariser = losses.role(*A, label_logits=_logit32(QA), expected_num_pos=1.5)
    assert terms.shape == A[0].shape and regulariser.shape == ()


def test_role_gradients_follow_stop_gradient_placement():
    grad_x, grad_z = jax.grad(functools.partial(_loss, 'role'), argnums=(0, 2))(A[0], A[1], _logit32(QA), 1.5)
    expected_x = [[-7.61066909e-03, 6.69564404e-06, 6.85624471e-03, -2.83716567e-03],
                  [-2.20066129e-03, -1.82007122e-02, -4.00896433e-03, -3.77353995e-03]]
    expected_z = [[-0.00357379, 0.00538667, -0.00046813, 0.00476265],
                  [0.00858923, 0.00592879, 0.00767498, 0.01018724]]
    # atol covers float32 cancellation in the tiny (0,1) entry of dx (6.7e-6 out of sums of ~1e-2 terms).
    np.testing.assert_allclose(grad_x, expected_x, rtol=RTOL, atol=1e-8)
    np.testing.assert_allclose(grad_z, expected_z, rtol=1e-4, atol=1e-8)  # reference has 6 significant digits


def test_role_init_label_logits():
    observed = np.zeros((64, 20), np.float32)
    observed[:, 3] = 1.0
    observed[0, 5] = -1.0
    z = np.asarray(loss_schedules.role_init_label_logits(jax.random.key(0), observed))
    assert z.shape == (64, 20) and z.dtype == np.float32
    np.testing.assert_allclose(z[:, 3], np.log(0.995 / 0.005), rtol=1e-6)
    np.testing.assert_allclose(z[0, 5], np.log(0.005 / 0.995), rtol=1e-6)
    unobserved = z[observed == 0]
    a = np.log(1.5)  # logit(0.6)
    assert np.all(np.abs(unobserved) < a)
    assert unobserved.min() < -0.9 * a and unobserved.max() > 0.9 * a  # spread over (-a, a)
    again = loss_schedules.role_init_label_logits(jax.random.key(0), observed)
    other = loss_schedules.role_init_label_logits(jax.random.key(1), observed)
    np.testing.assert_array_equal(z, again)
    assert not np.allclose(z[observed == 0], np.asarray(other)[observed == 0])


def test_role_init_from_previous_estimates_is_clamped_logit():
    estimates = np.array([[0.0, 1.0, 0.5, 0.995]], np.float32)
    z = loss_schedules.role_init_label_logits(None, np.zeros((1, 4)), estimates=estimates)
    cap = np.log((1 - 1e-5) / 1e-5)
    np.testing.assert_allclose(z, [[-cap, cap, 0.0, np.log(0.995 / 0.005)]], rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Large Loss Matters


@pytest.mark.parametrize(
    'name, rate, loss_r, loss_ct, flips',
    [
        ('A', 0.25, 0.1613994154, 0.3073024360, [(0, 2)]),
        ('D', 0.0020000000000000018, 0.5167386106, 0.5219927766, []),
        ('D', 0.1, 0.4275435736, 0.4419927766, [(0, 2)]),
        ('E', 0.25, 0.1255752310, 0.3626137231, []),  # ties: 3 entries at t modified although k = 1
        ('A', 0.0, 0.3698024360, 0.3698024360, []),  # epoch 1: no modification
    ],
)
def test_ll_matches_table(name, rate, loss_r, loss_ct, flips):
    logits, observed = VECTORS[name]
    _check(losses.mean_bc(losses.ll(logits, observed, 'R', rate)), loss_r)
    _check(losses.mean_bc(losses.ll(logits, observed, 'Ct', rate)), loss_ct)
    flip_mask = losses.ll_cp_flips(logits, observed, rate)
    assert flip_mask.dtype == jnp.bool_
    assert [tuple(ij) for ij in np.argwhere(np.asarray(flip_mask))] == flips


def test_ll_terms_reject_or_correct_the_largest_unobserved_entries():
    # A at rate 0.25: k = 2; the two largest unobserved BCE terms, (0, 2) and (1, 3), are modified.
    logits, observed = A
    base = np.where(observed == 1, np.logaddexp(0, -logits), np.logaddexp(0, logits))
    corrected = np.where(observed == 1, np.logaddexp(0, logits), np.logaddexp(0, -logits))
    modified = np.zeros_like(observed, bool)
    modified[0, 2] = modified[1, 3] = True
    np.testing.assert_allclose(losses.ll(logits, observed, 'R', 0.25), np.where(modified, 0.0, base), rtol=1e-6)
    np.testing.assert_allclose(losses.ll(logits, observed, 'Ct', 0.25), np.where(modified, corrected, base),
                               rtol=1e-6)


def test_ll_rate_reproduces_float64_subtraction():
    assert loss_schedules.ll_rate(1, 0.002) == 0.0
    assert loss_schedules.ll_rate(2, 0.002) == 0.0020000000000000018
    expected_k = [0, 1, 2, 2, 3, 4, 4, 5, 6, 6]
    k = [loss_schedules.ll_num_modified(320, loss_schedules.ll_rate(e, 0.002)) for e in range(1, 11)]
    assert k == expected_k
    # The float64 artefact of the official code: 320 * 0.025000000000000022 -> k = 9, not 8.
    assert loss_schedules.ll_num_modified(320, loss_schedules.ll_rate(6, 0.005)) == 9
    with pytest.raises(ValueError, match='1-based'):
        loss_schedules.ll_rate(0, 0.002)


def test_ll_schedule_with_traced_rate_does_not_retrace():
    # PASCAL-sized batch (B*C = 320) with distinct unobserved losses, so the number of entries with
    # u > t is exactly k - 1 and LL-R's loss is the mean with the k largest unobserved losses zeroed.
    batch_size, num_classes = 16, 20
    logits = np.linspace(-3.0, 3.0, batch_size * num_classes, dtype=np.float32)
    logits = np.random.default_rng(0).permutation(logits).reshape(batch_size, num_classes)
    observed = _one_hot_rows((batch_size, num_classes), [(b, b % num_classes) for b in range(batch_size)])
    base = np.where(observed == 1, np.logaddexp(0, -logits), np.logaddexp(0, logits))
    unobserved_desc = np.sort(base[observed == 0])[::-1]

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(logits, observed, rate):
        return losses.mean_bc(losses.ll(logits, observed, 'R', rate)), losses.ll_cp_flips(logits, observed, rate)

    for epoch, k in zip(range(1, 11), [0, 1, 2, 2, 3, 4, 4, 5, 6, 6]):
        rate = jnp.float32(loss_schedules.ll_rate(epoch, 0.002))
        loss_r, flips = step(logits, observed, rate)
        assert int(flips.sum()) == max(k - 1, 0)
        expected = (base.sum() - unobserved_desc[:k].sum()) / base.size
        np.testing.assert_allclose(float(loss_r), expected, rtol=1e-6)


def test_ll_unknown_scheme_lists_valid_ones():
    with pytest.raises(ValueError, match="'R', 'Ct'"):
        losses.ll(*A, scheme='Cp', rate=0.1)


# ----------------------------------------------------------------------------------------------
# EM and APL


@pytest.mark.parametrize('name, alpha, expected', [('A', 0.1, 0.001575666123), ('B', 0.2, 0.6864769691),
                                                   ('C', 0.1, -0.01155762591), ('D', 0.01, 0.02314674265)])
def test_em_matches_vectors(name, alpha, expected):
    _check(_loss('em', *VECTORS[name], alpha=alpha), expected, _rtol(name))


OBS_B_SOFT = np.array([[0, -0.05, 1], [1, 0, -0.2], [-0.01, 1, 0]], np.float32)
OBS_D_SOFT = D[1].copy()
OBS_D_SOFT[0, 3], OBS_D_SOFT[1, 0], OBS_D_SOFT[2, 2], OBS_D_SOFT[3, 1] = -0.03, -0.1, -0.002, -0.25


@pytest.mark.parametrize(
    'logits, observed, alpha, beta, expected',
    [
        (B[0], OBS_B_SOFT, 0.1, 0.9, 1.254091912),
        (B[0], OBS_B_SOFT, 0.2, 0.02, 0.7293970293),
        (D[0], OBS_D_SOFT, 0.1, 0.2, 0.003447512019),
        (A[0], A[1], 0.1, 0.9, 0.001575666123),  # no soft entries: equals EM
    ],
)
def test_em_apl_matches_table(logits, observed, alpha, beta, expected):
    _check(_loss('em_apl', logits, observed, alpha=alpha, beta=beta), expected)


def test_apl_update_selection_vector():
    probs = np.array([0.30, 0.05, 0.90, 0.12, 0.01, 0.40, 0.07, 0.20], np.float32)
    observed = np.array([0, 0, 1, 0, -0.02, 0, 0, 0], np.float32)
    # Column 1 repeats the vector with U^0 = 4: n = int(0.9 * 4 / 2) = int(1.8) = 1.
    new = loss_schedules.apl_update(np.stack([probs, probs], 1), np.stack([observed, observed], 1),
                                    initial_unobserved_counts=[7, 4], neg_proportion=0.9, num_epochs=10, warmup=8)
    assert new.dtype == np.float32
    np.testing.assert_array_equal(new[:, 0], np.float32([0, -0.05, 1, -0.12, -0.02, 0, -0.07, 0]))
    np.testing.assert_array_equal(new[:, 1], np.float32([0, -0.05, 1, 0, -0.02, 0, 0, 0]))
    # Next epoch: pseudo-labelled entries are never re-selected, so the remaining zeros are taken
    # (n = 3 but only three zeros are left in column 0).
    again = loss_schedules.apl_update(np.stack([probs, probs], 1), new, [7, 4], 0.9, 10, 8)
    np.testing.assert_array_equal(again[:, 0], np.float32([-0.30, -0.05, 1, -0.12, -0.02, -0.40, -0.07, -0.20]))
    np.testing.assert_array_equal(again[:, 1], np.float32([0, -0.05, 1, 0, -0.02, 0, -0.07, 0]))
    # Column 0 has no zero left: nothing changes (the observed positive is never overwritten).
    third = loss_schedules.apl_update(np.stack([probs, probs], 1), again, [7, 4], 0.9, 10, 8)
    np.testing.assert_array_equal(third[:, 0], again[:, 0])
    with pytest.raises(ValueError, match='warmup'):
        loss_schedules.apl_update(probs[:, None], observed[:, None], [7], 0.9, 5, 5)


# ----------------------------------------------------------------------------------------------
# GR


@pytest.mark.parametrize('epoch, expected', [(1, (0, -2, 0.5375, 1.8125)), (2, (0.25, -2, 0.575, 1.625)),
                                             (4, (0.75, -2, 0.65, 1.25)), (8, (1.75, -2, 0.8, 0.5))])
def test_gr_schedule_table(epoch, expected):
    schedule = loss_schedules.gr_schedule(epoch, 8)
    np.testing.assert_allclose([float(v) for v in schedule], expected, rtol=1e-6, atol=1e-7)


def test_gr_schedule_with_linear_init_epochs():
    # n = 2 frozen epochs: a(e), c(e) start counting after them, over T - n = 6 epochs.
    w, b, mu, sigma = loss_schedules.gr_schedule(4, 8, linear_init_epochs=2)
    np.testing.assert_allclose([float(w), float(b), float(mu), float(sigma)],
                               [2 * 1 / 6, -2, 0.5 + 0.3 * 2 / 6, 2 - 1.5 * 2 / 6], rtol=1e-6)


@pytest.mark.parametrize('name, epoch, expected', [('A', 1, 0.3776561954), ('B', 8, 1.075845468),
                                                   ('C', 1, 0.6591891809), ('D', 4, 0.4319849097)])
def test_gr_matches_vectors(name, epoch, expected):
    _check(_loss('gr', *VECTORS[name], epoch=epoch, num_epochs=8), expected, _rtol(name))


def test_gr_gradient_holds_k_and_v_constant():
    grad = jax.grad(functools.partial(_loss, 'gr'))(A[0], A[1], 1, 8)
    expected = [[-0.01490036, 0.01077703, 0.02025267, -0.00847795],
                [0.01662399, -0.02280319, -0.00125439, 0.02012188]]
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)


def test_gr_and_splc_accept_traced_epoch():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def gr_d(epoch):
        return _loss('gr', *D, epoch=epoch, num_epochs=8)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def splc_a(epoch):
        return _loss('splc', *A, epoch=epoch)

    _check(gr_d(jnp.int32(4)), 0.4319849097)
    _check(gr_d(jnp.int32(1)), float(_loss('gr', *D, epoch=1, num_epochs=8)))
    _check(splc_a(jnp.int32(0)), 0.7330743382)
    _check(splc_a(jnp.int32(1)), 0.4232362279)


# ----------------------------------------------------------------------------------------------
# Hill, SPLC


@pytest.mark.parametrize('name, expected', [('A', 0.9521607446), ('B', 10.18763553), ('C', 0.7500000001),
                                            ('D', 3.739651253)])
def test_hill_matches_vectors(name, expected):
    logits, observed = VECTORS[name]
    _check(losses.reduce(losses.hill(logits, observed), 'sum'), expected)
    _check(losses.reduce(losses.hill(logits, observed), 'mean'), expected / logits.size)


@pytest.mark.parametrize('name, epoch, expected', [('A', 0, 0.7330743382), ('A', 1, 0.4232362279),
                                                   ('B', 1, 9.075346550), ('D', 0, 5.725209992),
                                                   ('D', 1, 1.203818385)])
def test_splc_matches_table(name, epoch, expected):
    logits, observed = VECTORS[name]
    _check(losses.reduce(losses.splc(logits, observed, epoch), 'sum'), expected)
    _check(losses.reduce(losses.splc(logits, observed, epoch), 'mean'), expected / logits.size)


def test_splc_correction_equals_observing_the_entry_without_margin():
    # In A at epoch 1 only (0,2) passes sigmoid(0.5) > 0.6; it becomes a positive that keeps x' = x,
    # i.e. a positive with margin 0 at that one entry. Check against the epoch-0 loss pieces.
    logits, observed = A
    corrected = losses.reduce(losses.splc(logits, observed, 1), 'sum')
    x = logits[0, 2]
    q = 1.0 / (1.0 + np.exp(-x))
    as_negative = -(q**2) * np.log(1.0 - q)
    as_positive = -((1.0 - q) ** 2) * np.log(q)
    np.testing.assert_allclose(float(corrected), 0.7330743382 - as_negative + as_positive, rtol=1e-5)


def test_unknown_reduction_lists_valid_ones():
    with pytest.raises(ValueError, match="'sum', 'mean'"):
        losses.reduce(losses.hill(*A), 'none')


# ----------------------------------------------------------------------------------------------
# full, LOSSES


def test_full_is_log_sigmoid_bce_mean():
    _check(losses.mean_bc(losses.full(*A)), 0.3698024360)
    labels = np.array([[1, 0, 1, 0], [1, 1, 0, 1]], np.float32)
    x = A[0].astype(np.float64)
    expected = np.mean(labels * np.logaddexp(0, -x) + (1 - labels) * np.logaddexp(0, x))
    _check(losses.mean_bc(losses.full(A[0], labels)), expected)


EXTREME_LOGITS = np.array([[1e4, -1e4, 0.0, 50.0], [-50.0, 1e4, -1e4, 20.0], [-1e4, 1e4, 90.0, -90.0]], np.float32)
EXTREME_OBSERVED = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], np.float32)
EXTREME_SOFT = np.array([[1, -0.3, 0, 0], [0, 1, -0.01, 0], [1, 0, 0, -0.5]], np.float32)
LOSS_KWARGS = {
    'an': {},
    'an_ls': {'ls_coef': 0.1},
    'wan': {},
    'epr': {'expected_num_pos': 1.5},
    'role': {'label_logits': EXTREME_LOGITS[::-1], 'expected_num_pos': 1.5},
    'll': {'scheme': 'Ct', 'rate': 0.3},
    'em': {'alpha': 0.1},
    'em_apl': {'alpha': 0.1, 'beta': 0.9},
    'gr': {'epoch': 3, 'num_epochs': 8},
    'hill': {},
    'splc': {'epoch': 1},
    'full': {},
}


def test_losses_registry_is_complete():
    assert sorted(losses.LOSSES) == sorted(LOSS_KWARGS)
    assert config_utils.lookup(losses.LOSSES, 'gr', 'loss') is losses.gr
    with pytest.raises(config_utils.ConfigError, match="loss='asl' is not valid; valid values: .*'an_ls'"):
        config_utils.lookup(losses.LOSSES, 'asl', 'loss')


@pytest.mark.parametrize('name', sorted(LOSS_KWARGS))
def test_every_loss_returns_float32_per_entry_terms(name):
    observed = EXTREME_SOFT if name == 'em_apl' else EXTREME_OBSERVED
    out = losses.LOSSES[name](EXTREME_LOGITS, observed, **LOSS_KWARGS[name])
    terms = out[0] if name in ('epr', 'role') else out
    assert terms.shape == EXTREME_LOGITS.shape and terms.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(terms)))


def test_mean_bc_is_jnp_mean_of_all_entries():
    # The scalar losses were jnp.mean of the same matrix; a sum / (B*C) may differ in the last bit.
    terms = losses.an(*D)
    assert np.asarray(losses.mean_bc(terms)).tobytes() == np.asarray(jnp.mean(terms)).tobytes()
    np.testing.assert_allclose(float(losses.mean_bc(terms)), float(np.sum(terms)) / terms.size, rtol=1e-6)


@pytest.mark.parametrize('name', sorted(LOSS_KWARGS))
def test_every_loss_jits_and_is_finite_for_extreme_logits(name):
    observed = EXTREME_SOFT if name == 'em_apl' else EXTREME_OBSERVED
    loss = jax.jit(jax.value_and_grad(functools.partial(_loss, name, **LOSS_KWARGS[name])))
    value, grad = loss(EXTREME_LOGITS, observed)
    assert value.shape == () and value.dtype == jnp.float32
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(grad)))
