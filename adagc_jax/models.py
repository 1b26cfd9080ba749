"""Flax models by name: a small CNN for CPU runs, ResNet-18 and ResNet-50 (ARCHITECTURE.md layout, `models.py`).

Every model maps images (B, H, W, bands), any number of bands, to logits (B, num_classes) float32 and is applied as

  train: model.apply({'params': p, 'batch_stats': bs}, x, train=True, mutable=['batch_stats'])
  eval:  model.apply({'params': p, 'batch_stats': bs}, x, train=False)

BatchNorm normalises with the batch statistics in training and with the running averages in eval, so an eval output
depends on its own image only and eval mutates nothing.

Shared choices:
- The classification head has a zero bias and a kernel drawn from N(0, head_init_std^2), default std 0.01: every
  initial logit is close to 0 (probabilities 0.5 to about +-0.02), which METHOD.md section 6 relies on (the
  `observed_fit` trigger signal starts at 0.5, falls to the level the single positives support, then plateaus).
  The kernel is NOT exactly zero (head_init_std=0 gives that): with a zero kernel the gradient reaching every
  feature is W^T dL/dlogits = 0, so the convolutions do not learn until the head has grown on random features.
  Full labels escape that saddle at once, but single positives give the head so weak a signal that
  assume-negative training stalled at the label prior for 5-7 epochs on synthetic_scenes (and reached 71 instead
  of 74 test mAP); docs/memorization.md has the numbers.
- BatchNorm momentum 0.9 and epsilon 1e-5: flax's `running = momentum * running + (1 - momentum) * batch`, i.e. the
  same update as PyTorch's BatchNorm default (its momentum=0.1 weighs the NEW batch). Flax keeps the biased batch
  variance in the running average (PyTorch the unbiased one); the difference is negligible at training batch sizes.
- `dtype` is the computation dtype (bfloat16 on TPU/GPU). Parameters stay float32 (`param_dtype`), and the global
  average pool and the head run in float32, so logits are float32 whatever `dtype` is: probabilities near the
  0.5 start and the losses computed from logits do not see bfloat16 rounding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from adagc_jax import config_utils, conv
from adagc_jax.errors import ConfigError

# PyTorch-equivalent BatchNorm settings (see the module docstring).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Stems of the ResNets: 'imagenet' = 7x7/2 conv + 3x3/2 max-pool (for 120-600 px inputs, as torchvision);
# 'small' = one 3x3/1 conv, no pool (for ~48 px inputs, where /4 at the start would leave too few pixels).
RESNET_STEMS = ("imagenet", "small")

HEAD_INIT_STD = 0.01  # std of the head kernel at initialisation (module docstring)


def _batch_norm(train: bool, dtype: Any, name: str | None = None, zero_scale: bool = False) -> nn.BatchNorm:
    """BatchNorm with the project's momentum/epsilon; batch statistics in training, running averages in eval."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
        name=name,
    )


def _head(num_classes: int, kernel_std: float) -> nn.Dense:
    """The float32 classification head: zero bias, kernel ~ N(0, kernel_std^2) (all zeros when kernel_std is 0)."""
    return nn.Dense(
        num_classes,
        dtype=jnp.float32,
        kernel_init=nn.initializers.normal(kernel_std) if kernel_std > 0 else nn.initializers.zeros,
        bias_init=nn.initializers.zeros,
        name="head",
    )


def _pool_and_classify(x: jax.Array, num_classes: int, head_init_std: float) -> jax.Array:
    """Global average pool (in float32) then the head: (B, H, W, F) -> (B, num_classes) float32."""
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return _head(num_classes, head_init_std)(features)


