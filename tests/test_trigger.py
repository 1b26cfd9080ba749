"""Tests of adagc_jax.trigger (METHOD.md sections 6 and 6b)."""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize

from adagc_jax import trigger as trigger_lib
from adagc_jax.trigger import (
    DEFAULT_ACT_WINDOWS,
    TRIGGER_RULES,
    AdaptiveTrigger,
    act_decision,
    act_scan,
    act_trigger_epoch,
    least_squares_slope,
    nonnegative_slope,
)

# Observed-positive fit from a near-zero head: falls from 0.5, plateaus
# (end of early learning), then rises (memorisation).
FALL_PLATEAU_RISE = [0.5, 0.4, 0.3, 0.25, 0.24, 0.24, 0.24, 0.3, 0.4, 0.5]


def _run(trigger, values):
    """Feeds values epoch by epoch; returns the gc weight after each epoch."""
    weights = []
    for value in values:
        trigger.update(value)
        weights.append(trigger.gc_weight())
    return weights


def test_least_squares_slope_matches_polyfit():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5):
        y = rng.normal(size=n)
        np.testing.assert_allclose(least_squares_slope(y), np.polyfit(np.arange(1, n + 1), y, 1)[0])


def test_slope_rule_fires_on_the_plateau():
    trigger = AdaptiveTrigger(rule='slope', window=3, eps=0.1, min_epochs=2, max_epochs=10)
    assert trigger.gc_weight() == 0.0
    weights = _run(trigger, FALL_PLATEAU_RISE)
    # By hand, r_e = (a_e - a_{e-2}) / 2 for window 3:
    #   e3: -0.1 (R = 0.1)   e4: -0.075   e5: -0.03   all > eps R = 0.01
    #   e6: (0.24 - 0.25) / 2 = -0.005 <= 0.01 -> fires after epoch 6, GC on from epoch 7.
    np.testing.assert_allclose(trigger.slopes[2:6], [-0.1, -0.075, -0.03, -0.005], atol=1e-12)
    assert trigger.slopes[:2] == [None, None]
    assert trigger.fired_epoch == 6
    assert weights == [0.0] * 5 + [1.0] * 5
    assert trigger.history == FALL_PLATEAU_RISE
    np.testing.assert_allclose(trigger.max_abs_slope, 0.1)  # the rise (0.1 / epoch at most) ties it


def test_monotone_rising_curve_fires_at_max_epochs():
    trigger = AdaptiveTrigger(rule='slope', window=3, eps=0.1, min_epochs=2, max_epochs=7)
    weights = _run(trigger, [0.1 * e for e in range(1, 11)])
    # Constant slope 0.1 = R: never levels off, so max_epochs decides.
    assert trigger.fired_epoch == 7
    assert weights == [0.0] * 6 + [1.0] * 4


def test_min_epochs_is_respected():
    values = [0.5, 0.2, 0.19, 0.19, 0.19, 0.19]
    # Window 2: r_2 = -0.3 (R = 0.3), r_3 = -0.01 <= 0.03 already levelled off ...
    early = AdaptiveTrigger(rule='slope', window=2, eps=0.1, min_epochs=2)
    _run(early, values)
    assert early.fired_epoch == 3
    # ... but not allowed before epoch 5.
    late = AdaptiveTrigger(rule='slope', window=2, eps=0.1, min_epochs=5)
    weights = _run(late, values)
    assert late.fired_epoch == 5
    assert weights == [0.0] * 4 + [1.0] * 2


