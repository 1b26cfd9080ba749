"""The small CNN's layers in forms XLA:CPU runs fast: a 3x3 'SAME' convolution, BatchNorm + ReLU and a 2x2/2 max-pool
with custom gradients, and the compiler options of the steps that use them (docs/performance.md).

Why: XLA differentiates a convolution into a "weight-gradient convolution" that treats the batch as the
contraction (feature) dimension and the whole output-gradient image as the window: for a 3x3 conv on 64 images of
48x48x32 it is a convolution with a 48x48 window over a (32, 50, 50, 64) input that produces a 3x3 output. XLA:CPU
first transposes both operands (18.9 MB each) and hands that conv to its convolution library, whose kernels are
built for small windows and large outputs; with a window the size of the image and only 3x3x32 outputs the operands
do not stay in cache and the conv runs at a fraction of the machine's speed (2-4x slower than the same conv split
over chunks of a few images, measured in docs/performance.md).

What this module does instead (forward and input gradient unchanged, weight gradient re-chunked):
- conv3x3_same: forward = XLA's convolution; input gradient = the transposed convolution (the output gradient
  convolved with the spatially flipped kernel, in and out channels swapped), which is what XLA emits too; weight
  gradient = the same weight-gradient convolution XLA emits, but run on chunks of BATCH_CHUNK images and summed, so
  each chunk's operands fit in cache. Only the summation order over the batch differs: results equal XLA's to
  float32 round-off.
- max_pool_2x2_same: flax's nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME') as a reshape + max, and its
  gradient sent to exactly one element per window: the first maximum in row-major window order, which is the
  element XLA's select_and_scatter (the gradient of reduce_window max) picks. Gradients equal XLA's bitwise.
  (A window containing NaN passes no gradient here; the forward still returns NaN.)
- batch_norm_relu_train / BatchNormReLU: flax's training-mode BatchNorm followed by ReLU, with the closed-form
  backward (one reducing pass and one writing pass) instead of autodiff's several passes over the activations.
- COMPILER_OPTIONS: the steps are compiled with XLA's own convolution kernels instead of YNNPACK's, which are
  2-3x slower for these shapes on the machines measured.

The model chooses between these and XLA's native ops with `model.conv_impl` (CONV_IMPLS, use_custom_path).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# 'auto': the custom path on the CPU backend, XLA's native ops elsewhere (GPU/TPU libraries handle the weight
# gradient well); 'xla': always native; 'cpu': always the custom path (any backend, e.g. to test it).
CONV_IMPLS = ("auto", "xla", "cpu")

# Images per weight-gradient chunk. Measured with the convolutions on XLA's own (Eigen) kernels (COMPILER_OPTIONS) for
# the synthetic_memorization shapes (batch 64, 48/24/12 px, 3-128 channels; benchmarks/conv_grad.py): 8 is the
# fastest or within noise of it at every shape (sum over the six convs 86 ms, against 107 ms for 4 and 100 ms
# unchunked); 2 is 1.5-2x slower.
BATCH_CHUNK = 8

# XLA:CPU options for the steps that use this module (passed per jit, so nothing else in the process changes).
# By default XLA:CPU hands convolutions, reductions and dots to its YNNPACK library fusions. On the machines measured
# (docs/performance.md) YNNPACK's 3x3 convolutions run at a third to half of XLA's own Eigen convolutions, while its
# reductions and dots are the fast ones (without it, BatchNorm's reductions become slow reduce-windows). This list
# keeps YNNPACK for reductions and dots only. With it, BATCH_CHUNK 8 and BatchNormReLU the memorisation network's
# step went from 200 to 244-280 images/s on 2 cores (docs/performance.md).
# Only which kernels compute the ops changes: results differ by float32 round-off.
COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}

_NHWC = ("NHWC", "HWIO", "NHWC")
_SAME_3X3 = ((1, 1), (1, 1))


def use_custom_path(conv_impl: str) -> bool:
    """Whether `conv_impl` selects this module's ops on the backend JAX computes on now."""
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl={conv_impl!r} is not valid; valid values: {list(CONV_IMPLS)}")
    if conv_impl == "auto":
        return jax.default_backend() == "cpu"
    return conv_impl == "cpu"


