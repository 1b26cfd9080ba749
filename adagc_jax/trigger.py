"""Host-side adaptive trigger that switches GC on: METHOD.md sections 6 and 6b.

Numpy/scipy only (no jax): it sees one number per completed epoch, decides whether
early learning is over, and gives the gc.weight of the next epoch. Its state
(config, signal history, slopes, fired epoch) is a JSON-serialisable dict that
is saved with the checkpoints, so a resumed run takes the same decisions.

Rule 'act' (section 6b) decides AFTER the plateau, so it places the trigger in
the past: `fired_epoch` F < `detected_epoch` n, and the train loop rolls back to
the state saved after epoch F (see AdaptiveTrigger.rollback). Its decision is the
pure function `act_decision`, so it can be replayed on recorded signals.
"""

import math
import warnings

import numpy as np
import scipy.optimize

from adagc_jax import config_utils

TRIGGER_RULES = ('slope', 'fixed', 'never', 'always', 'act')

# Default of `trigger.act_windows`, chosen as METHOD.md 6b asks: act_decision replayed on the signals of
# trigger.rule=never runs (benchmarks/trigger_replay.py; validation only), 6 window sets x 2 signals x 2 noise types
# x 3 seeds of configs/synthetic_memorization_fast.py. (5, 7, 9) with observed_top1 lands nearest the validation
# peak of all act settings, but still 15 points below it on average: docs/trigger.md, and why `slope` stays the rule.
DEFAULT_ACT_WINDOWS = (5, 7, 9)


def least_squares_slope(values):
    """Slope of the least-squares line through (x, values[x - 1]), x = 1..len(values)."""
    y = np.asarray(values, dtype=np.float64)
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    x_centered = x - x.mean()
    return float(np.sum(x_centered * (y - y.mean())) / np.sum(x_centered**2))


# ---------------------------------------------------------------------------------------------------------------
# Rule 'act' (METHOD.md section 6b): pure functions of the signal history.


def nonnegative_slope(values):
    """Least-squares slope of (x, values) over consecutive x, constrained to >= 0.

    With the intercept free, the bounded fit of the published code has the closed form max(0, OLS slope): the
    problem is a convex quadratic, so when the unconstrained optimum has a negative slope the constrained one lies
    on the bound. The values are shifted by their first entry before the fit (the slope does not change): a window
    of equal values then gives exactly 0, not a rounding residue that would count as "the slope rose above its
    minimum" on an exact plateau (ratios of counts repeat exactly).
    """
    y = np.asarray(values, dtype=np.float64)
    d = y - y[0]
    x = np.arange(len(y), dtype=np.float64) - (len(y) - 1) / 2.0
    return max(0.0, float(np.dot(x, d) / np.dot(x, x)))


def saturating_curve(x, a, b, g):
    """y(x) = A (1 - exp(-B x^G)): the early-learning curve that ACT fits."""
    return a * (1.0 - np.exp(-b * np.power(x, g)))


def saturating_curve_slope(x, a, b, g):
    """y'(x) = A G B exp(-B x^G) x^(G - 1)."""
    return a * g * b * np.exp(-b * np.power(x, g)) * np.power(x, g - 1.0)


