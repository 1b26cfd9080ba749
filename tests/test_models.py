"""Tests of adagc_jax/models.py: shapes and dtypes, initial probabilities 0.5, the zero-head saddle, BatchNorm
train/eval semantics, torchvision parameter counts and padding, zero-init residual blocks, the registry, bfloat16
compute.

Kept fast on 2 CPU cores: small inputs (8-32 px, batch 2), jax.eval_shape where only shapes matter, each real
model initialised once (module fixtures), and 'rbg' PRNG keys for initialisation: with JAX's default partitionable
threefry, every random initialiser takes seconds to compile on CPU. (The eval_shape tests trace the default key.)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adagc_jax import models

# Small-stem ResNets and a narrow SmallCNN keep compilation cheap; the architecture is the same at any width/size.
SMALL_CONFIGS = {
    "small_cnn": dict(widths=(8, 16)),
    "resnet18": dict(stem="small"),
    "resnet50": dict(stem="small"),
}
IMAGE_SIZE = 16


def _fast_key(seed=0):
    return jax.random.key(seed, impl="rbg")


def _num_params(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _abstract_variables(model, image_shape):
    """Variables' shapes/dtypes without computing anything."""
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    return jax.eval_shape(lambda rng: model.init(rng, dummy, train=False), jax.random.key(0))


def _randomise_head(params, seed=1):
    """A head of unit scale, so outputs depend strongly on the features (the initial head is tiny: std 0.01)."""
    head = params["head"]
    rng = np.random.default_rng(seed)
    new_head = {"kernel": jnp.asarray(rng.normal(size=head["kernel"].shape), jnp.float32),
                "bias": jnp.asarray(rng.normal(size=head["bias"].shape), jnp.float32)}
    return {**params, "head": new_head}


def _images(seed, shape, scale=1.0, shift=0.0):
    # numpy, not jax.random: test data needs no compilation.
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale + shift, jnp.float32)


class Built:
    """One model, its initial variables, and its jitted eval / train forward passes (compiled once per module)."""

    def __init__(self, name, bands, dtype=jnp.float32):
        self.model = models.get_model(name, 4, dtype=dtype, **SMALL_CONFIGS[name])
        self.bands = bands
        self.initial = models.init_variables(self.model, _fast_key(0), (IMAGE_SIZE, IMAGE_SIZE, bands))
        self.eval = jax.jit(lambda v, x: self.model.apply(v, x, train=False))
        self.train = jax.jit(lambda v, x: self.model.apply(v, x, train=True, mutable=["batch_stats"]))

    def images(self, seed, **kw):
        return _images(seed, (2, IMAGE_SIZE, IMAGE_SIZE, self.bands), **kw)


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name, bands=3, dtype=jnp.float32):
        key = (name, bands, jnp.dtype(dtype).name)
        if key not in cache:
            cache[key] = Built(name, bands, dtype)
        return cache[key]

    return get


# --- shapes, dtypes, initial logits -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("bands", [3, 12])
def test_output_shape_and_dtype(name, bands):
    model = models.get_model(name, 7, **SMALL_CONFIGS[name])
    variables = _abstract_variables(model, (32, 32, bands))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    x = jax.ShapeDtypeStruct((2, 32, 32, bands), jnp.float32)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert out.shape == (2, 7) and out.dtype == jnp.float32
    out_train, new_state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert out_train.shape == (2, 7) and out_train.dtype == jnp.float32
    assert jax.tree.structure(new_state) == jax.tree.structure({"batch_stats": variables["batch_stats"]})


@pytest.mark.parametrize("stem,size,final_side", [("imagenet", 224, 7), ("small", 48, 6)])
def test_resnet50_downsampling(stem, size, final_side):
    # The imagenet stem divides the side by 4 and the stages by 8 more (224 -> 7, as torchvision); the small stem
    # keeps the resolution, so only the stages downsample (48 -> 6).
    model = models.get_model("resnet50", 1000, stem=stem)
    variables = _abstract_variables(model, (size, size, 3))
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    out, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"]),
        variables, x)
    assert out.shape == (2, 1000) and out.dtype == jnp.float32
    last_block = state["intermediates"]["stage3_block2"]["__call__"][0]
    assert last_block.shape == (2, final_side, final_side, 2048)


