"""Optimizers and learning-rate schedules from the config (optax)."""

from __future__ import annotations

import jax
import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def learning_rate_schedule(opt_config, num_epochs: int, steps_per_epoch: int) -> optax.Schedule:
    """Linear warm-up for `warmup_epochs`, then cosine decay to 0 at the end of training (or constant)."""
    base = float(opt_config.learning_rate)
    total = max(1, num_epochs * steps_per_epoch)
    warmup = min(int(round(opt_config.warmup_epochs * steps_per_epoch)), total - 1)
    if opt_config.schedule == "cosine":
        if warmup > 0:
            return optax.warmup_cosine_decay_schedule(0.0, base, warmup, total, end_value=0.0)
        return optax.cosine_decay_schedule(base, total)
    if opt_config.schedule == "constant":
        if warmup > 0:
            return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), optax.constant_schedule(base)],
                                        [warmup])
        return optax.constant_schedule(base)
    raise ValueError(f"unknown optimizer.schedule {opt_config.schedule!r}; valid schedules: {list(SCHEDULES)}")


def _decay_mask(params):
    # Weight decay on kernels only: biases and BatchNorm scales/offsets (1-D) are not decayed (standard practice).
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(opt_config, num_epochs: int, steps_per_epoch: int):
    """Returns (optax transformation, schedule)."""
    schedule = learning_rate_schedule(opt_config, num_epochs, steps_per_epoch)
    name, wd = opt_config.name, float(opt_config.weight_decay)
    if name == "adamw":
        tx = optax.adamw(schedule, weight_decay=wd, mask=_decay_mask)
    elif name in ("adam", "sgd"):
        # Coupled L2 weight decay (added to the gradient before the update), as torch's Adam/SGD weight_decay.
        base = optax.adam(schedule) if name == "adam" else optax.sgd(schedule, momentum=float(opt_config.momentum),
                                                                     nesterov=bool(opt_config.nesterov))
        tx = optax.chain(optax.add_decayed_weights(wd, mask=_decay_mask), base) if wd > 0 else base
    else:
        raise ValueError(f"unknown optimizer.name {name!r}; valid optimizers: {list(OPTIMIZERS)}")
    return tx, schedule
