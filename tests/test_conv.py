"""adagc_jax/conv.py against XLA's own formulation: the custom-gradient 3x3 conv and 2x2 max-pool give the same
forward values and gradients (conv: to float32 round-off; max-pool: bitwise, ties included), on odd shapes too;
the small CNN with conv_impl='cpu' initialises identically to 'xla' and matches it in forward, gradients and a whole
train step; the switch's validation lists the valid names.

Tolerance: the custom weight gradient sums the batch in chunks, a different float32 summation order over
B*H*W products, so it is compared with rtol 1e-5 plus atol 1e-5 x the largest entry (float32 eps is 1.2e-7; sums of
~1e4 terms of mixed sign lose a few more digits). Everything else is computed by the same ops as XLA's: bitwise.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from adagc_jax import config_checks, conv, models, parallel
from adagc_jax.errors import ConfigError
from configs import default


def _close(actual, expected, rtol=1e-5):
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=rtol * float(np.max(np.abs(expected))))


def _close_tree(actual, expected, rtol=1e-5):
    """_close leaf by leaf, but with atol relative to the largest entry of the whole tree: a leaf whose entries
    are all tiny (e.g. a BatchNorm bias gradient that is a sum cancelling to ~1e-7) carries the round-off of terms
    as large as the rest of the tree's."""
    scale = max(float(np.max(np.abs(np.asarray(leaf)))) for leaf in jax.tree.leaves(expected))
    jax.tree.map(lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=rtol * scale),
                 actual, expected)


def _xla_conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _xla_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")


def _normal(rng, shape):
    return jnp.asarray(rng.normal(size=shape), jnp.float32)


@pytest.mark.parametrize("batch, height, width, cin, cout, batch_chunk", [
    (5, 7, 9, 3, 4, 2),    # batch not divisible by the chunk, odd sides
    (6, 8, 8, 1, 1, 4),    # one channel in and out
    (3, 1, 1, 2, 5, 1),    # a 1x1 image: only the kernel's centre sees data
    (2, 6, 5, 4, 3, 16),   # chunk larger than the batch: one chunk
    (9, 12, 12, 16, 8, conv.BATCH_CHUNK),
])
def test_conv_forward_and_gradients_match_xla(batch, height, width, cin, cout, batch_chunk):
    rng = np.random.default_rng(batch * 100 + cin)
    x, kernel = _normal(rng, (batch, height, width, cin)), _normal(rng, (3, 3, cin, cout))
    grad_out = _normal(rng, (batch, height, width, cout))
    expected, expected_vjp = jax.vjp(_xla_conv, x, kernel)
    actual, actual_vjp = jax.vjp(lambda x, k: conv.conv3x3_same(x, k, batch_chunk), x, kernel)
    np.testing.assert_array_equal(actual, expected)
    grad_x, grad_kernel = actual_vjp(grad_out)
    expected_grad_x, expected_grad_kernel = expected_vjp(grad_out)
    _close(grad_x, expected_grad_x)
    _close(grad_kernel, expected_grad_kernel)


def test_conv_gradients_under_jit_with_a_bias_and_a_loss():
    """jax.grad of a scalar loss of conv + bias, jitted: input, kernel and bias gradients match XLA's."""
    rng = np.random.default_rng(7)
    x, kernel, bias = _normal(rng, (7, 10, 6, 5)), _normal(rng, (3, 3, 5, 6)), _normal(rng, (6,))

    def loss(conv_fn, x, kernel, bias):
        return jnp.sum(jnp.tanh(conv_fn(x, kernel) + bias) ** 2)

    actual = jax.jit(jax.grad(lambda *a: loss(conv.conv3x3_same, *a), argnums=(0, 1, 2)))(x, kernel, bias)
    expected = jax.jit(jax.grad(lambda *a: loss(_xla_conv, *a), argnums=(0, 1, 2)))(x, kernel, bias)
    for a, e in zip(actual, expected):
        _close(a, e)


@pytest.mark.parametrize("shape", [(2, 6, 6, 3), (3, 5, 7, 2), (2, 1, 1, 4), (1, 9, 4, 1)])
def test_max_pool_matches_xla_bitwise_with_ties(shape):
    """Post-ReLU-like data (many zeros, small integers): most windows hold ties, and the gradient must go to the
    same single element as XLA's select_and_scatter picks (the first maximum in row-major window order)."""
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(np.maximum(rng.integers(-2, 3, size=shape), 0), jnp.float32)
    expected, expected_vjp = jax.vjp(_xla_pool, x)
    actual, actual_vjp = jax.vjp(conv.max_pool_2x2_same, x)
    np.testing.assert_array_equal(actual, expected)
    grad_out = _normal(rng, expected.shape)
    grad_x, = actual_vjp(grad_out)
    np.testing.assert_array_equal(grad_x, expected_vjp(grad_out)[0])
    # Exactly one element per window receives that window's gradient: the totals are preserved.
    np.testing.assert_allclose(float(jnp.sum(grad_x)), float(jnp.sum(grad_out)), rtol=1e-5)