def compiler_options(conv_impl: str) -> dict:
    """The jit compiler options of a step whose model uses `conv_impl`: COMPILER_OPTIONS when that selects this
    module's ops on the CPU backend, none otherwise (GPU/TPU, or 'xla' on CPU: XLA's defaults throughout)."""
    if use_custom_path(conv_impl) and jax.default_backend() == "cpu":
        return dict(COMPILER_OPTIONS)
    return {}


def _forward_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), _SAME_3X3, dimension_numbers=_NHWC)


def weight_gradient(x: jax.Array, grad_out: jax.Array, batch_chunk: int = BATCH_CHUNK) -> jax.Array:
    """d(sum(grad_out * conv(x, w)))/dw for a 3x3 'SAME' conv: (B,H,W,Cin), (B,H,W,Cout) -> (3,3,Cin,Cout).

    Per chunk, a convolution whose contraction (feature) dimension is the chunk's images and whose window is the
    output-gradient image: lhs (b,h,w,cin) read as feature/spatial/spatial/batch ("CHWN"), rhs (b,h,w,cout) as
    in/spatial/spatial/out ("IHWO"), output (3,3,cin,cout). A last chunk smaller than batch_chunk is fine.
    Accumulated in float32 whatever the input dtype.
    """
    total = None
    for start in range(0, x.shape[0], batch_chunk):
        part = lax.conv_general_dilated(
            x[start:start + batch_chunk], grad_out[start:start + batch_chunk], (1, 1), _SAME_3X3,
            dimension_numbers=("CHWN", "IHWO", "HWNC"), preferred_element_type=jnp.float32)
        total = part if total is None else total + part
    return total


