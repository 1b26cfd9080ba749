"""The one setup sequence of a run, shared by the trainer, the tests and the benchmarks: method, model, optimizers,
the initial state, the jitted train and eval steps, and the per-epoch knobs and sums fed to the step.

Needs no dataset: `DatasetInfo` (shapes, classes, split sizes) and the observed-label table are enough, so a test or
a benchmark can build the exact step a run uses on made-up data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adagc_jax import methods, models, optim, parallel, pretrained, reporting
from adagc_jax import train_step as train_step_lib
from adagc_jax import trigger as trigger_lib
from adagc_jax.state import TrainState


@dataclasses.dataclass
class Experiment:
    """What a run trains with; built by `build`."""

    config: Any
    mesh: Any
    info: Any  # input_pipeline.DatasetInfo (or a stand-in with the same fields)
    steps_per_epoch: int
    method: methods.Method
    model: Any
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    method_optimizer: optax.GradientTransformation | None
    train_step: Callable  # (state, sums, batch, knobs) -> (state, sums)
    eval_step: Callable  # (variables, images) -> probabilities

    def initial_state(self, observed, label_cardinality: float | None = None) -> TrainState:
        """The initial state, built on the host and placed replicated on the mesh."""
        config = self.config
        init_key, method_key, step_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
        variables = models.init_variables(self.model, init_key, self.info.image_shape)
        if config.model.get("pretrained"):
            variables = pretrained.load(config.model.pretrained, variables, log=reporting.log)
        params, batch_stats = variables["params"], variables.get("batch_stats", {})
        data = methods.DataInfo(num_train=self.info.num_examples["train"], num_classes=self.info.num_classes,
                                observed=observed, label_cardinality=label_cardinality)
        method_params, method_state = self.method.init(config, data, method_key)
        teacher = None
        if config.ema.weights:
            # The teacher starts as a copy of the student (METHOD.md section 3).
            teacher = jax.tree.map(jnp.array, {"params": params, "batch_stats": batch_stats})
        state = TrainState(
            step=jnp.asarray(0, jnp.int32), params=params, batch_stats=batch_stats,
            opt_state=self.optimizer.init(params), teacher=teacher, method_params=method_params,
            method_opt_state=self.method_optimizer.init(method_params) if self.method_optimizer else {},
            method_state=method_state, rng=step_key)
        return parallel.replicate(state, self.mesh)

    def knobs(self, epoch: int, gc_weight: float) -> dict:
        """The step's traced per-epoch scalars (a new value never recompiles), replicated."""
        knobs = {"epoch": jnp.float32(epoch), "gc_weight": jnp.float32(gc_weight)}
        knobs.update({k: jnp.float32(v) for k, v in self.method.knobs(self.config, epoch).items()})
        return parallel.replicate(knobs, self.mesh)

    def init_sums(self) -> dict:
        """Zeroed epoch accumulators of the step, replicated."""
        return parallel.replicate(train_step_lib.init_sums(self.method.aux_keys), self.mesh)

    def gc_weight(self, trigger: trigger_lib.AdaptiveTrigger) -> float:
        """The trigger's GC weight for methods whose loss reads it; for the others the trigger is a diagnostic."""
        return trigger.gc_weight() if self.method.uses_gc_weight else 0.0


def build(config, info, steps_per_epoch: int, mesh=None) -> Experiment:
    """The experiment of a validated config (config_checks.validate_config) on data described by `info`."""
    mesh = mesh if mesh is not None else parallel.make_mesh(None if config.num_devices <= 0 else config.num_devices)
    method = methods.METHODS[config.method]
    model = models.model_from_config(config.model, info.num_classes)
    optimizer, schedule = optim.make_optimizer(config.optimizer, config.num_epochs, steps_per_epoch)
    method_optimizer = method.param_optimizer(config, schedule) if method.param_optimizer is not None else None
    return Experiment(
        config=config, mesh=mesh, info=info, steps_per_epoch=steps_per_epoch, method=method, model=model,
        optimizer=optimizer, schedule=schedule, method_optimizer=method_optimizer,
        train_step=train_step_lib.make_train_step(config, model, method, optimizer, mesh, method_optimizer),
        eval_step=train_step_lib.make_eval_step(model, mesh))


def make_trigger(config) -> trigger_lib.AdaptiveTrigger:
    t = config.trigger
    max_epochs = t.max_epochs if t.max_epochs > 0 else max(1, config.num_epochs // 2)
    return trigger_lib.AdaptiveTrigger(rule=t.rule, window=t.window, eps=t.eps, min_epochs=t.min_epochs,
                                       max_epochs=max_epochs, epoch=t.epoch if t.epoch >= 0 else None,
                                       rampup_epochs=config.gc.rampup_epochs, act_windows=tuple(t.act_windows))