def test_max_pool_tie_goes_to_the_first_element_of_the_window():
    """A constant 2x2 window: only its top-left element gets the gradient (the other 3 get 0)."""
    grad_x, = jax.vjp(conv.max_pool_2x2_same, jnp.ones((1, 2, 2, 1)))[1](jnp.full((1, 1, 1, 1), 5.0))
    np.testing.assert_array_equal(grad_x[0, :, :, 0], [[5.0, 0.0], [0.0, 0.0]])


def _small_cnn_pair(widths, bands, size):
    x = jnp.asarray(np.random.default_rng(3).normal(size=(5, size, size, bands)), jnp.float32)
    pair = {impl: models.get_model("small_cnn", 4, widths=widths, convs_per_stage=2, conv_impl=impl,
                                   head_init_std=0.5) for impl in ("xla", "cpu")}
    variables = {impl: models.init_variables(m, jax.random.key(0, impl="rbg"), x.shape[1:])
                 for impl, m in pair.items()}
    return pair, variables, x


def test_small_cnn_cpu_path_initialises_identically_and_matches_xla():
    """Same parameter tree and values; train-mode logits, batch statistics and every parameter gradient (conv
    kernels, BatchNorm scales/biases, head kernel/bias) of 'cpu' equal 'xla' to round-off. Odd 7 px images
    (SAME pools on odd sides: 7 -> 4 -> 2), 1-band input, a 1-filter first stage."""
    pair, variables, x = _small_cnn_pair(widths=(1, 3), bands=1, size=7)
    jax.tree.map(np.testing.assert_array_equal, variables["cpu"], variables["xla"])

    def loss(params, impl):
        logits, updates = pair[impl].apply({"params": params, "batch_stats": variables[impl]["batch_stats"]}, x,
                                           train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(logits)), (logits, updates)

    results = {impl: jax.jit(jax.grad(loss, has_aux=True), static_argnums=1)(variables[impl]["params"], impl)
               for impl in pair}
    (grads_cpu, aux_cpu), (grads_xla, aux_xla) = results["cpu"], results["xla"]
    _close_tree(aux_cpu, aux_xla)
    _close_tree(grads_cpu, grads_xla)
    assert set(grads_cpu) == {"stage0_conv0", "stage0_conv1", "stage1_conv0", "stage1_conv1", "stage0_bn0",
                              "stage0_bn1", "stage1_bn0", "stage1_bn1", "head"}
    assert float(jnp.max(jnp.abs(grads_xla["stage0_conv0"]["kernel"]))) > 0  # the test compares real gradients


def test_auto_uses_the_custom_path_on_cpu_only(monkeypatch):
    assert conv.use_custom_path("cpu") and not conv.use_custom_path("xla")
    assert jax.default_backend() == "cpu" and conv.use_custom_path("auto")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not conv.use_custom_path("auto") and conv.use_custom_path("cpu")


def test_conv_impl_validation_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"conv_impl='gpu' is not valid; valid values: \['auto', 'xla', 'cpu'\]"):
        models.get_model("small_cnn", 3, conv_impl="gpu")
    config = default.get_config()
    with config.unlocked():
        config.model.conv_impl = "fast"
    with pytest.raises(ConfigError, match=r"model.conv_impl='fast' is not valid; valid values: \['auto', 'xla', "
                                          r"'cpu'\]"):
        config_checks.validate_config(config)
    assert default.get_config().model.conv_impl == "auto"


