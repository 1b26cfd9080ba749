"""Every check of a run's config, in one place, run before any work (no dataset preparation, no compilation).

Two tables: CHOICES (key -> the valid names) and RANGES (key -> the valid interval). A value outside them is a
ConfigError that names the key, the value and what is valid, so a typo or a wrong sign fails in a second instead of
after an epoch. Every float of the config must also be finite. The README links these tables.
"""

from __future__ import annotations

import dataclasses
import math
import os

from adagc_jax import beam_options, config_utils, conv, gc, input_pipeline, methods, models, noise, optim, trigger
from adagc_jax.errors import ConfigError

# Signals the trigger can watch (train.epoch_record computes each from the step's sums).
TRIGGER_SIGNALS = ("observed_fit", "train_loss", "unobserved_mass", "observed_top1")

CHOICES = {
    "runner": ("train", "sweep"),
    "resume": ("auto", "force"),
    "method": methods.METHODS,
    "noise": noise.NOISE_TYPES,
    "dataset.name": input_pipeline.DATASET_MODULES,
    "model.name": models.MODELS,
    "model.dtype": models.DTYPES,
    "model.conv_impl": conv.CONV_IMPLS,
    "optimizer.name": optim.OPTIMIZERS,
    "optimizer.schedule": optim.SCHEDULES,
    "gc.mode": gc.GC_MODES,
    "trigger.rule": trigger.TRIGGER_RULES,
    "trigger.signal": TRIGGER_SIGNALS,
    "eval.empty_class_ap": ("skip", "zero"),
    "eval.select": ("final", "best_val"),
    "losses.hill.reduction": ("sum", "mean"),
    "losses.splc.reduction": ("sum", "mean"),
}