@pytest.mark.parametrize("name,bands", [("small_cnn", 3), ("small_cnn", 12), ("resnet18", 3)])
def test_initial_probabilities_near_one_half(built, name, bands):
    b = built(name, bands)
    assert set(b.initial) == {"params", "batch_stats"}
    first_conv = b.initial["params"]["stage0_conv0" if name == "small_cnn" else "stem_conv"]["kernel"]
    assert first_conv.shape[2] == bands and float(np.std(first_conv)) > 0.01  # adapts to bands, really random
    kernel = np.asarray(b.initial["params"]["head"]["kernel"])
    assert 0.005 < float(np.std(kernel)) < 0.02  # N(0, 0.01^2): small but not zero
    np.testing.assert_array_equal(b.initial["params"]["head"]["bias"], 0.0)
    x = b.images(1, scale=3.0)
    logits = b.eval(b.initial, x)
    assert logits.shape == (2, 4) and logits.dtype == jnp.float32
    assert float(np.abs(logits).max()) > 0.0  # they depend on the image
    # METHOD.md section 6: probabilities start at 0.5, to within a few hundredths once BatchNorm normalises the
    # features (training mode; eval mode uses running statistics that have not seen data yet).
    logits_train, _ = b.train(b.initial, x)
    np.testing.assert_allclose(jax.nn.sigmoid(logits_train), 0.5, atol=0.05)


def test_zero_head_is_a_saddle_the_default_head_escapes():
    # With head_init_std=0 every logit is exactly 0 and no gradient reaches the convolutions (W^T dL/dlogits = 0):
    # the reason the default kernel is small but non-zero.
    x = _images(2, (4, IMAGE_SIZE, IMAGE_SIZE, 3), scale=3.0)
    targets = jnp.asarray(np.eye(4, dtype=np.float32))

    def conv_gradient(head_init_std):
        model = models.get_model("small_cnn", 4, head_init_std=head_init_std, **SMALL_CONFIGS["small_cnn"])
        variables = models.init_variables(model, _fast_key(0), (IMAGE_SIZE, IMAGE_SIZE, 3))

        def loss(params):
            logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                                    mutable=["batch_stats"])
            return optax.sigmoid_binary_cross_entropy(logits, targets).mean(), logits

        grads, logits = jax.grad(loss, has_aux=True)(variables["params"])
        return logits, grads["stage0_conv0"]["kernel"]

    logits, zero_head_grad = conv_gradient(0.0)
    np.testing.assert_array_equal(logits, 0.0)
    np.testing.assert_array_equal(zero_head_grad, 0.0)
    _, default_grad = conv_gradient(models.HEAD_INIT_STD)
    assert float(jnp.abs(default_grad).max()) > 1e-6


# --- torchvision-equivalent padding ------------------------------------------------------------------------------
# ImageNet weights (adagc_jax/pretrained.py) reproduce torchvision only if every strided layer pads as torchvision
# does: symmetrically, 3 pixels for the 7x7/2 stem conv, 1 for the 3x3/2 max-pool and the 3x3/2 convs. flax's
# 'SAME' would pad (2, 3) / (0, 1) on even sizes and shift every output by one input pixel. A centred one-hot
# ("delta") kernel makes the alignment visible: with symmetric padding a stride-2 conv returns x[::2, ::2], with
# 'SAME' x[1::2, 1::2]. (benchmarks/check_pretrained_torch.py compares whole models with torchvision itself.)


def _delta_variables(abstract, deltas):
    """Variables with every kernel and BN shift zero, BN scale 1 and running (mean, var) = (0, 1), except the
    kernels named in `deltas` (path -> (h, w) centre), which map input channel 0 to output channel 0."""
    def fill(path, leaf):
        name = path[-1].key
        return np.ones(leaf.shape, np.float32) if name in ("scale", "var") else np.zeros(leaf.shape, np.float32)

    variables = jax.tree_util.tree_map_with_path(fill, abstract)
    for path, (h, w) in deltas.items():
        node = variables["params"]
        for key in path:
            node = node[key]
        node["kernel"][h, w, 0, 0] = 1.0
    return variables