class SmallCNN(nn.Module):
    """A CNN sized for 2 CPU cores.

    Each stage: `convs_per_stage` x [3x3 conv (no bias; BatchNorm's shift replaces it) -> BatchNorm -> ReLU], then a
    2x2/2 max-pool; after the last stage a global average pool and the Dense head (near-zero init). `widths` gives
    the number of filters per stage, any number of stages (e.g. (32, 64, 128) to study memorisation).

    `conv_impl` picks how the convolutions, BatchNorms and max-pools are computed (adagc_jax/conv.py): 'xla' =
    flax's nn.Conv, nn.BatchNorm + relu and nn.max_pool; 'cpu' = conv.Conv3x3, conv.BatchNormReLU and
    conv.max_pool_2x2_same, with gradients XLA:CPU runs faster, and the steps compiled with conv.COMPILER_OPTIONS
    (same parameters, same numbers to float32 round-off); 'auto' = 'cpu' on the CPU backend, 'xla' elsewhere.
    """

    num_classes: int
    widths: Sequence[int] = (16, 32, 64)
    convs_per_stage: int = 1
    head_init_std: float = HEAD_INIT_STD
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    def __post_init__(self):
        # Fail at construction rather than at the first init/apply, with the offending value in the message.
        if len(self.widths) == 0 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"SmallCNN: widths must be a non-empty sequence of positive ints, got {self.widths!r}")
        if self.convs_per_stage < 1:
            raise ValueError(f"SmallCNN: convs_per_stage must be >= 1, got {self.convs_per_stage!r}")
        if self.conv_impl not in conv.CONV_IMPLS:
            raise ValueError(f"SmallCNN: conv_impl={self.conv_impl!r} is not valid; valid values: "
                             f"{list(conv.CONV_IMPLS)}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        custom = conv.use_custom_path(self.conv_impl)
        x = x.astype(self.dtype)
        for stage, width in enumerate(self.widths):
            for i in range(self.convs_per_stage):
                name = f"stage{stage}_conv{i}"
                if custom:
                    x = conv.Conv3x3(int(width), dtype=self.dtype, name=name)(x)
                else:
                    x = nn.Conv(int(width), (3, 3), padding="SAME", use_bias=False, dtype=self.dtype, name=name)(x)
                if custom:
                    x = conv.BatchNormReLU(not train, BN_MOMENTUM, BN_EPSILON, self.dtype,
                                           name=f"stage{stage}_bn{i}")(x)
                else:
                    x = nn.relu(_batch_norm(train, self.dtype, name=f"stage{stage}_bn{i}")(x))
            # SAME padding: an odd side keeps its last row/column instead of silently dropping it, and a side that
            # is already 1 stays 1 instead of shrinking to 0 when there are more stages than halvings.
            if custom:
                x = conv.max_pool_2x2_same(x)
            else:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        return _pool_and_classify(x, self.num_classes, self.head_init_std)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): 3x3 conv -> BN -> ReLU -> 3x3 conv -> BN, plus shortcut, then ReLU.

    The shortcut is a 1x1 strided conv + BN when the shape changes (torchvision's projection shortcut).
    """

    filters: int
    strides: int = 1
    zero_init_residual: bool = True
    dtype: Any = jnp.float32

    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        residual = x
        y = nn.Conv(self.filters, (3, 3), strides=self.strides, padding=((1, 1), (1, 1)), use_bias=False,
                    dtype=self.dtype, name="conv1")(x)
        y = nn.relu(_batch_norm(train, self.dtype, name="bn1")(y))
        y = nn.Conv(self.filters, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                    name="conv2")(y)
        y = _batch_norm(train, self.dtype, name="bn2", zero_scale=self.zero_init_residual)(y)
        return nn.relu(y + _shortcut(residual, self.filters * self.expansion, self.strides, train, self.dtype))


class BottleneckBlock(nn.Module):
    """ResNet bottleneck block: 1x1 conv -> BN -> ReLU -> 3x3 conv (strided) -> BN -> ReLU -> 1x1 conv (4x) -> BN,
    plus shortcut, then ReLU. The stride sits on the 3x3 conv, as in torchvision ("ResNet v1.5")."""

    filters: int
    strides: int = 1
    zero_init_residual: bool = True
    dtype: Any = jnp.float32

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        residual = x
        y = nn.Conv(self.filters, (1, 1), use_bias=False, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(_batch_norm(train, self.dtype, name="bn1")(y))
        y = nn.Conv(self.filters, (3, 3), strides=self.strides, padding=((1, 1), (1, 1)), use_bias=False,
                    dtype=self.dtype, name="conv2")(y)
        y = nn.relu(_batch_norm(train, self.dtype, name="bn2")(y))
        y = nn.Conv(self.filters * self.expansion, (1, 1), use_bias=False, dtype=self.dtype, name="conv3")(y)
        y = _batch_norm(train, self.dtype, name="bn3", zero_scale=self.zero_init_residual)(y)
        return nn.relu(y + _shortcut(residual, self.filters * self.expansion, self.strides, train, self.dtype))


def _shortcut(x: jax.Array, out_features: int, strides: int, train: bool, dtype: Any) -> jax.Array:
    """Identity when the shape is kept, else a projection (1x1 strided conv + BN). Called inside a block's
    compact __call__, so its layers belong to that block."""
    if strides == 1 and x.shape[-1] == out_features:
        return x
    x = nn.Conv(out_features, (1, 1), strides=strides, use_bias=False, dtype=dtype, name="proj_conv")(x)
    return _batch_norm(train, dtype, name="proj_bn")(x)


class _ResNet(nn.Module):
    """ResNet (He et al. 2016) with a choice of stem; subclasses fix the block type and the stage sizes.

    Options:
      stem: 'imagenet' (7x7/2 conv + 3x3/2 max-pool, for 120-600 px inputs) or 'small' (one 3x3/1 conv, no pool,
        for ~48 px inputs). Both stems have 64 filters followed by BN and ReLU.
      zero_init_residual: zero-initialise the scale of the last BatchNorm of every residual block (Goyal et al.
        2017, "Accurate, Large Minibatch SGD"; torchvision's `zero_init_residual`; the flax ImageNet example). Each
        block then starts as its shortcut, which eases early training. Default True.
      dtype: computation dtype; params stay float32 and logits are float32.
    Padding follows torchvision (symmetric 3 / 1 / 1 pixels for the 7x7 conv, the max-pool and the 3x3 convs; flax's
    'SAME' would pad (2, 3) / (0, 1) on even sizes and shift every output by a pixel), so a ResNet with
    stem='imagenet', 3 bands and 1000 classes has torchvision's parameter count and, with torchvision's weights put
    in place by adagc_jax.pretrained.load, computes torchvision's logits.
    """

    num_classes: int
    stem: str = "imagenet"
    zero_init_residual: bool = True
    head_init_std: float = HEAD_INIT_STD
    dtype: Any = jnp.float32

    # Architecture constants of each subclass (ClassVar: not constructor options).
    stage_sizes: ClassVar[tuple[int, ...]] = ()
    block_cls: ClassVar[type[nn.Module]] = BasicBlock
    stem_filters: ClassVar[int] = 64

    def __post_init__(self):
        if self.stem not in RESNET_STEMS:
            raise ValueError(f"{type(self).__name__}: unknown stem {self.stem!r}; valid stems: {list(RESNET_STEMS)}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        if self.stem == "imagenet":
            x = nn.Conv(self.stem_filters, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                        dtype=self.dtype, name="stem_conv")(x)
            x = nn.relu(_batch_norm(train, self.dtype, name="stem_bn")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = nn.Conv(self.stem_filters, (3, 3), strides=1, padding=((1, 1), (1, 1)), use_bias=False,
                        dtype=self.dtype, name="stem_conv")(x)
            x = nn.relu(_batch_norm(train, self.dtype, name="stem_bn")(x))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                # The first block of every stage but the first halves the resolution (and doubles the filters).
                strides = 2 if stage > 0 and block == 0 else 1
                x = self.block_cls(
                    filters=self.stem_filters * 2**stage,
                    strides=strides,
                    zero_init_residual=self.zero_init_residual,
                    dtype=self.dtype,
                    name=f"stage{stage}_block{block}",
                )(x, train)
        return _pool_and_classify(x, self.num_classes, self.head_init_std)


class ResNet18(_ResNet):
    """ResNet-18: basic blocks, stage sizes [2, 2, 2, 2] (11,689,512 params with stem='imagenet', 3 bands,
    1000 classes)."""

    stage_sizes: ClassVar[tuple[int, ...]] = (2, 2, 2, 2)
    block_cls: ClassVar[type[nn.Module]] = BasicBlock


class ResNet50(_ResNet):
    """ResNet-50: bottleneck blocks, stage sizes [3, 4, 6, 3] (25,557,032 params with stem='imagenet', 3 bands,
    1000 classes)."""

    stage_sizes: ClassVar[tuple[int, ...]] = (3, 4, 6, 3)
    block_cls: ClassVar[type[nn.Module]] = BottleneckBlock


MODELS = {"small_cnn": SmallCNN, "resnet18": ResNet18, "resnet50": ResNet50}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Keys of a config's model block that are not constructor options of the model.
NON_MODEL_KEYS = ("name", "pretrained")


def model_options(model_cls: type[nn.Module]) -> list[str]:
    """The keyword options a registered model accepts besides num_classes (its dataclass fields)."""
    excluded = {"num_classes", "parent", "name"}
    return [f.name for f in dataclasses.fields(model_cls) if f.init and f.name not in excluded]


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """The model registered under `name`, built with `num_classes` and its options `kwargs`.

    Raises ConfigError for an unknown name (listing MODELS) or an unknown option (listing the model's options).
    """
    model_cls = config_utils.lookup(MODELS, name, "model.name")
    valid = model_options(model_cls)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"model {name!r} takes no option(s) {unknown} (from the config's model block); "
                          f"valid options: {valid}")
    return model_cls(num_classes=num_classes, **kwargs)


def model_from_config(model_config, num_classes: int) -> nn.Module:
    """The model of a config's `model` block: `name` picks it, every other key is one of its options."""
    kwargs = {k: v for k, v in model_config.items() if k not in NON_MODEL_KEYS}
    if "dtype" in kwargs:
        kwargs["dtype"] = config_utils.lookup(DTYPES, kwargs["dtype"], "model.dtype")
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    return get_model(model_config.name, num_classes, **kwargs)


def compiler_options(model: nn.Module) -> dict:
    """jit compiler options for steps that run `model`: the small CNN's CPU path wants its own (conv.compiler_options);
    every other model and backend compiles with XLA's defaults."""
    if isinstance(model, SmallCNN):
        return conv.compiler_options(model.conv_impl)
    return {}


def init_variables(model: nn.Module, rng: jax.Array, image_shape: Sequence[int]) -> dict:
    """Initial {'params', 'batch_stats'} of `model` for images of shape image_shape = (H, W, bands).

    Initialised from one zero image in eval mode: parameter shapes do not depend on the batch size, and eval mode
    computes no batch statistics of a single image. Jitted so that big models compile once instead of running
    op by op.
    """
    dummy = jnp.zeros((1, *tuple(image_shape)), jnp.float32)
    variables = jax.jit(functools.partial(model.init, train=False))(rng, dummy)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