@dataclasses.dataclass(frozen=True)
class Range:
    """low <= value <= high (strict where `*_open`); `also` lists sentinel values that are valid too (e.g. -1)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    also: tuple = ()
    integer: bool = False

    def contains(self, value) -> bool:
        if value in self.also:
            return True
        if self.integer and (isinstance(value, bool) or int(value) != value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        text = f"{'an integer' if self.integer else 'a number'} in {left}{self.low:g}, {self.high:g}{right}"
        return text + (f" or one of {list(self.also)}" if self.also else "")


def _int(low=1, high=math.inf, also=()):
    return Range(low, high, also=also, integer=True)


PROBABILITY = Range(0.0, 1.0)
NON_NEGATIVE = Range(0.0)
POSITIVE = Range(0.0, low_open=True)

RANGES = {
    "seed": _int(0),
    "num_epochs": _int(1),
    "batch_size": _int(1),
    "eval_batch_size": _int(1),
    "num_devices": _int(1, also=(-1,)),
    # Above 10 no optimizer here trains (1e6 gave a finite loss and a frozen, dead model).
    "optimizer.learning_rate": Range(0.0, 10.0, low_open=True),
    "optimizer.weight_decay": Range(0.0, 1.0, high_open=True),
    "optimizer.momentum": Range(0.0, 1.0, high_open=True),
    "optimizer.warmup_epochs": NON_NEGATIVE,
    "dataset.image_size": _int(8),
    "dataset.shuffle_buffer": _int(1),
    "model.head_init_std": NON_NEGATIVE,
    "model.convs_per_stage": _int(1),
    "gc.tau": Range(0.0, 1.0, low_open=True, high_open=True),
    "gc.rampup_epochs": _int(0),
    "ema.m_w": PROBABILITY,
    "ema.m_p": PROBABILITY,
    "mixup.alpha": NON_NEGATIVE,
    "trigger.window": _int(2),
    "trigger.eps": NON_NEGATIVE,
    "trigger.min_epochs": _int(0),
    "trigger.max_epochs": _int(1, also=(-1,)),
    "trigger.epoch": _int(1, also=(-1,)),
    "eval.every_epochs": _int(1),
    "eval.curves_every_epochs": _int(1),
    "eval.device_cache_mb": NON_NEGATIVE,
    "eval.stall_epochs": _int(0),
    "eval.early_stop_points": Range(0.0, 100.0),
    "checkpoint.every_epochs": _int(1),
    "checkpoint.keep": _int(1),
    "log.every_steps": _int(1),
    "losses.an_ls.ls_coef": Range(0.0, 1.0, high_open=True),
    "losses.epr.expected_num_pos": Range(0.0, low_open=True, also=(-1.0,)),
    "losses.role.expected_num_pos": Range(0.0, low_open=True, also=(-1.0,)),
    "losses.role.lr_mult": POSITIVE,
    "losses.em.alpha": NON_NEGATIVE,
    "losses.em_apl.alpha": NON_NEGATIVE,
    "losses.em_apl.beta": PROBABILITY,
    "losses.em_apl.warmup": _int(1),
    "losses.em_apl.neg_proportion": PROBABILITY,
    "losses.ll_r.delta_rel": Range(0.0, 1.0, high_open=True),
    "losses.ll_ct.delta_rel": Range(0.0, 1.0, high_open=True),
    "losses.ll_cp.delta_rel": Range(0.0, 1.0, high_open=True),
    "losses.hill.lamb": NON_NEGATIVE,
    "losses.hill.margin": NON_NEGATIVE,
    "losses.hill.gamma": NON_NEGATIVE,
    "losses.splc.tau": Range(0.0, 1.0, low_open=True, high_open=True),
    "losses.splc.change_epoch": _int(0),
    "losses.splc.margin": NON_NEGATIVE,
    "losses.splc.gamma": NON_NEGATIVE,
    "losses.gr.q2": POSITIVE,
    "losses.gr.q3": POSITIVE,
    "losses.gr.linear_init_epochs": _int(0),
}


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def validate_config(config) -> None:
    """Raises ConfigError on the first key outside CHOICES / RANGES, a non-finite float, or a model option the
    chosen model does not take. Keys a config does not have (e.g. small_cnn's widths in a ResNet config) are
    skipped."""
    for key, valid in CHOICES.items():
        value = _get(config, key)
        if value is not _MISSING:
            config_utils.lookup(valid, value, key)
    for key, value in _flat_items(config):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value} is not a finite number")
    for key, valid in RANGES.items():
        value = _get(config, key)
        if value is not _MISSING and not valid.contains(value):
            raise ConfigError(f"{key}={value!r} is out of range: it must be {valid.describe()}")
    if "widths" in config.model and (not config.model.widths or min(config.model.widths) < 1):
        raise ConfigError(f"model.widths={tuple(config.model.widths)} must be a non-empty list of positive ints")
    if config.trigger.rule == "fixed" and config.trigger.epoch < 1:
        raise ConfigError("trigger.rule='fixed' needs --config.trigger.epoch=<the epoch after which GC starts>")
    if not config.trigger.act_windows or min(config.trigger.act_windows) < 2:
        raise ConfigError(f"trigger.act_windows={tuple(config.trigger.act_windows)} must be window sizes >= 2")
    if (config.trigger.rule == "act" and methods.METHODS[config.method].uses_gc_weight
            and config.checkpoint.every_epochs != 1):
        raise ConfigError("trigger.rule='act' rolls back to a warm-up epoch, so every epoch needs a checkpoint: "
                          "set --config.checkpoint.every_epochs=1")
    if config.optimizer.warmup_epochs > config.num_epochs:
        raise ConfigError(f"optimizer.warmup_epochs={config.optimizer.warmup_epochs} is longer than the run "
                          f"(num_epochs={config.num_epochs})")
    path = config.model.get("pretrained", "")
    if path and not os.path.isfile(os.path.expanduser(path)):
        raise ConfigError(f"model.pretrained={path!r} does not exist; docs/pretrained.md says where to download "
                          "ImageNet weights (nothing is downloaded for you)")
    if path and config.model.get("stem") != "imagenet":
        raise ConfigError("model.pretrained needs a ResNet with model.stem='imagenet' (the ImageNet weights' stem)")
    beam_options.check(config.dataset.get("beam_options", ""), config.dataset.name)
    models.model_from_config(config.model, num_classes=1)  # unknown model options fail here, listing the valid ones


def _flat_items(config, prefix=""):
    for key, value in config.items():
        if hasattr(value, "items"):
            yield from _flat_items(value, f"{prefix}{key}.")
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                yield f"{prefix}{key}[{i}]", v
        else:
            yield f"{prefix}{key}", value