def _max_pool_3x3_stride2_pad1(a):
    """torchvision's MaxPool2d(3, stride=2, padding=1) on (B, H, W): implicit -inf padding, symmetric."""
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    rows, cols = (a.shape[1] - 1) // 2 + 1, (a.shape[2] - 1) // 2 + 1
    return np.stack([np.stack([padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(1, 2)) for j in range(cols)],
                              axis=1) for i in range(rows)], axis=1)


def _call_output(intermediates, *path):
    node = intermediates
    for key in path:
        node = node[key]
    return np.asarray(node["__call__"][0])


def test_resnet_imagenet_stem_and_strided_conv_pad_like_torchvision():
    # ResNet-18 on 32 px: stem conv 32 -> 16, max-pool 16 -> 8, stage 1's first 3x3 conv 8 -> 4. With all other
    # kernels zero, BatchNorm is x / sqrt(1 + eps) and the stage-0 blocks pass their (non-negative) input through.
    model = models.get_model("resnet18", 2, stem="imagenet")
    abstract = _abstract_variables(model, (32, 32, 3))
    variables = _delta_variables(abstract, {("stem_conv",): (3, 3), ("stage1_block0", "conv1"): (1, 1)})
    x = np.asarray(_images(3, (2, 32, 32, 3)))
    _, state = jax.jit(lambda v, x: model.apply(v, x, train=False, capture_intermediates=True,
                                                mutable=["intermediates"]))(variables, x)
    inter = state["intermediates"]

    stem = _call_output(inter, "stem_conv")[..., 0]
    np.testing.assert_allclose(stem, x[:, ::2, ::2, 0], atol=1e-6)  # 'SAME' would give x[:, 1::2, 1::2, 0]
    bn = np.maximum(stem / np.sqrt(1.0 + models.BN_EPSILON), 0.0)
    pooled = _call_output(inter, "stage0_block1")[..., 0]
    np.testing.assert_allclose(pooled, _max_pool_3x3_stride2_pad1(bn), rtol=1e-6, atol=1e-6)
    strided = _call_output(inter, "stage1_block0", "conv1")[..., 0]
    np.testing.assert_allclose(strided, pooled[:, ::2, ::2], rtol=1e-6, atol=1e-6)
    assert not np.allclose(strided, pooled[:, 1::2, 1::2], atol=1e-3)  # the two alignments really differ here


def test_bottleneck_strided_conv_pads_like_torchvision():
    block = models.BottleneckBlock(filters=4, strides=2)
    x = np.asarray(_images(4, (2, 8, 8, 16)))
    abstract = jax.eval_shape(lambda x: block.init(_fast_key(0), x, train=False), x)
    variables = _delta_variables(abstract, {("conv1",): (0, 0), ("conv2",): (1, 1)})
    _, state = block.apply(variables, x, train=False, capture_intermediates=True, mutable=["intermediates"])
    inter = state["intermediates"]
    before = np.maximum(_call_output(inter, "bn1")[..., 0], 0.0)
    np.testing.assert_allclose(_call_output(inter, "conv2")[..., 0], before[:, ::2, ::2], rtol=1e-6, atol=1e-6)


# --- parameter counts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,expected", [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_resnet_parameter_count_equals_torchvision(name, expected):
    model = models.get_model(name, 1000, stem="imagenet")
    variables = _abstract_variables(model, (224, 224, 3))
    assert _num_params(variables["params"]) == expected


def test_resnet18_small_stem_parameter_count():
    # The small stem swaps the 7x7x3x64 conv for a 3x3x3x64 one; everything else is unchanged.
    model = models.get_model("resnet18", 1000, stem="small")
    variables = _abstract_variables(model, (48, 48, 3))
    assert _num_params(variables["params"]) == 11_689_512 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64


