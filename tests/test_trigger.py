"""Tests of adagc_jax.trigger (METHOD.md section 6)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from adagc_jax.trigger import TRIGGER_RULES, AdaptiveTrigger, least_squares_slope

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
    with pytest.raises(ValueError, match="'slope', 'fixed', 'never', 'always'"):
        AdaptiveTrigger(rule='plateau')
    assert TRIGGER_RULES == ('slope', 'fixed', 'never', 'always')
    with pytest.raises(ValueError, match='fixed'):
        AdaptiveTrigger(rule='fixed')
    with pytest.raises(ValueError, match='window'):
        AdaptiveTrigger(window=1)


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