def test_window_is_respected():
    values = [0.5, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    # Window 3: r_3 = -0.2 (R), r_4 = -0.1, r_5 = 0 -> fires after epoch 5.
    three = AdaptiveTrigger(rule='slope', window=3)
    _run(three, values)
    assert three.fired_epoch == 5
    # Window 5: r_5 = -1.0 / 10 = -0.1 (R), r_6 = -0.4 / 10 = -0.04 > 0.01, r_7 = 0 -> epoch 7.
    five = AdaptiveTrigger(rule='slope', window=5)
    _run(five, values)
    assert five.slopes[:4] == [None] * 4
    np.testing.assert_allclose(five.slopes[4:7], [-0.1, -0.04, 0.0], atol=1e-12)
    assert five.fired_epoch == 7


def test_fixed_never_always():
    fixed = AdaptiveTrigger(rule='fixed', epoch=4)
    assert fixed.gc_weight() == 0.0
    assert _run(fixed, FALL_PLATEAU_RISE[:6]) == [0, 0, 0, 1, 1, 1]
    assert fixed.fired_epoch == 4

    never = AdaptiveTrigger(rule='never', max_epochs=2)
    assert _run(never, FALL_PLATEAU_RISE + [0.1 * e for e in range(10)]) == [0.0] * 20
    assert never.fired_epoch is None

    always = AdaptiveTrigger(rule='always')
    assert always.fired_epoch == 0
    assert always.gc_weight() == 1.0
    assert _run(always, FALL_PLATEAU_RISE[:3]) == [1.0] * 3
    assert always.fired_epoch == 0


def test_rampup_weights():
    # Fires after epoch 2; GC epochs 3, 4, 5 get 1/3, 2/3, 1.
    fixed = AdaptiveTrigger(rule='fixed', epoch=2, rampup_epochs=3)
    np.testing.assert_allclose(_run(fixed, [0.0] * 6), [0, 1 / 3, 2 / 3, 1, 1, 1])
    # 'always' ramps from the first epoch.
    always = AdaptiveTrigger(rule='always', rampup_epochs=2)
    assert always.gc_weight() == 0.5
    assert _run(always, [0.0, 0.0]) == [1.0, 1.0]
    # The slope rule of the plateau curve fires after epoch 6.
    slope = AdaptiveTrigger(rule='slope', rampup_epochs=4)
    np.testing.assert_allclose(_run(slope, FALL_PLATEAU_RISE),
                               [0, 0, 0, 0, 0, 0.25, 0.5, 0.75, 1, 1])


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -np.inf])
def test_non_finite_signal_names_the_epoch(bad):
    trigger = AdaptiveTrigger()
    _run(trigger, [0.5, 0.4])
    with pytest.raises(ValueError, match='epoch 3'):
        trigger.update(bad)
    assert trigger.history == [0.5, 0.4]


def test_invalid_configs():
    with pytest.raises(ValueError, match="'slope', 'fixed', 'never', 'always', 'act'"):
        AdaptiveTrigger(rule='plateau')
    assert TRIGGER_RULES == ('slope', 'fixed', 'never', 'always', 'act')
    with pytest.raises(ValueError, match='fixed'):
        AdaptiveTrigger(rule='fixed')
    with pytest.raises(ValueError, match='window'):
        AdaptiveTrigger(window=1)
    with pytest.raises(ValueError, match='act_windows'):
        AdaptiveTrigger(rule='act', act_windows=(1, 3))
    with pytest.raises(ValueError, match='act_windows'):
        AdaptiveTrigger(rule='act', act_windows=())


@pytest.mark.parametrize('stop_after', [1, 4, 6, 8])
def test_state_dict_round_trip_mid_run(stop_after):
    def make():
        return AdaptiveTrigger(rule='slope', window=3, eps=0.1, min_epochs=2, max_epochs=9, rampup_epochs=3)

    # Signals arrive as numpy scalars too; the state must still be plain JSON.
    values = [np.float32(v) if i % 2 else v for i, v in enumerate(FALL_PLATEAU_RISE)]
    uninterrupted = make()
    uninterrupted_weights = _run(uninterrupted, values)

    first = make()
    _run(first, values[:stop_after])
    saved = json.loads(json.dumps(first.state_dict()))
    # Restoring into a differently configured object must restore the config too.
    resumed = AdaptiveTrigger(rule='never', window=7, eps=0.5)
    resumed.load_state_dict(saved)
    assert resumed.state_dict() == first.state_dict()
    assert resumed.gc_weight() == uninterrupted_weights[stop_after - 1]
    later_weights = _run(resumed, values[stop_after:])

    assert later_weights == uninterrupted_weights[stop_after:]
    assert resumed.fired_epoch == uninterrupted.fired_epoch == 6
    assert resumed.state_dict() == uninterrupted.state_dict()  # history, slopes, R: bit-identical


def test_trigger_module_does_not_import_jax():
    # Loads the module file alone, so the check is about trigger.py, not the package __init__.
    code = ('import importlib.util, sys\n'
            'spec = importlib.util.spec_from_file_location("trigger", sys.argv[1])\n'
            'spec.loader.exec_module(importlib.util.module_from_spec(spec))\n'
            'print("jax" in sys.modules)')
    path = pathlib.Path(__file__).resolve().parents[1] / 'adagc_jax' / 'trigger.py'
    proc = subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'False'


# ---------------------------------------------------------------------------------------------------------------
# Rule 'act' (METHOD.md section 6b)