@pytest.mark.parametrize("widths,convs_per_stage", [((16, 32, 64), 1), ((32, 64, 128), 1), ((8,), 2)])
def test_small_cnn_parameter_count_closed_form(widths, convs_per_stage):
    bands, classes = 12, 7
    model = models.get_model("small_cnn", classes, widths=widths, convs_per_stage=convs_per_stage)
    variables = _abstract_variables(model, (32, 32, bands))
    expected, in_features = 0, bands
    for w in widths:
        for _ in range(convs_per_stage):
            expected += 3 * 3 * in_features * w + 2 * w  # conv without bias + BN scale and shift
            in_features = w
    expected += in_features * classes + classes  # head
    assert _num_params(variables["params"]) == expected
    # BatchNorm keeps a running mean and variance per channel.
    assert _num_params(variables["batch_stats"]) == 2 * convs_per_stage * sum(widths)


# --- zero-initialised residual branches --------------------------------------------------------------------------


def test_resnet18_last_bn_of_every_block_starts_at_zero(built):
    params = built("resnet18").initial["params"]
    for stage in range(4):
        for block in range(2):
            p = params[f"stage{stage}_block{block}"]
            np.testing.assert_array_equal(p["bn2"]["scale"], 0.0)
            np.testing.assert_array_equal(p["bn1"]["scale"], 1.0)


@pytest.mark.parametrize("block_cls,in_features", [(models.BasicBlock, 8), (models.BottleneckBlock, 32)])
def test_zero_init_block_starts_as_its_shortcut(block_cls, in_features):
    x = _images(8, (2, 4, 4, in_features))

    @jax.jit
    def init_and_apply(x):  # one compilation for both variants
        outputs = []
        for zero_init in (True, False):
            block = block_cls(filters=8, zero_init_residual=zero_init)
            outputs.append(block.apply(block.init(_fast_key(0), x, train=False), x, train=False))
        return outputs

    y_zero, y_default = init_and_apply(x)
    assert y_zero.shape == y_default.shape == x.shape
    # Zero-initialised last BN scale: the residual branch is exactly 0 and the block is ReLU(identity shortcut).
    np.testing.assert_array_equal(y_zero, jax.nn.relu(x))
    assert not np.allclose(y_default, jax.nn.relu(x), atol=1e-3)


def test_strided_block_projects_the_shortcut():
    x = jax.ShapeDtypeStruct((2, 8, 8, 8), jnp.float32)
    block = models.BasicBlock(filters=16, strides=2)
    variables = jax.eval_shape(lambda x: block.init(_fast_key(0), x, train=False), x)
    assert variables["params"]["proj_conv"]["kernel"].shape == (1, 1, 8, 16)
    assert "proj_bn" in variables["params"] and "proj_bn" in variables["batch_stats"]
    assert jax.eval_shape(lambda v, x: block.apply(v, x, train=False), variables, x).shape == (2, 4, 4, 16)
    # Same shape in and out: identity shortcut, no projection parameters.
    same = models.BasicBlock(filters=8)
    assert "proj_conv" not in jax.eval_shape(lambda x: same.init(_fast_key(0), x, train=False), x)["params"]


# --- BatchNorm: train vs eval ------------------------------------------------------------------------------------


def test_train_mode_updates_batch_stats_with_momentum_0_9(built):
    b = built("small_cnn")
    x = b.images(2, scale=2.0, shift=1.0)
    _, new_state = b.train(b.initial, x)
    new_stats = new_state["batch_stats"]
    for layer in new_stats:  # every BatchNorm moved away from its (0, 1) start
        assert not np.allclose(new_stats[layer]["mean"], 0.0)
        assert not np.allclose(new_stats[layer]["var"], 1.0)
    # Closed form for the first BatchNorm: running = 0.9 * running + 0.1 * batch statistic (biased variance),
    # from (mean 0, var 1), with the batch statistic over batch and space of the first conv's output.
    conv = nn.Conv(8, (3, 3), padding="SAME", use_bias=False)
    h = conv.apply({"params": b.initial["params"]["stage0_conv0"]}, x)
    batch_mean = jnp.mean(h, axis=(0, 1, 2))
    batch_var = jnp.mean(jnp.square(h - batch_mean), axis=(0, 1, 2))
    np.testing.assert_allclose(new_stats["stage0_bn0"]["mean"], 0.1 * batch_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new_stats["stage0_bn0"]["var"], 0.9 + 0.1 * batch_var, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_eval_is_deterministic_and_per_image(built, name):
    b = built(name)
    params = _randomise_head(b.initial["params"])
    # Non-trivial running statistics, as after some training.
    _, state = b.train({"params": params, "batch_stats": b.initial["batch_stats"]}, b.images(3, scale=3.0, shift=0.5))
    trained = {"params": params, "batch_stats": state["batch_stats"]}

    x = b.images(4)
    other = x.at[1].set(b.images(5, scale=5.0, shift=-2.0)[1])  # same first image, different companion

    first, second, with_other = b.eval(trained, x), b.eval(trained, x), b.eval(trained, other)
    assert not np.allclose(first, 0.0)  # the checks below are not vacuous
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[0], with_other[0], rtol=1e-5, atol=1e-5)

    # Train mode normalises with the batch statistics: the same image's logits DO depend on its companion.
    assert not np.allclose(b.train(trained, x)[0][0], b.train(trained, other)[0][0], atol=1e-3)