def test_train_step_with_cpu_conv_matches_xla(make_experiment):
    """Two AdaGC steps (teacher, Mixup, GC on: the step with the most paths through the model) of the real train
    step (configs/default.py, shrunk) from the same initial state: the new
    parameters, batch statistics and epoch sums of conv_impl='cpu' equal 'xla' to float32 round-off."""
    rng = np.random.default_rng(0)
    batch_size, size, num_classes = 6, 12, 5
    observed = np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, batch_size)]
    images = rng.normal(size=(batch_size, size, size, 3)).astype(np.float32)
    outcome = {}
    for impl in ("xla", "cpu"):
        config = default.get_config()
        with config.unlocked():
            config.method, config.batch_size, config.dataset.image_size = "adagc", batch_size, size
            config.model.widths, config.model.conv_impl = (4, 8), impl
        exp = make_experiment(config, num_classes, batch_size, (size, size, 3))
        batch = parallel.shard_batch({"image": images, "observed": observed, "labels": observed,
                                      "id": np.arange(batch_size, dtype=np.int32)}, exp.mesh)
        state, sums = exp.initial_state(observed), exp.init_sums()
        for epoch in (1, 2):
            state, sums = exp.train_step(state, sums, batch, exp.knobs(epoch, gc_weight=1.0))
        outcome[impl] = jax.device_get((state.params, state.batch_stats, sums))
    _close_tree(outcome["cpu"][:2], outcome["xla"][:2], rtol=1e-4)
    _close_tree(outcome["cpu"][2], outcome["xla"][2], rtol=1e-4)
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), outcome["xla"][0],
                         jax.device_get(exp.initial_state(observed).params))
    assert max(jax.tree.leaves(moved)) > 0  # the steps changed the parameters, so the comparison has content


@pytest.mark.parametrize("shape", [(6, 5, 7, 3), (2, 1, 1, 4), (9, 4, 4, 1)])
def test_batch_norm_relu_matches_flax(shape):
    """conv.BatchNormReLU against relu(nn.BatchNorm(...)): train-mode output, running averages after one update and
    the gradients of input, scale and bias to float32 round-off (the closed-form backward against autodiff); the
    inference-mode output bitwise. Odd shapes: 1x1 images, one channel, a batch of 2."""
    rng = np.random.default_rng(sum(shape))
    x = _normal(rng, shape) * 3.0 + 1.0
    grad_out = _normal(rng, shape)
    flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    ours = conv.BatchNormReLU(use_running_average=False, momentum=0.9, epsilon=1e-5)
    variables = flax_bn.init(jax.random.key(0), x)
    jax.tree.map(np.testing.assert_array_equal, ours.init(jax.random.key(0), x), variables)  # same tree, same init
    params = {"scale": _normal(rng, shape[-1:]), "bias": _normal(rng, shape[-1:])}
    stats = {"mean": _normal(rng, shape[-1:]), "var": jnp.exp(_normal(rng, shape[-1:]))}

    def run(module, relu, x, params):
        y, updates = module.apply({"params": params, "batch_stats": stats}, x, mutable=["batch_stats"])
        y = nn.relu(y) if relu else y
        return jnp.sum(y * grad_out), (y, updates)

    results = {name: jax.jit(jax.grad(functools.partial(run, module, relu), argnums=(0, 1), has_aux=True))(x, params)
               for name, module, relu in (("flax", flax_bn, True), ("ours", ours, False))}
    (grads, (y, updates)), (expected_grads, (expected_y, expected_updates)) = results["ours"], results["flax"]
    _close(y, expected_y)
    _close_tree(updates, expected_updates)
    _close_tree(grads, expected_grads)
    assert float(jnp.max(jnp.abs(expected_grads[1]["scale"]))) > 0  # real gradients are compared
    inference = {"params": params, "batch_stats": stats}
    np.testing.assert_array_equal(
        conv.BatchNormReLU(True, 0.9, 1e-5).apply(inference, x),
        nn.relu(nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5).apply(inference, x)))


def test_cpu_path_compiles_convolutions_with_xla_kernels_not_ynnpack():
    """conv.compiler_options: on CPU the custom path's steps compile with COMPILER_OPTIONS, which take the
    convolutions away from XLA:CPU's YNNPACK fusions (present with the default options); 'xla' keeps the defaults,
    and so does every model but the small CNN."""
    assert conv.compiler_options("auto") == conv.COMPILER_OPTIONS == conv.compiler_options("cpu")
    assert conv.compiler_options("xla") == {}
    assert models.compiler_options(models.get_model("resnet18", 3)) == {}
    assert models.compiler_options(models.get_model("small_cnn", 3, conv_impl="xla")) == {}
    x, kernel = jnp.ones((8, 24, 24, 32)), jnp.ones((3, 3, 32, 32))  # large enough for XLA to pick YNNPACK
    default_hlo = jax.jit(conv.conv3x3_same).lower(x, kernel).compile().as_text()
    ours_hlo = jax.jit(conv.conv3x3_same, compiler_options=conv.compiler_options("auto")).lower(x, kernel).compile()
    assert "ynn_fusion" in default_hlo
    assert "ynn_fusion" not in ours_hlo.as_text() and "convolution(" in ours_hlo.as_text()
