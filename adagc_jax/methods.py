"""Method registry: name -> how the step turns a batch into targets and a loss (METHOD.md section 8).

A method plugs into the ONE generic train step (train_step.py) through a few pure hooks, so adding a method never
touches the loop:

  prepare(batch, ctx) -> (targets, method_state, aux)
      Per-example targets (a dict of (B, C) arrays) BEFORE Mixup; may update the method state (e.g. AdaGC's memory
      bank from the teacher's predictions on the clean view).
  loss(logits, targets, ctx) -> (loss, aux)
      The scalar loss on the student's logits (of the possibly mixed images) and the (possibly mixed) targets.
  after_update(logits, targets, ctx) -> method_state      (optional)
      State written after the optimizer update from this step's logits (e.g. LL-Cp's permanent corrections).
  init(config, data, rng) -> (method_params, method_state)
      Trainable per-method tensors (optimised in the step with `param_optimizer`) and non-trainable state.
  knobs(config, epoch) -> dict of floats
      Per-epoch scalars (schedules) fed to the step as TRACED arguments, so changing them never recompiles.
  epoch_end(...)                                          (optional, host side)

`aux` values are per-batch SUMS (the loop adds them up over the epoch and divides by the matching counts).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from adagc_jax import ema, gc, losses


class StepContext(NamedTuple):
    """What a method's hooks may read inside the step (all traced except `config`)."""

    batch: dict  # 'observed', 'labels' (hidden; diagnostics and `full` only), 'id', ...
    knobs: dict  # traced scalars: 'gc_weight', 'epoch' (1-based) and the method's own
    method_params: Any
    method_state: Any
    teacher_probs: Any  # sigmoid of the teacher on the clean view, or None
    config: Any  # the run's ConfigDict (static)


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What methods may know about the training data when they build their state."""

    num_train: int
    num_classes: int
    observed: Any  # (N, C) float32 initial observed table, indexed by example id


def _observed_targets(batch, ctx):
    return {"observed": batch["observed"]}, ctx.method_state, {}


def _no_state(config, data, rng):
    return {}, {}


def _no_knobs(config, epoch):
    return {}


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    description: str
    loss: Callable
    prepare: Callable = _observed_targets
    after_update: Callable | None = None
    init: Callable = _no_state
    knobs: Callable = _no_knobs
    param_optimizer: Callable | None = None  # config -> optax transformation for method_params
    epoch_end: Callable | None = None
    uses_teacher_predictions: bool = False  # the step runs the teacher on the clean view and passes its probs
    uses_mixup: bool = False  # Mixup (config.mixup) is part of the method's definition
    aux_keys: tuple = ()  # names of the per-batch sums that prepare/loss return in `aux`


# ---------------------------------------------------------------------------------------------------------------
# an, full


def _an_loss(logits, targets, ctx):
    return losses.an(logits, targets["observed"]), {}


def _full_targets(batch, ctx):
    # The upper bound: every label observed. The ONLY method allowed to read the hidden full labels in a loss.
    return {"labels": batch["labels"]}, ctx.method_state, {}


def _full_loss(logits, targets, ctx):
    return losses.full(logits, targets["labels"]), {}


AN = Method(
    name="an",
    description="assume negative: BCE with every unobserved label taken as negative (Cole et al. epsilon form)",
    loss=_an_loss,
)

FULL = Method(
    name="full",
    description="BCE on the full labels (upper bound; not an SPML method)",
    loss=_full_loss,
    prepare=_full_targets,
)

# ---------------------------------------------------------------------------------------------------------------
# adagc (METHOD.md sections 2-6)

ADAGC_AUX_KEYS = ("an_loss", "gc_loss", "diag_pl_true_positive", "diag_pl_predicted_positive",
                  "diag_pl_hidden_positive")


def _adagc_init(config, data, rng):
    # EMA 2: the per-sample prediction memory bank and its visit counts live on device with the state.
    if not config.ema.predictions:
        return {}, {}
    return {}, {"memory": jnp.zeros((data.num_train, data.num_classes), jnp.float32),
                "visits": jnp.zeros((data.num_train,), jnp.int32)}


def _adagc_targets(batch, ctx):
    """Teacher predictions (clean view) -> memory bank -> pseudo-labels q -> calibrated targets, BEFORE Mixup."""
    observed = batch["observed"]
    teacher_probs = ctx.teacher_probs
    method_state = ctx.method_state
    if ctx.config.ema.predictions:
        memory, visits = ema.update_memory(method_state["memory"], method_state["visits"], batch["id"],
                                           teacher_probs, ctx.config.ema.m_p)
        method_state = {"memory": memory, "visits": visits}
        remembered = memory[batch["id"]]
    else:
        remembered = teacher_probs  # ablation "w/o prediction EMA": q from this step's teacher prediction
    pseudo = gc.pseudo_labels(remembered, observed)
    targets = {"an_observed": observed,
               **gc.calibrated_targets(observed, pseudo, ctx.config.gc.mode, ctx.config.gc.tau)}
    # Diagnostics against the hidden full labels (never in the loss): how well q at 0.5 recovers the false
    # negatives, i.e. precision / recall over the UNOBSERVED entries (the observed positive is 1 by definition).
    unobserved = 1.0 - observed
    predicted = (pseudo >= 0.5).astype(jnp.float32) * unobserved
    hidden = batch["labels"] * unobserved
    aux = {"diag_pl_true_positive": jnp.sum(predicted * hidden), "diag_pl_predicted_positive": jnp.sum(predicted),
           "diag_pl_hidden_positive": jnp.sum(hidden)}
    return targets, method_state, aux


def _adagc_loss(logits, targets, ctx):
    """L = (1 - w) L_AN + w L_GC on the (mixed) batch; w = gc_weight is a traced knob (METHOD.md section 4)."""
    weight = ctx.knobs["gc_weight"]
    an = gc.an_loss(logits, targets["an_observed"])
    gc_targets = {k: v for k, v in targets.items() if k != "an_observed"}
    calibrated = gc.gc_loss_from_targets(logits, gc_targets, ctx.config.gc.mode)
    return (1.0 - weight) * an + weight * calibrated, {"an_loss": an, "gc_loss": calibrated}


ADAGC = Method(
    name="adagc",
    description="AdaGC: assume-negative warm-up, then gradient calibration with dual-EMA pseudo-labels and Mixup, "
                "switched on by the adaptive trigger",
    loss=_adagc_loss,
    prepare=_adagc_targets,
    init=_adagc_init,
    uses_teacher_predictions=True,
    uses_mixup=True,
    aux_keys=ADAGC_AUX_KEYS,
)

METHODS: dict[str, Method] = {m.name: m for m in (ADAGC, AN, FULL)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {sorted(METHODS)}")
    return METHODS[name]


def observed_rows(batch) -> jnp.ndarray:
    """(B,) 1.0 where the example has an observed positive (rows without positives carry no observed label)."""
    return (jnp.max(batch["observed"], axis=-1) > 0).astype(jnp.float32)