def test_eval_mutates_nothing():
    model = models.get_model("small_cnn", 3, widths=(4,))
    variables = models.init_variables(model, _fast_key(0), (8, 8, 2))
    # Eval is called without `mutable` and returns the logits alone; even asked to, it changes no statistic.
    _, state = model.apply(variables, _images(6, (2, 8, 8, 2), scale=4.0, shift=3.0), train=False,
                           mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], variables["batch_stats"])


# --- dtype --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_bfloat16_compute_returns_float32_logits(built, name):
    f32, bf16 = built(name), built(name, dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf16.initial))  # params stay float32
    variables = {**f32.initial, "params": _randomise_head(f32.initial["params"])}
    x = f32.images(7)

    logits_bf16 = bf16.eval(variables, x)
    logits_f32 = f32.eval(variables, x)
    assert logits_bf16.dtype == jnp.float32 and logits_bf16.shape == (2, 4)
    assert not np.array_equal(logits_bf16, logits_f32)  # the computation really ran in bfloat16 ...
    np.testing.assert_allclose(logits_bf16, logits_f32, rtol=0.1, atol=0.1)  # ... and agrees to bfloat16 precision

    logits_train, state = bf16.train(variables, x)
    assert logits_train.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state["batch_stats"]))


# --- registry -----------------------------------------------------------------------------------------------------


def test_registry_contents_and_get_model():
    assert models.MODELS == {"small_cnn": models.SmallCNN, "resnet18": models.ResNet18, "resnet50": models.ResNet50}
    model = models.get_model("small_cnn", 6, widths=(32, 64, 128), convs_per_stage=2)
    assert isinstance(model, models.SmallCNN)
    assert (model.num_classes, tuple(model.widths), model.convs_per_stage) == (6, (32, 64, 128), 2)
    model = models.get_model("resnet50", 10, stem="small", zero_init_residual=False)
    assert isinstance(model, models.ResNet50) and model.stem == "small" and not model.zero_init_residual


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match="model.name='vgg16' is not valid") as err:
        models.get_model("vgg16", 3)
    for name in models.MODELS:
        assert name in str(err.value)


def test_unknown_option_names_model_and_valid_options():
    with pytest.raises(ValueError, match="resnet18") as err:
        models.get_model("resnet18", 3, widths=(8,))
    message = str(err.value)
    assert "widths" in message and "stem" in message and "zero_init_residual" in message and "dtype" in message
    with pytest.raises(ValueError, match="small_cnn") as err:
        models.get_model("small_cnn", 3, stem="small")
    assert "widths" in str(err.value) and "convs_per_stage" in str(err.value)


def test_invalid_option_values_raise():
    with pytest.raises(ValueError, match="'imagenet', 'small'"):
        models.get_model("resnet18", 3, stem="cifar")
    with pytest.raises(ValueError, match="widths"):
        models.get_model("small_cnn", 3, widths=())
    with pytest.raises(ValueError, match="convs_per_stage"):
        models.get_model("small_cnn", 3, convs_per_stage=0)
