"""Optimizers and learning-rate schedules from the config (optax)."""

from __future__ import annotations

import jax
import optax

from adagc_jax import config_utils


def _cosine(base, warmup, total):
    if warmup > 0:
        return optax.warmup_cosine_decay_schedule(0.0, base, warmup, total, end_value=0.0)
    return optax.cosine_decay_schedule(base, total)


def _constant(base, warmup, total):
    if warmup > 0:
        return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), optax.constant_schedule(base)],
                                    [warmup])
    return optax.constant_schedule(base)


# Name -> (base learning rate, warm-up steps, total steps) -> schedule.
SCHEDULES = {"cosine": _cosine, "constant": _constant}


def learning_rate_schedule(opt_config, num_epochs: int, steps_per_epoch: int) -> optax.Schedule:
    """Linear warm-up for `warmup_epochs`, then cosine decay to 0 at the end of training (or constant)."""
    total = max(1, num_epochs * steps_per_epoch)
    warmup = min(int(round(opt_config.warmup_epochs * steps_per_epoch)), total - 1)
    make = config_utils.lookup(SCHEDULES, opt_config.schedule, "optimizer.schedule")
    return make(opt_config.learning_rate, warmup, total)


def _decay_mask(params):
    # Weight decay on kernels only: biases and BatchNorm scales/offsets (1-D) are not decayed (standard practice).
    return jax.tree.map(lambda p: p.ndim > 1, params)


def _coupled_decay(opt_config, base):
    # Coupled L2 weight decay (added to the gradient before the update), as torch's Adam/SGD weight_decay.
    wd = opt_config.weight_decay
    return optax.chain(optax.add_decayed_weights(wd, mask=_decay_mask), base) if wd > 0 else base


OPTIMIZERS = {
    "adam": lambda c, lr: _coupled_decay(c, optax.adam(lr)),
    "adamw": lambda c, lr: optax.adamw(lr, weight_decay=c.weight_decay, mask=_decay_mask),
    "sgd": lambda c, lr: _coupled_decay(c, optax.sgd(lr, momentum=c.momentum, nesterov=c.nesterov)),
}


def make_optimizer(opt_config, num_epochs: int, steps_per_epoch: int):
    """Returns (optax transformation, schedule)."""
    schedule = learning_rate_schedule(opt_config, num_epochs, steps_per_epoch)
    make = config_utils.lookup(OPTIMIZERS, opt_config.name, "optimizer.name")
    return make(opt_config, schedule), schedule
