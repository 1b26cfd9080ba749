"""The ONE jitted, data-parallel train step and the eval step, built by factories (ARCHITECTURE.md data flow).

train_step(state, sums, batch, knobs) -> (state, sums)
  teacher forward on the clean view (methods that use it) -> method.prepare (e.g. memory bank update, pseudo-labels)
  -> Mixup (methods whose definition has it) -> student forward/backward with the method's loss -> optax update
  -> method.after_update -> weight EMA -> running SUMS of the epoch's metrics.

`knobs` are traced scalars (gc_weight, epoch, the method's schedules): a new value never recompiles.
`sums` accumulate on device and are fetched by the loop once per log interval / epoch, so the step never waits for
the host. The state and the sums are donated: their buffers are reused in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from adagc_jax import ema, methods, mixup, models, parallel
from adagc_jax.state import TrainState

# Returned by the step when every loss so far was finite.
NO_NONFINITE_STEP = -1


def init_sums(aux_keys=()) -> dict:
    """Zeroed epoch accumulators. The key set is fixed for a run (a new key would change the step's signature)."""
    sums = {
        "loss": 0.0,  # sum of batch losses
        "batches": 0.0,
        "examples": 0.0,
        "observed_fit": 0.0,  # sum over examples of p(observed positive) (trigger signal `observed_fit`)
        "observed_rows": 0.0,
        # rows whose observed positive is the argmax of the predictions (trigger signal `observed_top1`, rule `act`)
        "observed_top1": 0.0,
        "unobserved_mass": 0.0,  # sum of p over unobserved entries (trigger signal `unobserved_mass`)
        "unobserved_entries": 0.0,
    }
    sums.update({k: 0.0 for k in aux_keys})
    out = {k: jnp.asarray(v, jnp.float32) for k, v in sums.items()}
    # First step whose loss was not finite (NO_NONFINITE_STEP while all were finite).
    out["first_nonfinite_step"] = jnp.asarray(NO_NONFINITE_STEP, jnp.int32)
    return out


def accumulate_sums(sums: dict, loss, batch: dict, probs, aux: dict, step) -> dict:
    """Adds one step's contributions to the epoch sums: the loss, the trigger signals' numerators and denominators
    from `probs` (clean-view predictions), the method's aux sums, and the first step with a non-finite loss."""
    observed = batch["observed"]
    step_sums = {
        "loss": loss,
        "batches": 1.0,
        "examples": jnp.float32(observed.shape[0]),
        "observed_fit": jnp.sum(observed * probs),
        "observed_rows": jnp.sum(methods.observed_rows(batch)),
        # argmax takes the first class on ties; a row counts when that class is its observed positive.
        "observed_top1": jnp.sum(observed * jax.nn.one_hot(jnp.argmax(probs, axis=-1), observed.shape[-1],
                                                           dtype=observed.dtype)),
        "unobserved_mass": jnp.sum((1.0 - observed) * probs),
        "unobserved_entries": jnp.sum(1.0 - observed),
        **aux,
    }
    new_sums = {k: sums[k] + jnp.asarray(v, jnp.float32) for k, v in step_sums.items()}
    first_bad = sums["first_nonfinite_step"]
    new_sums["first_nonfinite_step"] = jnp.where(
        (first_bad == NO_NONFINITE_STEP) & ~jnp.isfinite(loss), step.astype(jnp.int32), first_bad)
    return new_sums


def make_train_step(config, model, method: methods.Method, optimizer: optax.GradientTransformation,
                    mesh, method_optimizer: optax.GradientTransformation | None = None) -> Callable:
    """Builds the jitted train step. Static choices (method, Mixup on/off, EMA on/off) are fixed here."""
    use_mixup = method.uses_mixup and config.mixup.alpha > 0
    mixup_alpha = config.mixup.alpha
    use_weight_ema = config.ema.weights
    ema_momentum = config.ema.m_w

    def train_step(state: TrainState, sums: dict, batch: dict, knobs: dict):
        step_rng, mix_rng, next_rng = jax.random.split(state.rng, 3)
        del step_rng  # reserved for methods that draw their own randomness
        images = batch["image"]

        teacher_probs = None
        if method.uses_teacher_predictions:
            # The teacher always sees the UN-mixed augmented view (METHOD.md section 3), in inference mode.
            teacher_vars = state.teacher if use_weight_ema else state.student_variables()
            teacher_probs = jax.nn.sigmoid(model.apply(teacher_vars, images, train=False))
            teacher_probs = jax.lax.stop_gradient(teacher_probs)

        ctx = methods.StepContext(batch=batch, knobs=knobs, method_params=state.method_params,
                                  method_state=state.method_state, teacher_probs=teacher_probs, config=config)
        targets, method_state, prep_aux = method.prepare(batch, ctx)
        ctx = ctx._replace(method_state=method_state)

        if use_mixup:
            images, targets, _ = mixup.mixup(mix_rng, images, targets, mixup_alpha, mesh=mesh)

        def loss_fn(params, method_params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, new_model_state = model.apply(variables, images, train=True, mutable=["batch_stats"])
            loss, aux = method.loss(logits, targets, ctx._replace(method_params=method_params))
            return loss, (aux, new_model_state["batch_stats"], logits)

        grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
        (loss, (loss_aux, batch_stats, logits)), (grads, method_grads) = grad_fn(state.params, state.method_params)

        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        method_params, method_opt_state = state.method_params, state.method_opt_state
        if method_optimizer is not None:
            m_updates, method_opt_state = method_optimizer.update(method_grads, method_opt_state, method_params)
            method_params = optax.apply_updates(method_params, m_updates)

        if method.after_update is not None:
            method_state = method.after_update(logits, targets, ctx)

        teacher = state.teacher
        if use_weight_ema:
            # EMA 1 over params AND BatchNorm statistics, after every optimizer update (METHOD.md section 3).
            teacher = ema.ema_update(teacher, {"params": params, "batch_stats": batch_stats}, ema_momentum)

        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                                  teacher=teacher, method_params=method_params, method_opt_state=method_opt_state,
                                  method_state=method_state, rng=next_rng)

        # Trigger signals from the teacher's clean-view predictions when the method computes them, otherwise from
        # the student's (un-mixed for every method without Mixup).
        probs = teacher_probs if teacher_probs is not None else jax.nn.sigmoid(logits)
        return new_state, accumulate_sums(sums, loss, batch, probs, {**prep_aux, **loss_aux}, state.step)

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(_at_most_one_trace(train_step), in_shardings=(rep, rep, dat, rep), out_shardings=(rep, rep),
                   donate_argnums=(0, 1), compiler_options=models.compiler_options(model))


class RetraceError(AssertionError):
    """The step was traced again: a recompilation in the middle of a run (a bug: some argument changed its
    shape, dtype or structure)."""


def _at_most_one_trace(fn):
    """Fails loudly when `fn` is traced a second time (style rule 4). Counted per built step, unlike
    chex.assert_max_traces, which counts per definition site and so across runs in one process."""
    traces = 0

    @functools.wraps(fn)
    def wrapped(*args):
        nonlocal traces
        traces += 1
        if traces > 1:
            shapes = jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", args[2])
            raise RetraceError(f"the train step was traced {traces} times; it must compile once per run. "
                               f"Batch seen on this trace: {shapes}")
        return fn(*args)

    return wrapped


def make_eval_step(model, mesh) -> Callable:
    """eval_step(variables, images) -> probabilities (B, C), batch sharded; BatchNorm in inference mode."""

    def eval_step(variables, images):
        return jax.nn.sigmoid(model.apply(variables, images, train=False))

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(eval_step, in_shardings=(rep, dat), out_shardings=dat,
                   compiler_options=models.compiler_options(model))