def act_trigger_epoch(signal_history, dep):
    """Step 2 of METHOD.md 6b: the trigger epoch F from the detected end of the plateau `dep`.

    Fits A (1 - exp(-B x^G)) to (x, a_x), x = 1..dep (bounds A in [0, 1], B >= 0, G in [0, 1], start (1, 0.5, 0.5),
    scipy's 'trf'), takes the fit's mean slope thr over 1..dep and counts mid = #{x in 1..dep: y'(x) > thr} (the
    epochs of fast early learning, i.e. the start of the plateau); F = int((dep + mid) / 2), the middle of the
    plateau. Falls back to F = dep when dep < 2 (no mean slope) or the fit fails; F is at least 1.

    Returns (F, fit): fit is a JSON-serialisable dict (dep, mid, thr, A, B, G, fit_ok).
    """
    dep = int(dep)
    fit = {'dep': dep, 'mid': None, 'thr': None, 'A': None, 'B': None, 'G': None, 'fit_ok': False}
    if dep < 2:
        return max(1, dep), fit
    x = np.arange(1, dep + 1, dtype=np.float64)
    y = np.asarray(signal_history[:dep], dtype=np.float64)
    try:
        with warnings.catch_warnings():
            # With dep = 2 (fewer points than parameters) the covariance is undefined; only the estimate is used.
            warnings.simplefilter('ignore', scipy.optimize.OptimizeWarning)
            params, _ = scipy.optimize.curve_fit(saturating_curve, x, y, p0=(1.0, 0.5, 0.5), method='trf',
                                                 bounds=([0.0, 0.0, 0.0], [1.0, np.inf, 1.0]))
    except (RuntimeError, ValueError):
        return max(1, dep), fit
    if not np.all(np.isfinite(params)):
        return max(1, dep), fit
    a, b, g = (float(p) for p in params)
    fitted = saturating_curve(x, a, b, g)
    thr = float((fitted[-1] - fitted[0]) / (dep - 1))
    mid = int(np.sum(saturating_curve_slope(x, a, b, g) > thr))
    fit.update(mid=mid, thr=thr, A=a, B=b, G=g, fit_ok=True)
    return max(1, int((dep + mid) / 2)), fit


def act_scan(signal_history, windows):
    """Replays step 1 of METHOD.md 6b over epochs n = 1..len(signal_history) and stops at the first epoch where
    every window has a detected epoch D_w > 0.

    Per window w: after epoch n >= w, r = nonnegative_slope(a_{n-w+1..n}) is appended to S_w (S_w[0] belongs to the
    window ending at epoch w). When r is above min(S_w), the growth rate has passed its minimum: ind = the last
    epoch of the window with the smallest slope (the first one on ties) = argmin(S_w) + w, and D_w = ind once that
    minimum lies more than beta = mean(W) epochs back (a later epoch may overwrite D_w).

    Returns (n, slopes, detections): n = the detection epoch or None, slopes = {w: S_w}, detections = [D_w in the
    order of windows] (0 = not detected), all as of epoch n (or of the last epoch without detection).
    """
    windows = tuple(int(w) for w in windows)
    history = [float(v) for v in signal_history]
    buffer = float(np.mean(windows))
    slopes = {w: [] for w in windows}
    detections = [0] * len(windows)
    for n in range(1, len(history) + 1):
        for i, w in enumerate(windows):
            if n < w:
                continue
            r = nonnegative_slope(history[n - w:n])
            slopes[w].append(r)
            if min(slopes[w]) < r:
                ind = int(np.argmin(slopes[w])) + w
                if n - ind > buffer:
                    detections[i] = ind
        if all(d > 0 for d in detections):
            return n, slopes, detections
    return None, slopes, detections


def act_decision(signal_history, windows):
    """The decision of rule 'act' (METHOD.md 6b) on a recorded signal history a_1, a_2, ... (one per epoch).

    Returns (detected_epoch, fired_epoch, fit_params): detected_epoch = the first epoch n after which the rule
    detects the end of the plateau, fired_epoch = F (training rolls back to the state after epoch F), fit_params =
    the JSON-serialisable details (dep, mid, thr, A, B, G, fit_ok, window detections D_w); (None, None, None) when
    no epoch of the history detects. The trigger.max_epochs cap is not part of this (AdaptiveTrigger applies it).
    """
    detected, _, detections = act_scan(signal_history, windows)
    if detected is None:
        return None, None, None
    dep = int(np.mean(detections))
    fired, fit = act_trigger_epoch(signal_history, dep)
    fit['detections'] = list(detections)
    return detected, fired, fit