def _reference_act(values, windows):
    """METHOD.md 6b in straight loops, written apart from the module (no helper of adagc_jax.trigger).

    Returns (detected_epoch, fired_epoch, dep, mid, (A, B, G)) or None when no epoch detects.
    """
    beta = sum(windows) / len(windows)
    slopes = {w: [] for w in windows}
    detected = {w: 0 for w in windows}
    for n in range(1, len(values) + 1):
        for w in windows:
            if n < w:
                continue
            xs = list(range(n - w + 1, n + 1))
            ys = [float(v) for v in values[n - w:n]]
            x_mean, y_mean = sum(xs) / w, sum(ys) / w
            ols = (sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys))
                   / sum((x - x_mean) ** 2 for x in xs))
            r = max(0.0, ols)
            slopes[w].append(r)
            smallest = min(slopes[w])
            if smallest < r:
                ind = slopes[w].index(smallest) + w  # first window with the smallest slope, its last epoch
                if n - ind > beta:
                    detected[w] = ind
        if all(detected[w] > 0 for w in windows):
            dep = int(sum(detected.values()) / len(windows))
            xs = np.arange(1, dep + 1, dtype=np.float64)
            (a, b, g), _ = scipy.optimize.curve_fit(lambda x, a, b, g: a * (1 - np.exp(-b * x ** g)), xs,
                                                    np.asarray(values[:dep], np.float64), p0=(1, 0.5, 0.5),
                                                    method='trf', bounds=([0, 0, 0], [1, np.inf, 1]))
            curve = [a * (1 - math.exp(-b * x ** g)) for x in range(1, dep + 1)]
            thr = (curve[-1] - curve[0]) / (dep - 1)
            mid = 0
            for x in range(1, dep + 1):
                if a * g * b * math.exp(-b * x ** g) * x ** (g - 1) > thr:
                    mid += 1
            return n, (dep + mid) // 2, dep, mid, (a, b, g)
    return None


def _rise_plateau_rise(rng, num_epochs=40):
    """Accuracy-like fit to noisy labels: fast early learning, a plateau, memorisation from epoch t2 on."""
    x = np.arange(1, num_epochs + 1)
    level, tau = rng.uniform(0.3, 0.5), rng.uniform(1.5, 4.0)
    t2, rise = rng.uniform(12, 22), rng.uniform(0.01, 0.03)
    values = level * (1 - np.exp(-x / tau)) + rise * np.maximum(0, x - t2) + rng.normal(0, 0.003, num_epochs)
    return [float(v) for v in np.clip(values, 0, 1)], t2


@pytest.mark.parametrize('windows', [DEFAULT_ACT_WINDOWS, (2, 3, 4), (4,)])
def test_act_decision_matches_an_independent_recomputation(windows):
    rng = np.random.default_rng(2024)
    detections = 0
    for _ in range(50):
        values, t2 = _rise_plateau_rise(rng)
        detected, fired, fit = act_decision(values, windows)
        reference = _reference_act(values, windows)
        if reference is None:
            assert (detected, fired, fit) == (None, None, None)
            continue
        detections += 1
        ref_detected, ref_fired, ref_dep, ref_mid, ref_params = reference
        assert (detected, fired, fit['dep'], fit['mid']) == (ref_detected, ref_fired, ref_dep, ref_mid)
        np.testing.assert_allclose([fit['A'], fit['B'], fit['G']], ref_params, rtol=1e-6)
        assert fit['fit_ok']
        # The trigger lies in the past, so the rolled-back run always has epochs left: F + 1 <= n <= num_epochs.
        assert 1 <= fired < detected
        # Every D_w lies more than mean(W) epochs before the detection, and the trigger lands on the plateau,
        # before memorisation starts at t2.
        assert all(detected - d > np.mean(windows) for d in fit['detections'])
        assert fired < t2
        if windows == DEFAULT_ACT_WINDOWS:
            # The default windows do not mistake the plateau's noise for a renewed rise (smaller windows, e.g.
            # (2, 3, 4), sometimes detect before t2 on these curves).
            assert detected > t2
    # Not vacuous: the rule detects on (nearly) every curve of this family.
    assert detections >= 45