def input_gradient(grad_out: jax.Array, kernel: jax.Array) -> jax.Array:
    """d(sum(grad_out * conv(x, kernel)))/dx: grad_out convolved with the flipped kernel read as (H, W, Cout, Cin)."""
    flipped = jnp.flip(kernel, axis=(0, 1))
    return lax.conv_general_dilated(grad_out, flipped, (1, 1), _SAME_3X3, dimension_numbers=("NHWC", "HWOI", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3_same(x: jax.Array, kernel: jax.Array, batch_chunk: int = BATCH_CHUNK) -> jax.Array:
    """3x3, stride 1, 'SAME' (1 pixel each side) convolution of NHWC x with an HWIO kernel; custom gradients."""
    return _forward_conv(x, kernel)


def _conv_fwd(x, kernel, batch_chunk):
    return _forward_conv(x, kernel), (x, kernel)


def _conv_bwd(batch_chunk, residuals, grad_out):
    x, kernel = residuals
    grad_kernel = weight_gradient(x, grad_out, batch_chunk).astype(kernel.dtype)
    return input_gradient(grad_out, kernel).astype(x.dtype), grad_kernel


conv3x3_same.defvjp(_conv_fwd, _conv_bwd)


def _pad_to_even(x: jax.Array) -> jax.Array:
    """Pads H and W at the end with -inf to even sizes ('SAME' for a 2x2/2 window pads (0, 1) on an odd side)."""
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if not pad_h and not pad_w:
        return x
    return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)


def _windows(x: jax.Array) -> list[jax.Array]:
    """The four elements of every 2x2 window of an even-sided x, in row-major window order: (B, H/2, W/2, C) each."""
    b, h, w, c = x.shape
    blocks = x.reshape(b, h // 2, 2, w // 2, 2, c)
    return [blocks[:, :, i, :, j, :] for i in (0, 1) for j in (0, 1)]


def _window_max(x: jax.Array) -> jax.Array:
    return functools.reduce(jnp.maximum, _windows(_pad_to_even(x)))


@jax.custom_vjp
def max_pool_2x2_same(x: jax.Array) -> jax.Array:
    """nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME') of NHWC x; gradient to the first max of each window."""
    return _window_max(x)


def _pool_fwd(x):
    out = _window_max(x)
    return out, (x, out)


def _pool_bwd(residuals, grad_out):
    x, out = residuals
    taken = jnp.zeros(out.shape, bool)
    grads = []
    for element in _windows(_pad_to_even(x)):
        chosen = (element == out) & ~taken  # the first element equal to the max gets the whole gradient
        taken = taken | chosen
        grads.append(jnp.where(chosen, grad_out, jnp.zeros_like(grad_out)))
    top = jnp.stack(grads[:2], axis=3)  # (B, H/2, W/2, 2, C): window row 0
    bottom = jnp.stack(grads[2:], axis=3)
    b, h2, w2, _, c = top.shape
    grad_x = jnp.stack([top, bottom], axis=2).reshape(b, 2 * h2, 2 * w2, c)
    return (grad_x[:, :x.shape[1], :x.shape[2], :],)


max_pool_2x2_same.defvjp(_pool_fwd, _pool_bwd)


_BN_AXES = (0, 1, 2)  # NHWC: statistics over batch, height and width, one per channel


def _batch_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """flax's BatchNorm statistics (use_fast_variance): mean and max(0, mean(x^2) - mean^2), in one pass."""
    mean = jnp.mean(x, _BN_AXES)
    return mean, jnp.maximum(0.0, jnp.mean(x * x, _BN_AXES) - mean * mean)


def _normalize_relu(x, mean, var, scale, bias, epsilon):
    """relu((x - mean) * (rsqrt(var + eps) * scale) + bias), flax's _normalize order of operations."""
    return jnp.maximum((x - mean) * (lax.rsqrt(var + epsilon) * scale) + bias, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float):
    """Training-mode BatchNorm (batch statistics) followed by ReLU, float32 NHWC; returns (y, mean, var).

    Gradients flow to x, scale and bias through y only; mean and var are for the running averages (the caller
    stops their gradient). The backward is the closed form of BatchNorm's gradient with the ReLU mask folded in:
    dz = dy * (y > 0); dbias = sum(dz); dscale = sum(dz * xhat);
    dx = scale / sigma * (dz - dbias / N - xhat * dscale / N), xhat = (x - mean) / sigma, N = B*H*W:
    one pass that reduces and one that writes dx, where autodiff of the plain formulation makes several.
    """
    return _bn_relu_fwd(x, scale, bias, epsilon)[0]


def _bn_relu_fwd(x, scale, bias, epsilon):
    mean, var = _batch_stats(x)
    y = _normalize_relu(x, mean, var, scale, bias, epsilon)
    return (y, mean, var), (x, y, mean, var, scale)


def _bn_relu_bwd(epsilon, residuals, cotangents):
    x, y, mean, var, scale = residuals
    dz = jnp.where(y > 0, cotangents[0], 0.0)  # jax's relu passes no gradient at 0 either
    inv_std = lax.rsqrt(var + epsilon)
    xhat = (x - mean) * inv_std
    dbias, dscale = jnp.sum(dz, _BN_AXES), jnp.sum(dz * xhat, _BN_AXES)
    count = x.shape[0] * x.shape[1] * x.shape[2]
    dx = (scale * inv_std) * (dz - dbias / count - xhat * (dscale / count))
    return dx, dscale, dbias


batch_norm_relu_train.defvjp(_bn_relu_fwd, _bn_relu_bwd)


class BatchNormReLU(nn.Module):
    """relu(nn.BatchNorm(...)(x)) for NHWC x with batch_norm_relu_train's gradient in training.

    Same parameters ('scale' ones, 'bias' zeros) and batch_stats ('mean' zeros, 'var' ones), same running-average
    update (momentum * old + (1 - momentum) * batch value, skipped while initialising) and the same statistics
    (float32, fast variance) as flax's BatchNorm, so both paths initialise and checkpoint identically. In inference
    mode it normalises with the running averages, as flax does.
    """

    use_running_average: bool
    momentum: float
    epsilon: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        x = x.astype(jnp.float32)
        if self.use_running_average:
            y = _normalize_relu(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
        else:
            y, mean, var = batch_norm_relu_train(x, scale, bias, self.epsilon)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * lax.stop_gradient(mean)
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * lax.stop_gradient(var)
        return y.astype(self.dtype)


class Conv3x3(nn.Module):
    """nn.Conv(features, (3, 3), padding='SAME', use_bias=False) computed with conv3x3_same.

    Same parameter ('kernel', shape (3, 3, Cin, features), lecun_normal init, float32) as nn.Conv, so both paths
    initialise and checkpoint identically.
    """

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features),
                            jnp.float32)
        return conv3x3_same(x.astype(self.dtype), kernel.astype(self.dtype))
