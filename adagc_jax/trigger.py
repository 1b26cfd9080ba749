"""Host-side adaptive trigger that switches GC on: METHOD.md section 6.

Numpy only (no jax): it sees one number per completed epoch, decides whether
early learning is over, and gives the gc.weight of the next epoch. Its state
(config, signal history, slopes, fired epoch) is a JSON-serialisable dict that
is saved with the checkpoints, so a resumed run takes the same decisions.
"""

import math

import numpy as np

TRIGGER_RULES = ('slope', 'fixed', 'never', 'always')


def least_squares_slope(values):
    """Slope of the least-squares line through (x, values[x - 1]), x = 1..len(values)."""
    y = np.asarray(values, dtype=np.float64)
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    x_centered = x - x.mean()
    return float(np.sum(x_centered * (y - y.mean())) / np.sum(x_centered**2))


class AdaptiveTrigger:
    """Decides when GC switches on (METHOD.md section 6).

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
    Once fired it stays fired; `fired_epoch` = the epoch after which it fired.

    gc.weight of an epoch n (the value `gc_weight()` returns after n - 1
    completed epochs), with F = fired_epoch and R = rampup_epochs:
      0                       if not fired (or n <= F)
      min(1, (n - F) / R)     if R > 0: 1/R, 2/R, ..., 1 over the first R
                              GC epochs F + 1, ..., F + R, then 1
      1                       if R == 0
    """

    def __init__(self, rule='slope', window=3, eps=0.1, min_epochs=2, max_epochs=10,
                 epoch=None, rampup_epochs=0):
        self._set_config(rule=rule, window=window, eps=eps, min_epochs=min_epochs,
                         max_epochs=max_epochs, epoch=epoch, rampup_epochs=rampup_epochs)
        self.history = []  # signal value of each completed epoch; history[e - 1] = a_e
        self.slopes = []  # r_e of each completed epoch, None while fewer than `window` values exist
        self.max_abs_slope = 0.0  # R_e
        self.fired_epoch = 0 if rule == 'always' else None

    def _set_config(self, rule, window, eps, min_epochs, max_epochs, epoch, rampup_epochs):
        if rule not in TRIGGER_RULES:
            raise ValueError(f'Unknown trigger rule {rule!r}; valid rules: {TRIGGER_RULES}.')
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
        if self.window < 2:
            raise ValueError(f'Trigger window must be >= 2 to define a slope, got {self.window}.')
        if self.eps < 0 or self.min_epochs < 0 or self.max_epochs < 1 or self.rampup_epochs < 0:
            raise ValueError('Trigger needs eps >= 0, min_epochs >= 0, max_epochs >= 1 and '
                             f'rampup_epochs >= 0; got eps={self.eps}, min_epochs={self.min_epochs}, '
                             f'max_epochs={self.max_epochs}, rampup_epochs={self.rampup_epochs}.')

    @property
    def fired(self):
        return self.fired_epoch is not None

    def update(self, value):
        """Records the signal of the epoch just completed and decides whether to fire."""
        epoch = len(self.history) + 1
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f'Trigger signal of epoch {epoch} is not finite: {value}.')
        self.history.append(value)

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

    def gc_weight(self):
        """gc.weight for the NEXT epoch (see the class docstring for the ramp)."""
        if not self.fired:
            return 0.0
        epochs_with_gc = len(self.history) + 1 - self.fired_epoch
        if epochs_with_gc <= 0:
            return 0.0
        if self.rampup_epochs == 0:
            return 1.0
        return min(1.0, epochs_with_gc / self.rampup_epochs)

    _CONFIG_KEYS = ('rule', 'window', 'eps', 'min_epochs', 'max_epochs', 'epoch', 'rampup_epochs')

    def state_dict(self):
        """Everything (config and state) as a JSON-serialisable dict."""
        state = {key: getattr(self, key) for key in self._CONFIG_KEYS}
        state.update(history=list(self.history), slopes=list(self.slopes),
                     max_abs_slope=self.max_abs_slope, fired_epoch=self.fired_epoch)
        return state

    def load_state_dict(self, state):
        """Restores everything saved by state_dict, the saved config included."""
        self._set_config(**{key: state[key] for key in self._CONFIG_KEYS})
        self.history = [float(v) for v in state['history']]
        self.slopes = [None if s is None else float(s) for s in state['slopes']]
        self.max_abs_slope = float(state['max_abs_slope'])
        self.fired_epoch = None if state['fired_epoch'] is None else int(state['fired_epoch'])