class AdaptiveTrigger:
    """Decides when GC switches on (METHOD.md sections 6 and 6b).

    Rules:
      'slope':  after completed epoch e (1, 2, ...) the signal a_e is appended to
                `history`. Once `window` values exist, r_e = least-squares slope
                of the last `window` values against x = 1..window and
                R_e = max |r| so far (|r_e| included). Fires after epoch e when
                e >= min_epochs, R_e > 0 and |r_e| <= eps * R_e (the signal has
                levelled off to eps of its fastest change), and after epoch
                `max_epochs` at the latest.
      'fixed':  fires after epoch `epoch` (the "w/o adaptive trigger" ablation).
      'never':  never fires.
      'always': fired before the first epoch (`fired_epoch` = 0).
      'act':    AIO2's adaptive correction trigger (section 6b, `act_decision`
                with windows `act_windows`). It detects the end of the plateau
                after epoch n = `detected_epoch` and fires in the past, at
                F = `fired_epoch` < n: the train loop must restore the state
                saved after epoch F and call `rollback()` (`needs_rollback` says
                when). Without detection it fires after epoch `max_epochs` with
                no rollback (`detected_epoch` stays None). `min_epochs`, `eps`
                and `window` play no part.
    Once fired it stays fired; `fired_epoch` = the epoch after which GC is on.

    `completed_epochs` is the training position: the number of epochs the
    current model has been trained for. It equals len(history) except after an
    'act' rollback, where it restarts from F while `history` keeps every signal
    value in the order it arrived (the discarded warm-up epochs F+1..n included,
    for the plots).

    gc.weight of an epoch m (the value `gc_weight()` returns after m - 1
    completed epochs), with F = fired_epoch and R = rampup_epochs:
      0                       if not fired (or m <= F)
      min(1, (m - F) / R)     if R > 0: 1/R, 2/R, ..., 1 over the first R
                              GC epochs F + 1, ..., F + R, then 1
      1                       if R == 0
    """

    def __init__(self, rule='slope', window=3, eps=0.1, min_epochs=2, max_epochs=10,
                 epoch=None, rampup_epochs=0, act_windows=DEFAULT_ACT_WINDOWS):
        self._set_config(rule=rule, window=window, eps=eps, min_epochs=min_epochs, max_epochs=max_epochs,
                         epoch=epoch, rampup_epochs=rampup_epochs, act_windows=act_windows)
        self.history = []  # signal values in the order they arrived; history[e - 1] = a_e before any rollback
        self.slopes = []  # r_e of each update, None while fewer than `window` values exist
        self.max_abs_slope = 0.0  # R_e
        self.fired_epoch = 0 if rule == 'always' else None
        self.completed_epochs = 0
        self.detected_epoch = None  # 'act': the epoch after which the plateau's end was detected
        self.act_fit = None  # 'act': fit_params of act_decision at detection
        self.rolled_back = False  # 'act': the loop has rolled back to fired_epoch

    def _set_config(self, rule, window, eps, min_epochs, max_epochs, epoch, rampup_epochs, act_windows):
        config_utils.lookup(TRIGGER_RULES, rule, 'trigger.rule')
        if rule == 'fixed' and (epoch is None or int(epoch) < 1):
            raise ValueError("Trigger rule 'fixed' needs epoch >= 1 (the completed epoch after which GC "
                             f"switches on; use rule 'always' for GC from step 0), got epoch={epoch!r}.")
        # Plain Python numbers, so that state_dict() is JSON-serialisable.
        self.rule = rule
        self.window = int(window)
        self.eps = float(eps)
        self.min_epochs = int(min_epochs)
        self.max_epochs = int(max_epochs)
        self.epoch = None if epoch is None else int(epoch)
        self.rampup_epochs = int(rampup_epochs)
        self.act_windows = tuple(int(w) for w in act_windows)
        if self.window < 2:
            raise ValueError(f'Trigger window must be >= 2 to define a slope, got {self.window}.')
        if not self.act_windows or min(self.act_windows) < 2:
            raise ValueError('Trigger act_windows must be a non-empty tuple of window sizes >= 2 (each defines a '
                             f'slope), got {act_windows!r}.')
        if self.eps < 0 or self.min_epochs < 0 or self.max_epochs < 1 or self.rampup_epochs < 0:
            raise ValueError('Trigger needs eps >= 0, min_epochs >= 0, max_epochs >= 1 and '
                             f'rampup_epochs >= 0; got eps={self.eps}, min_epochs={self.min_epochs}, '
                             f'max_epochs={self.max_epochs}, rampup_epochs={self.rampup_epochs}.')

    @property
    def fired(self):
        return self.fired_epoch is not None

    @property
    def needs_rollback(self):
        """True right after the 'act' detection (until rollback() or the next update): the model is at epoch
        detected_epoch and GC starts after fired_epoch < detected_epoch. A loop that trains on without rolling back
        (a method for which the trigger is only a diagnostic) just calls update() again; gc_weight() then counts
        the epochs after fired_epoch as GC epochs."""
        return (self.detected_epoch is not None and not self.rolled_back
                and self.completed_epochs == self.detected_epoch)

    def update(self, value):
        """Records the signal of the epoch just completed and decides whether to fire."""
        epoch = self.completed_epochs + 1
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f'Trigger signal of epoch {epoch} is not finite: {value}.')
        self.history.append(value)
        self.completed_epochs = epoch

        # Slopes are recorded under every rule (diagnostics); only 'slope' acts on them.
        slope = None
        if len(self.history) >= self.window:
            slope = least_squares_slope(self.history[-self.window:])
            self.max_abs_slope = max(self.max_abs_slope, abs(slope))
        self.slopes.append(slope)

        if self.fired:
            return  # once fired, stays fired
        if self.rule == 'fixed' and epoch >= self.epoch:
            self.fired_epoch = epoch
        elif self.rule == 'slope':
            levelled_off = (slope is not None and epoch >= self.min_epochs and self.max_abs_slope > 0
                            and abs(slope) <= self.eps * self.max_abs_slope)
            if levelled_off or epoch >= self.max_epochs:
                self.fired_epoch = epoch
        elif self.rule == 'act':
            # Not fired yet, so no rollback has happened: history[e - 1] = a_e. Replaying the whole history is
            # cheap (a few slopes per epoch) and keeps the state to the history itself; the earlier epochs did not
            # detect, so a detection in the replay is at this epoch.
            detected, fired, fit = act_decision(self.history, self.act_windows)
            if detected is not None:
                self.detected_epoch, self.fired_epoch, self.act_fit = detected, fired, fit
            elif epoch >= self.max_epochs:
                self.fired_epoch = epoch  # cap: fire now, no rollback

    def rollback(self):
        """Called by the train loop after it restored the state saved after epoch `fired_epoch`: the training
        position goes back to that epoch (history keeps the discarded epochs). Returns fired_epoch."""
        if not self.needs_rollback:
            raise RuntimeError('Trigger rollback() without a pending act detection.')
        self.completed_epochs = self.fired_epoch
        self.rolled_back = True
        return self.fired_epoch

    def gc_weight(self):
        """gc.weight for the NEXT epoch (see the class docstring for the ramp)."""
        if not self.fired:
            return 0.0
        epochs_with_gc = self.completed_epochs + 1 - self.fired_epoch
        if epochs_with_gc <= 0:
            return 0.0
        if self.rampup_epochs == 0:
            return 1.0
        return min(1.0, epochs_with_gc / self.rampup_epochs)

    _CONFIG_KEYS = ('rule', 'window', 'eps', 'min_epochs', 'max_epochs', 'epoch', 'rampup_epochs', 'act_windows')

    def state_dict(self):
        """Everything (config and state) as a JSON-serialisable dict."""
        state = {key: getattr(self, key) for key in self._CONFIG_KEYS}
        state['act_windows'] = list(self.act_windows)
        state.update(history=list(self.history), slopes=list(self.slopes), max_abs_slope=self.max_abs_slope,
                     fired_epoch=self.fired_epoch, completed_epochs=self.completed_epochs,
                     detected_epoch=self.detected_epoch, act_fit=self.act_fit, rolled_back=self.rolled_back)
        return state

    def load_state_dict(self, state):
        """Restores everything saved by state_dict, the saved config included. Dicts saved before rule 'act'
        existed (no act keys) load with its defaults."""
        config = {key: state[key] for key in self._CONFIG_KEYS if key in state}
        config.setdefault('act_windows', DEFAULT_ACT_WINDOWS)
        self._set_config(**config)
        self.history = [float(v) for v in state['history']]
        self.slopes = [None if s is None else float(s) for s in state['slopes']]
        self.max_abs_slope = float(state['max_abs_slope'])
        self.fired_epoch = None if state['fired_epoch'] is None else int(state['fired_epoch'])
        self.completed_epochs = int(state.get('completed_epochs', len(self.history)))
        detected = state.get('detected_epoch')
        self.detected_epoch = None if detected is None else int(detected)
        self.act_fit = None if state.get('act_fit') is None else dict(state['act_fit'])
        self.rolled_back = bool(state.get('rolled_back', False))
