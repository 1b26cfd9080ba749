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
  param_optimizer(config, schedule) -> optax transformation   (optional)
      The optimizer of method_params, applied in the same step; `schedule` is the network's learning-rate schedule
      (e.g. ROLE's Z at lr_mult times it).
  knobs(config, epoch) -> dict of floats
      Per-epoch scalars (schedules) fed to the step as TRACED arguments, so changing them never recompiles.
  epoch_end(config, epoch, method_state, predict_train) -> method_state      (optional, host side)
      Runs once per epoch after its steps and before evaluation, on a host (numpy) copy of method_state; the
      result (same structure, shapes and dtypes) replaces it on the devices and is checkpointed with it.
      predict_train() returns the student's probabilities (N, C) on the un-augmented training images, in id order
      (e.g. APL's pseudo-labelling pass).

`aux` values are per-batch SUMS (the loop adds them up over the epoch and divides by the matching counts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from adagc_jax import config_utils, ema, gc, loss_schedules, losses


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
    # Mean number of positives per training image (from the hidden full labels): the default of EPR/ROLE's prior k,
    # as Cole et al. set it (one dataset statistic, never per-sample labels). None when unknown.
    label_cardinality: float | None = None


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
    param_optimizer: Callable | None = None  # (config, schedule) -> optax transformation for method_params
    epoch_end: Callable | None = None
    uses_teacher_predictions: bool = False  # the step runs the teacher on the clean view and passes its probs
    uses_mixup: bool = False  # Mixup (config.mixup) is part of the method's definition
    uses_gc_weight: bool = False  # the loss reads the trigger's gc_weight knob (for the others the trigger only
    #                               runs as a diagnostic: its fired_epoch is recorded, gc_weight stays 0)
    aux_keys: tuple = ()  # names of the per-batch sums that prepare/loss return in `aux`


# ---------------------------------------------------------------------------------------------------------------
# an, full


def _an_loss(logits, targets, ctx):
    return losses.mean_bc(losses.an(logits, targets["observed"])), {}


def _full_targets(batch, ctx):
    # The upper bound: every label observed. The ONLY method allowed to read the hidden full labels in a loss.
    return {"labels": batch["labels"]}, ctx.method_state, {}


def _full_loss(logits, targets, ctx):
    return losses.mean_bc(losses.full(logits, targets["labels"])), {}


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
    an = gc.log_sigmoid_an_loss(logits, targets["an_observed"])
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
    uses_gc_weight=True,
    aux_keys=ADAGC_AUX_KEYS,
)

def observed_rows(batch) -> jnp.ndarray:
    """(B,) 1.0 where the example has an observed positive (rows without positives carry no observed label)."""
    return (jnp.max(batch["observed"], axis=-1) > 0).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------------------------
# Baselines (METHOD.md section 8, defined in BASELINES.md; the losses are losses.py's). Hyper-parameters come from
# config.losses.<name> (defaults = the official code's). losses.py returns the per-entry terms; each loss hook below
# applies the official reduction (mean over B*C; Hill/SPLC: config's `reduction`; EPR/ROLE: + their regulariser).
# Per-epoch schedules are knobs (traced, never recompiled); per-dataset state (ROLE's Z, LL-Cp's and APL's observed
# tables) lives in method_params / method_state, so it is replicated on the devices and checkpointed with the run.
# The schedules and the host-side state updates (initial Z, APL's pseudo-labels) are loss_schedules.py's.


def _hp(ctx, name):
    return ctx.config.losses[name]


def _expected_num_pos(config, name, data) -> float:
    """EPR/ROLE's prior k: losses.<name>.expected_num_pos, or the training set's label cardinality when it is < 0."""
    k = config.losses[name].expected_num_pos
    if k >= 0:
        return k
    if data.label_cardinality is None:
        raise config_utils.ConfigError(f"losses.{name}.expected_num_pos=-1 needs the training set's label "
                                       "cardinality, which is not known here; set the value explicitly")
    return float(data.label_cardinality)


def _prior_state(name):
    def init(config, data, rng):
        return {}, {"expected_num_pos": jnp.float32(_expected_num_pos(config, name, data))}
    return init


def _table_state(config, data, rng):
    # A device copy of the observed table that the method rewrites (LL-Cp's corrections, APL's soft negatives).
    return {}, {"observed": jnp.asarray(data.observed, jnp.float32)}


def _table_targets(batch, ctx):
    """The batch rows of the method's own observed table (not the loader's, which stays the initial draw).

    A row written during epoch e is read the next time its image is drawn, i.e. in epoch e + 1, as in the
    official loaders that are re-forked every epoch.
    """
    return {"observed": ctx.method_state["observed"][batch["id"]]}, ctx.method_state, {}


# an_ls, wan, epr (Cole et al., BASELINES.md section 3)

def _an_ls_loss(logits, targets, ctx):
    return losses.mean_bc(losses.an_ls(logits, targets["observed"], ls_coef=float(_hp(ctx, "an_ls").ls_coef))), {}


def _wan_loss(logits, targets, ctx):
    return losses.mean_bc(losses.wan(logits, targets["observed"])), {}


def _epr_loss(logits, targets, ctx):
    terms, regulariser = losses.epr(logits, targets["observed"], ctx.method_state["expected_num_pos"])
    return losses.mean_bc(terms) + regulariser, {}


AN_LS = Method(name="an_ls", description="assume negative with label smoothing (Cole et al.)", loss=_an_ls_loss)
WAN = Method(name="wan", description="weak assume negative: unobserved terms weighted 1/(C-1) (Cole et al.)",
             loss=_wan_loss)
EPR = Method(name="epr", description="expected positive regularisation (Cole et al.)", loss=_epr_loss,
             init=_prior_state("epr"))


# role (BASELINES.md section 3)

def _role_init(config, data, rng):
    """Z (N, C): a(2u - 1) on unobserved entries (q in (0.4, 0.6)), logit(0.995) on observed positives."""
    _, state = _prior_state("role")(config, data, rng)
    return {"label_logits": loss_schedules.role_init_label_logits(rng, data.observed)}, state


def _role_loss(logits, targets, ctx):
    # The gather makes Z's gradient dense with zero rows outside the batch: Adam's moments still move those rows,
    # as torch's Adam moves a dense Parameter (BASELINES.md section 3 and pitfall 5).
    label_logits = ctx.method_params["label_logits"][ctx.batch["id"]]
    terms, regulariser = losses.role(logits, targets["observed"], label_logits, ctx.method_state["expected_num_pos"])
    return losses.mean_bc(terms) + regulariser, {}


def _role_optimizer(config, schedule):
    """Adam on Z at lr_mult times the network's learning rate (Cole's second parameter group), no weight decay."""
    multiplier = config.losses.role.lr_mult
    return optax.adam(lambda step: multiplier * schedule(step))


ROLE = Method(
    name="role",
    description="regularised online label estimation: a learned label-logit table Z trained jointly (Cole et al.)",
    loss=_role_loss,
    init=_role_init,
    param_optimizer=_role_optimizer,
)


# ll_r, ll_ct, ll_cp (Kim et al., BASELINES.md section 4)

def _ll_knobs(name):
    def knobs(config, epoch):
        # rate = 1 - clean_rate by the official repeated float64 subtraction, then fed as a float32 knob.
        return {"ll_rate": loss_schedules.ll_rate(epoch, config.losses[name].delta_rel)}
    return knobs


def _ll_loss(scheme):
    def loss(logits, targets, ctx):
        # Mean over the same batch the k largest unobserved losses were selected in.
        return losses.mean_bc(losses.ll(logits, targets["observed"], scheme, ctx.knobs["ll_rate"])), {}
    return loss


def _ll_cp_knobs(config, epoch):
    # The intended LL-Cp: no modification in epoch 1, then a FIXED k = ceil(B*C*delta_rel) per batch.
    return {"ll_rate": 0.0 if epoch < 2 else config.losses.ll_cp.delta_rel}


def _ll_cp_after_update(logits, targets, ctx):
    """Writes o = 1 into the method's observed table where u > t strictly (this step's pre-update logits)."""
    flips = losses.ll_cp_flips(logits, targets["observed"], ctx.knobs["ll_rate"])
    rows = jnp.where(flips, 1.0, targets["observed"])
    table = ctx.method_state["observed"].at[ctx.batch["id"]].set(rows)
    return {**ctx.method_state, "observed": table}


LL_R = Method(name="ll_r", description="large loss rejection with a growing rate (Kim et al.)", loss=_ll_loss("R"),
              knobs=_ll_knobs("ll_r"))
LL_CT = Method(name="ll_ct", description="large loss temporary correction with a growing rate (Kim et al.)",
               loss=_ll_loss("Ct"), knobs=_ll_knobs("ll_ct"))
LL_CP = Method(
    name="ll_cp",
    description="large loss permanent correction, the paper's (intended) version (Kim et al.)",
    loss=_ll_loss("Ct"),
    prepare=_table_targets,
    init=_table_state,
    knobs=_ll_cp_knobs,
    after_update=_ll_cp_after_update,
)
"""LL-Cp as the paper and the first code commit (ac475fe) define it: from epoch 2, LL-Ct with a fixed per-batch
k = ceil(B*C*delta_rel), and after each optimizer step the entries with u > t (strict) become observed positives
in the method's observed table (method_state['observed'], checkpointed), seen as such from the next epoch.
NOT reproduced: the released code (HEAD) tests `P['mod_scheme'] is 'LL-Cp'`, which is False for a string from argv,
so released LL-Cp skips both the fixed k and the write and behaves exactly like LL-Ct (BASELINES.md section 4)."""


# em, em_apl (Zhou et al., BASELINES.md section 5)

def _em_loss(logits, targets, ctx):
    return losses.mean_bc(losses.em(logits, targets["observed"], float(_hp(ctx, "em").alpha))), {}


def _apl_init(config, data, rng):
    _, state = _table_state(config, data, rng)
    # U_c^0, counted once on the initial table.
    state["initial_unobserved"] = jnp.sum(state["observed"] == 0, axis=0).astype(jnp.int32)
    return {}, state


def _apl_loss(logits, targets, ctx):
    hp = _hp(ctx, "em_apl")
    return losses.mean_bc(losses.em_apl(logits, targets["observed"], hp.alpha, hp.beta)), {}


def _apl_epoch_end(config, epoch, method_state, predict_train):
    """APL's negative pseudo-labelling (loss_schedules.apl_update, BASELINES.md section 5) after epoch >= warmup.

    Deviations, on purpose: the probabilities come from the student in inference mode on the UN-augmented training
    images (the official pass runs the train loader with its random flips); and the pass after the final epoch,
    which cannot change training, is skipped. With num_epochs <= warmup APL never labels (the official code would
    divide by zero at epoch T = warmup), i.e. the run is EM.
    """
    hp = config.losses.em_apl
    warmup, num_epochs = hp.warmup, config.num_epochs
    if epoch < warmup or epoch >= num_epochs:
        return method_state
    table = loss_schedules.apl_update(predict_train(), method_state["observed"],
                                      method_state["initial_unobserved"], hp.neg_proportion, num_epochs, warmup)
    return {**method_state, "observed": table}


EM = Method(name="em", description="entropy maximisation on unobserved labels (Zhou et al.)", loss=_em_loss)
EM_APL = Method(
    name="em_apl",
    description="entropy maximisation + asymmetric (negative-only) pseudo-labelling at epoch end (Zhou et al.)",
    loss=_apl_loss,
    prepare=_table_targets,
    init=_apl_init,
    epoch_end=_apl_epoch_end,
)


# hill, splc (Zhang et al., BASELINES.md section 7)

def _hill_loss(logits, targets, ctx):
    hp = _hp(ctx, "hill")
    terms = losses.hill(logits, targets["observed"], lamb=hp.lamb, margin=hp.margin,
                        gamma=hp.gamma)
    return losses.reduce(terms, hp.reduction), {}


def _splc_knobs(config, epoch):
    return {"splc_epoch": epoch - 1}  # SPLC counts epochs from 0 (its correction starts in the 2nd epoch)


def _splc_loss(logits, targets, ctx):
    hp = _hp(ctx, "splc")
    terms = losses.splc(logits, targets["observed"], ctx.knobs["splc_epoch"], tau=hp.tau,
                        change_epoch=hp.change_epoch, margin=hp.margin, gamma=hp.gamma)
    return losses.reduce(terms, hp.reduction), {}


HILL = Method(name="hill", description="Hill loss: focal margin on positives, hill-shaped negatives (Zhang et al.)",
              loss=_hill_loss)
SPLC = Method(name="splc", description="self-paced loss correction: confident unobserved labels become positive "
                                       "from the 2nd epoch (Zhang et al.)", loss=_splc_loss, knobs=_splc_knobs)


# gr (Chen et al., BASELINES.md section 6)

def _gr_knobs(config, epoch):
    hp = config.losses.gr
    w, b, mu, sigma = loss_schedules.gr_schedule(epoch, config.num_epochs, hp.linear_init_epochs,
                                                 tuple(float(v) for v in hp.beta), tuple(float(v) for v in hp.alpha))
    return {"gr_w": float(w), "gr_b": float(b), "gr_mu": float(mu), "gr_sigma": float(sigma)}


def _gr_loss(logits, targets, ctx):
    hp, k = _hp(ctx, "gr"), ctx.knobs
    terms = losses.gr_from_schedule(logits, targets["observed"], k["gr_w"], k["gr_b"], k["gr_mu"], k["gr_sigma"],
                                    q2=hp.q2, q3=hp.q3)
    return losses.mean_bc(terms), {}


GR = Method(name="gr", description="generalized robust loss with scheduled soft pseudo-labels and Gaussian "
                                   "re-weighting (Chen et al.)", loss=_gr_loss, knobs=_gr_knobs)

BASELINES = (AN_LS, WAN, EPR, ROLE, EM, EM_APL, LL_R, LL_CT, LL_CP, HILL, SPLC, GR)
# The one registry of methods, in the order of METHOD.md section 8 (the order of the benchmark's tables).
METHODS = {m.name: m for m in (ADAGC, AN, *BASELINES, FULL)}