def test_act_trigger_matches_act_decision_epoch_by_epoch():
    # The class decides at the first epoch where the offline replay of its history detects.
    rng = np.random.default_rng(7)
    for _ in range(5):
        values, _ = _rise_plateau_rise(rng)
        expected_detected, expected_fired, expected_fit = act_decision(values, DEFAULT_ACT_WINDOWS)
        assert expected_detected is not None
        trigger = AdaptiveTrigger(rule='act', max_epochs=40)
        for value in values[:expected_detected]:
            assert not trigger.fired
            trigger.update(value)
        assert (trigger.detected_epoch, trigger.fired_epoch) == (expected_detected, expected_fired)
        assert trigger.act_fit == expected_fit
        assert trigger.needs_rollback


def test_act_hand_worked_detection():
    # W = (2, 3), beta = mean(W) = 2.5; values are multiples of 1/8, so every slope below is exact.
    values = [0.25, 0.5, 0.625, 0.625, 0.625, 0.625, 0.75, 0.875, 1.0]
    # Window 2: r = a_n - a_{n-1}:         n = 2..8:  0.25, 0.125, 0, 0, 0, 0.125, 0.125
    # Window 3: r = (a_n - a_{n-2}) / 2:   n = 3..8:  0.1875, 0.0625, 0, 0, 0.0625, 0.125
    #   n = 7: window 2: 0.125 > min 0, first minimum S_2[2] -> ind = 2 + 2 = 4, 7 - 4 = 3 > 2.5 -> D_2 = 4;
    #          window 3: 0.0625 > min 0, first minimum S_3[2] -> ind = 2 + 3 = 5, 7 - 5 = 2 <= 2.5 -> D_3 = 0.
    #   n = 8: window 3: ind = 5, 8 - 5 = 3 > 2.5 -> D_3 = 5: every window detected -> detected_epoch = 8,
    #          dep = int((4 + 5) / 2) = 4.
    detected, slopes, detections = act_scan(values, (2, 3))
    assert detected == 8 and detections == [4, 5]
    assert slopes == {2: [0.25, 0.125, 0, 0, 0, 0.125, 0.125], 3: [0.1875, 0.0625, 0, 0, 0.0625, 0.125]}
    assert act_scan(values[:7], (2, 3))[0] is None
    assert act_scan(values[:7], (2, 3))[2] == [4, 0]
    detected, fired, fit = act_decision(values, (2, 3))
    assert (detected, fit['dep'], fit['detections']) == (8, 4, [4, 5])
    # F from the fitted curve: mid = #{x in 1..4: y'(x) > (y(4) - y(1)) / 3}, F = int((4 + mid) / 2).
    a, b, g = fit['A'], fit['B'], fit['G']
    y = [a * (1 - math.exp(-b * x ** g)) for x in (1, 2, 3, 4)]
    slope = [a * g * b * math.exp(-b * x ** g) * x ** (g - 1) for x in (1, 2, 3, 4)]
    mid = sum(s > (y[3] - y[0]) / 3 for s in slope)
    assert (fit['mid'], fired) == (mid, (4 + mid) // 2)


def test_act_hand_worked_trigger_epoch_on_an_exact_curve():
    # Epochs 1..8 lie exactly on y = 0.8 (1 - exp(-sqrt(x))) (A = 0.8, B = 1, G = 0.5), then memorisation adds 0.1
    # per epoch. The slope of every window falls while it is on the curve, so the smallest slope of each window
    # size is the last one fully on the curve (ending at epoch 8): W = (2, 3) gives ind = 8, and n - 8 > 2.5 first
    # at n = 11 -> detected_epoch = 11, D = (8, 8), dep = 8.
    curve = [0.8 * (1 - math.exp(-math.sqrt(x))) for x in range(1, 9)]
    values = curve + [curve[-1] + 0.1 * k for k in (1, 2, 3, 4)]
    detected, fired, fit = act_decision(values, (2, 3))
    assert (detected, fit['detections'], fit['dep']) == (11, [8, 8], 8)
    # The fit recovers the curve: (A, B, G) = (0.8, 1, 0.5).
    np.testing.assert_allclose([fit['A'], fit['B'], fit['G']], [0.8, 1.0, 0.5], rtol=1e-6)
    # y(1) = 0.8 (1 - e^-1) = 0.505696, y(8) = 0.8 (1 - e^-2.828427) = 0.752715
    # thr = (0.752715 - 0.505696) / 7 = 0.035288
    # y'(x) = 0.4 exp(-sqrt x) / sqrt x: x = 1: 0.147152, 2: 0.068764, 3: 0.040858 > thr; 4: 0.027067 < thr
    # -> mid = 3, F = int((8 + 3) / 2) = 5.
    assert fit['thr'] == pytest.approx(0.035288, abs=1e-6)
    assert fit['mid'] == 3 and fired == 5
    assert act_trigger_epoch(values, 8) == (5, {k: fit[k] for k in fit if k != 'detections'})


def test_act_trigger_epoch_fallbacks(monkeypatch):
    values = [0.1, 0.2, 0.3, 0.35, 0.36]
    # dep < 2: no mean slope -> F = dep, and F < 1 -> 1.
    assert act_trigger_epoch(values, 1) == (1, {'dep': 1, 'mid': None, 'thr': None, 'A': None, 'B': None,
                                                'G': None, 'fit_ok': False})
    assert act_trigger_epoch(values, 0)[0] == 1
    # dep = 2 (fewer points than parameters) still fits: mid in {0, 1, 2}, F = int((2 + mid) / 2) >= 1.
    fired, fit = act_trigger_epoch(values, 2)
    assert fit['fit_ok'] and fired == (2 + fit['mid']) // 2 >= 1

    # A failed fit falls back to F = dep.
    def failing_fit(*args, **kwargs):
        raise RuntimeError('Optimal parameters not found')

    monkeypatch.setattr(trigger_lib.scipy.optimize, 'curve_fit', failing_fit)
    fired, fit = act_trigger_epoch(values, 4)
    assert fired == 4 and not fit['fit_ok']


def test_nonnegative_slope():
    # Equal to max(0, OLS slope); a window of equal values gives exactly 0 (no rounding residue).
    rng = np.random.default_rng(1)
    for n in (2, 3, 6):
        y = rng.normal(size=n)
        np.testing.assert_allclose(nonnegative_slope(y), max(0.0, np.polyfit(np.arange(n), y, 1)[0]), atol=1e-12)
    assert nonnegative_slope([0.1, 0.1, 0.1]) == 0.0
    assert nonnegative_slope([0.3, 0.2, 0.1]) == 0.0
    assert nonnegative_slope([0.125, 0.25, 0.375, 0.5]) == 0.125


def _drive(trigger, values_by_epoch, gc_values):
    """The train loop's use of the API: update after each epoch; on an 'act' detection roll back to fired_epoch
    and continue with the GC timeline (gc_values[e] = signal of epoch e trained with GC). Returns the
    (epoch, gc_weight) pairs that the loop trained with."""
    trained = []
    while trigger.completed_epochs < len(values_by_epoch):
        epoch = trigger.completed_epochs + 1
        weight = trigger.gc_weight()
        trained.append((epoch, weight))
        trigger.update(gc_values[epoch - 1] if weight > 0 else values_by_epoch[epoch - 1])
        if trigger.needs_rollback:
            trigger.rollback()
    return trained


def test_act_rollback_and_gc_weights():
    curve = [0.8 * (1 - math.exp(-math.sqrt(x))) for x in range(1, 9)]
    warmup = curve + [curve[-1] + 0.1 * k for k in range(1, 8)]  # 15 epochs, detection after epoch 11, F = 5
    with_gc = [0.5] * 15
    trigger = AdaptiveTrigger(rule='act', act_windows=(2, 3), max_epochs=15, rampup_epochs=2)
    trained = _drive(trigger, warmup, with_gc)
    # Epochs 1..11 without GC; then back to epoch 5: epochs 6..15 with GC, ramped 1/2, 1, 1, ...
    assert trained == [(e, 0.0) for e in range(1, 12)] + [(6, 0.5)] + [(e, 1.0) for e in range(7, 16)]
    assert (trigger.detected_epoch, trigger.fired_epoch, trigger.rolled_back) == (11, 5, True)
    assert trigger.completed_epochs == 15
    # The history keeps the discarded epochs 6..11 (for the plots), then the GC epochs 6..15.
    assert trigger.history == warmup[:11] + with_gc[5:15]
    with pytest.raises(RuntimeError, match='rollback'):
        trigger.rollback()


def test_act_without_rollback_keeps_counting():
    # A loop that does not roll back (the trigger only a diagnostic) updates on; no rollback is pending any more.
    curve = [0.8 * (1 - math.exp(-math.sqrt(x))) for x in range(1, 9)]
    values = curve + [curve[-1] + 0.1 * k for k in range(1, 6)]
    trigger = AdaptiveTrigger(rule='act', act_windows=(2, 3), max_epochs=20)
    _run(trigger, values[:11])
    assert trigger.needs_rollback and trigger.fired_epoch == 5
    trigger.update(values[11])
    assert not trigger.needs_rollback and trigger.completed_epochs == 12 and trigger.fired_epoch == 5


@pytest.mark.parametrize('name, values', [
    # Concave saturating rise: every new window slope is the smallest so far, min(S_w) < r never holds.
    ('saturating', [0.8 * (1 - math.exp(-0.3 * x)) for x in range(1, 31)]),
    # Constant growth (exact multiples of 1/64): all slopes equal, never above their minimum.
    ('linear', [x / 64 for x in range(1, 31)]),
    # Fall then flat (observed_fit from a zero head without memorisation): every slope is clipped to 0.
    ('falling', [max(0.25, 0.5 - 0.05 * x) for x in range(1, 31)]),
])
def test_act_never_detects_without_a_renewed_rise(name, values):
    assert act_decision(values, DEFAULT_ACT_WINDOWS) == (None, None, None)
    assert _reference_act(values, DEFAULT_ACT_WINDOWS) is None
    # The max_epochs cap fires at that epoch, with no detection and no rollback.
    trigger = AdaptiveTrigger(rule='act', max_epochs=12)
    weights = _run(trigger, values)
    assert trigger.fired_epoch == 12 and trigger.detected_epoch is None
    assert not trigger.needs_rollback and trigger.act_fit is None
    assert weights == [0.0] * 11 + [1.0] * 19
    # Without the cap in reach it never fires.
    uncapped = AdaptiveTrigger(rule='act', max_epochs=100)
    _run(uncapped, values)
    assert uncapped.fired_epoch is None


def test_act_detection_at_the_cap_epoch_wins_over_the_cap():
    # Detection after epoch 11 with max_epochs = 11: the rollback decision, not the cap.
    curve = [0.8 * (1 - math.exp(-math.sqrt(x))) for x in range(1, 9)]
    values = curve + [curve[-1] + 0.1 * k for k in (1, 2, 3)]
    trigger = AdaptiveTrigger(rule='act', act_windows=(2, 3), max_epochs=11)
    _run(trigger, values)
    assert (trigger.detected_epoch, trigger.fired_epoch) == (11, 5)


@pytest.mark.parametrize('stop_after', [3, 10, 11, 12, 16])
def test_act_state_dict_round_trip_mid_run(stop_after):
    """Interrupted after `stop_after` updates (11: right at detection, rollback pending; 12, 16: after the
    rollback), saved through JSON, restored into a differently configured object: the same decisions."""
    curve = [0.8 * (1 - math.exp(-math.sqrt(x))) for x in range(1, 9)]
    warmup = curve + [curve[-1] + 0.1 * k for k in range(1, 8)]
    with_gc = [np.float32(0.5 + 0.01 * e) for e in range(15)]  # numpy scalars arrive too

    def make():
        return AdaptiveTrigger(rule='act', act_windows=(2, 3), max_epochs=14, rampup_epochs=3)

    uninterrupted = make()
    expected = _drive(uninterrupted, warmup, with_gc)

    first = make()
    trained = []
    for _ in range(stop_after):
        epoch = first.completed_epochs + 1
        weight = first.gc_weight()
        trained.append((epoch, weight))
        first.update(with_gc[epoch - 1] if weight > 0 else warmup[epoch - 1])
        if first.needs_rollback and stop_after != 11:  # 11: interrupted before the loop rolled back
            first.rollback()
    saved = json.loads(json.dumps(first.state_dict()))
    resumed = AdaptiveTrigger(rule='slope', window=7, act_windows=(9,))
    resumed.load_state_dict(saved)
    assert resumed.state_dict() == first.state_dict()
    if resumed.needs_rollback:  # the resumed loop performs the pending rollback
        resumed.rollback()
    trained += _drive(resumed, warmup, with_gc)
    assert trained == expected
    assert resumed.state_dict() == uninterrupted.state_dict()
    assert (resumed.detected_epoch, resumed.fired_epoch) == (11, 5)


def test_state_dict_from_before_act_loads():
    # A checkpoint written before rule 'act' existed (no act keys) resumes with the act defaults.
    trigger = AdaptiveTrigger(rule='slope')
    _run(trigger, FALL_PLATEAU_RISE[:4])
    old = {k: v for k, v in trigger.state_dict().items()
           if k not in ('act_windows', 'completed_epochs', 'detected_epoch', 'act_fit', 'rolled_back')}
    restored = AdaptiveTrigger(rule='never')
    restored.load_state_dict(old)
    assert restored.state_dict() == trigger.state_dict()
