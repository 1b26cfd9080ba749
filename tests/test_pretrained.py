"""Tests of adagc_jax/pretrained.py without torch: torchvision key names and layouts, the file round trip, the head
rule, the band adaptation (kernel and forward pass), and the errors for a missing file, another architecture and
shapes that do not fit.

The files are written from the project's own variables with the inverse mapping (to_torchvision_state_dict), so
CI needs neither torch nor a download; benchmarks/check_pretrained_torch.py compares with torchvision itself.
Variables are random numpy arrays of the shapes jax.eval_shape gives (no initialisation to compile); only the
forward-pass test compiles a model (ResNet-18 on 32 px images).
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from adagc_jax import models, pretrained
from adagc_jax.errors import ConfigError


@functools.cache
def _model_and_shapes(name, num_classes, bands, options):
    """A model and its variables' shapes (traced once per configuration: tracing a ResNet-50 takes seconds)."""
    model = models.get_model(name, num_classes, **dict(options))
    abstract = jax.eval_shape(lambda rng: model.init(rng, jnp.zeros((1, 32, 32, bands)), train=False),
                              jax.random.key(0))
    return model, {"params": abstract["params"], "batch_stats": abstract["batch_stats"]}


def _random_variables(name, num_classes=1000, bands=3, seed=0, **options):
    """A model and random variables for it, with valid BatchNorm statistics (positive variances)."""
    model, abstract = _model_and_shapes(name, num_classes, bands, tuple(sorted(options.items())))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        leaf_name = path[-1].key
        if leaf_name == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        if leaf_name == "scale":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        if leaf_name == "kernel":  # He-scaled, so activations keep their size through 18 layers
            fan_in = int(np.prod(leaf.shape[:-1]))
            return (rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        return (rng.normal(size=leaf.shape) * 0.1).astype(np.float32)

    return model, jax.tree_util.tree_map_with_path(fill, abstract)


def _save(tmp_path, state, name="weights.safetensors"):
    path = os.path.join(tmp_path, name)
    save_file(state, path)
    return path


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


# --- the inverse mapping: torchvision names and layouts ----------------------------------------------------------


@pytest.mark.parametrize("name,num_keys,shapes", [
    ("resnet18", 122, {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.1.conv2.weight":
                       (64, 64, 3, 3), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                       "layer2.0.downsample.1.running_mean": (128,), "layer4.1.bn2.weight": (512,),
                       "fc.weight": (1000, 512), "fc.bias": (1000,)}),
    ("resnet50", 320, {"conv1.weight": (64, 3, 7, 7), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                       "layer3.5.conv2.weight": (256, 256, 3, 3), "layer4.2.conv3.weight": (2048, 512, 1, 1),
                       "layer4.2.bn3.bias": (2048,), "fc.weight": (1000, 2048)}),
])
def test_state_dict_has_torchvision_names_and_shapes(name, num_keys, shapes):
    # torchvision's resnet18 / resnet50 state dicts have 122 / 320 entries (num_batches_tracked included).
    _, variables = _random_variables(name)
    state = pretrained.to_torchvision_state_dict(variables)
    assert len(state) == num_keys
    for key, shape in shapes.items():
        assert state[key].shape == shape, key
    assert state["bn1.num_batches_tracked"].dtype == np.int64
    assert ("layer1.0.downsample.0.weight" in state) == (name == "resnet50")  # basic blocks keep 64 features
    # Layouts: OIHW[o, i, h, w] = HWIO[h, w, i, o]; fc (out, in) = Dense (in, out) transposed.
    stem = np.asarray(variables["params"]["stem_conv"]["kernel"])
    assert state["conv1.weight"][5, 2, 1, 6] == stem[1, 6, 2, 5]
    np.testing.assert_array_equal(state["fc.weight"], np.asarray(variables["params"]["head"]["kernel"]).T)
    np.testing.assert_array_equal(state["bn1.running_mean"], variables["batch_stats"]["stem_bn"]["mean"])
    np.testing.assert_array_equal(state["bn1.weight"], variables["params"]["stem_bn"]["scale"])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_file_round_trip_restores_every_variable(tmp_path, name):
    _, variables = _random_variables(name, seed=1)
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(variables))
    _, fresh = _random_variables(name, seed=2)
    lines = []
    loaded = pretrained.load(path, fresh, log=lines.append)
    _assert_trees_equal(loaded, variables)
    assert all(isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(loaded))
    assert not np.array_equal(fresh["params"]["stem_conv"]["kernel"], variables["params"]["stem_conv"]["kernel"])
    assert len(lines) == 1 and path in lines[0] and "classifier loaded (1000 classes)" in lines[0]
    assert name in lines[0]


def test_head_of_another_size_is_kept_and_logged(tmp_path):
    _, source = _random_variables("resnet18", num_classes=1000, seed=1)
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(source))
    _, fresh = _random_variables("resnet18", num_classes=10, seed=2)
    lines = []
    loaded = pretrained.load(path, fresh, log=lines.append)
    _assert_trees_equal(loaded["params"]["head"], fresh["params"]["head"])  # the model's own head
    _assert_trees_equal(loaded["params"]["stage3_block1"], source["params"]["stage3_block1"])  # the body loaded
    _assert_trees_equal(loaded["batch_stats"], source["batch_stats"])
    assert "classifier NOT loaded" in lines[0] and "1000 outputs" in lines[0] and "10 classes" in lines[0]


def test_file_without_classifier_keeps_the_head(tmp_path):
    _, source = _random_variables("resnet18", seed=1)
    state = {k: v for k, v in pretrained.to_torchvision_state_dict(source).items() if not k.startswith("fc.")}
    _, fresh = _random_variables("resnet18", seed=2)
    lines = []
    loaded = pretrained.load(_save(tmp_path, state), fresh, log=lines.append)
    _assert_trees_equal(loaded["params"]["head"], fresh["params"]["head"])
    _assert_trees_equal(loaded["params"]["stem_conv"], source["params"]["stem_conv"])
    assert "no fc layer" in lines[0]


# --- bands -------------------------------------------------------------------------------------------------------


def test_first_conv_adapted_to_12_bands_like_timm(tmp_path):
    _, rgb = _random_variables("resnet18", seed=1)
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(rgb))
    _, fresh = _random_variables("resnet18", bands=12, seed=2)
    lines = []
    loaded = pretrained.load(path, fresh, log=lines.append)
    rgb_kernel = np.asarray(rgb["params"]["stem_conv"]["kernel"])  # (7, 7, 3, 64)
    kernel = np.asarray(loaded["params"]["stem_conv"]["kernel"])
    assert kernel.shape == (7, 7, 12, 64)
    for band in range(12):  # band i takes RGB filter i mod 3, scaled by 3/12
        np.testing.assert_allclose(kernel[:, :, band], rgb_kernel[:, :, band % 3] * 0.25, rtol=1e-6)
    _assert_trees_equal(loaded["params"]["stage0_block0"], rgb["params"]["stage0_block0"])
    assert "adapted from 3 to 12 bands" in lines[0] and "3/12" in lines[0]


@pytest.mark.parametrize("bands", [1, 4])
def test_first_conv_adaptation_other_band_counts(tmp_path, bands):
    # timm: one band -> sum of the RGB filters; 4 bands -> R, G, B, R filters scaled by 3/4.
    _, rgb = _random_variables("resnet18", seed=1)
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(rgb))
    _, fresh = _random_variables("resnet18", bands=bands, seed=2)
    lines = []
    kernel = np.asarray(pretrained.load(path, fresh, log=lines.append)["params"]["stem_conv"]["kernel"])
    rgb_kernel = np.asarray(rgb["params"]["stem_conv"]["kernel"])
    expected = (rgb_kernel.sum(axis=2, keepdims=True) if bands == 1
                else rgb_kernel[:, :, [0, 1, 2, 0]] * 0.75)
    np.testing.assert_allclose(kernel, expected, rtol=1e-5, atol=1e-7)
    assert ("sum of the RGB filters" if bands == 1 else "scaled by 3/4") in lines[0]


def test_12_band_file_loads_into_12_band_model_unchanged(tmp_path):
    _, source = _random_variables("resnet18", bands=12, seed=1)
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(source))
    _, fresh = _random_variables("resnet18", bands=12, seed=2)
    lines = []
    _assert_trees_equal(pretrained.load(path, fresh, log=lines.append), source)
    assert "adapted" not in lines[0]


def test_12_band_model_on_repeated_rgb_reproduces_the_rgb_model(tmp_path):
    # The adapted kernel gives band i the RGB filter i mod 3 times 3/12. An image whose 12 bands are R, G, B, R, G,
    # B, ... (4 copies of the RGB image, in that order) therefore gets sum_i W[i mod 3] x[i mod 3] * 3/12 =
    # 4 * (sum_c W[c] x[c]) / 4: exactly the RGB model's first convolution, and so the same logits. Any other band
    # order pairs filters with the wrong colours and changes the logits (checked, so the equality is not vacuous).
    model, rgb = _random_variables("resnet18", num_classes=1000, seed=1)
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(rgb))
    _, fresh12 = _random_variables("resnet18", bands=12, seed=2)
    variables12 = pretrained.load(path, fresh12, log=lambda _: None)
    variables3 = pretrained.load(path, _random_variables("resnet18", seed=3)[1], log=lambda _: None)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))  # the model does not depend on the band count

    x3 = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype(np.float32)
    logits3 = np.asarray(apply(variables3, x3))
    logits12 = np.asarray(apply(variables12, np.tile(x3, (1, 1, 1, 4))))  # bands R, G, B, R, G, B, ...
    assert np.abs(logits3).max() > 1.0  # a real signal, not near-zero logits
    np.testing.assert_allclose(logits12, logits3, rtol=1e-4, atol=1e-4 * np.abs(logits3).max())
    grouped = np.repeat(x3, 4, axis=-1)  # bands R, R, R, R, G, ...: the filters meet the wrong colours
    assert not np.allclose(np.asarray(apply(variables12, grouped)), logits3, atol=1e-2 * np.abs(logits3).max())


# --- errors ------------------------------------------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path):
    _, fresh = _random_variables("resnet18")
    path = os.path.join(tmp_path, "absent.safetensors")
    with pytest.raises(ConfigError, match="no weights file") as err:
        pretrained.load(path, fresh)
    assert path in str(err.value) and "docs/pretrained.md" in str(err.value)


def test_unreadable_file_is_a_config_error(tmp_path):
    path = os.path.join(tmp_path, "model.pth")
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 a torch zip checkpoint, not safetensors")
    _, fresh = _random_variables("resnet18")
    with pytest.raises(ConfigError, match="cannot be read as a safetensors file") as err:
        pretrained.load(path, fresh)
    assert path in str(err.value)


def test_file_of_another_architecture_names_both_and_the_keys(tmp_path):
    _, r18 = _random_variables("resnet18")
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(r18))
    _, r50 = _random_variables("resnet50")
    with pytest.raises(ConfigError) as err:
        pretrained.load(path, r50)
    message = str(err.value)
    assert "holds resnet18 (basic blocks [2, 2, 2, 2])" in message
    assert "model is resnet50 (bottleneck blocks [3, 4, 6, 3])" in message
    assert "missing" in message and "layer1.0.bn3.bias" in message


def test_deeper_resnet_file_with_extra_blocks_is_rejected(tmp_path):
    # A ResNet-101 has all of ResNet-50's tensors with the same shapes, plus more blocks: it must not load silently.
    _, r50 = _random_variables("resnet50")
    state = pretrained.to_torchvision_state_dict(r50)
    for block in range(6, 23):
        for key in [k for k in state if k.startswith("layer3.5.")]:
            state[key.replace("layer3.5.", f"layer3.{block}.")] = state[key]
    with pytest.raises(ConfigError, match="holds resnet101") as err:
        pretrained.load(_save(tmp_path, state), r50)
    assert "the model does not have" in str(err.value) and "layer3.10." in str(err.value)


def test_shape_that_does_not_fit_names_key_and_shapes(tmp_path):
    _, r18 = _random_variables("resnet18")
    state = pretrained.to_torchvision_state_dict(r18)
    state["layer3.1.conv2.weight"] = np.zeros((256, 128, 3, 3), np.float32)  # e.g. another width
    with pytest.raises(ConfigError) as err:
        pretrained.load(_save(tmp_path, state), r18)
    message = str(err.value)
    assert "'layer3.1.conv2.weight'" in message and "(256, 128, 3, 3)" in message
    assert "(3, 3, 256, 256)" in message and "stage2_block1/conv2/kernel" in message


def test_file_with_other_band_count_than_rgb_or_model_is_rejected(tmp_path):
    _, four = _random_variables("resnet18", bands=4)
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(four))
    _, twelve = _random_variables("resnet18", bands=12)
    with pytest.raises(ConfigError, match=r"'conv1.weight'.*\(64, 4, 7, 7\).*\(7, 7, 12, 64\)"):
        pretrained.load(path, twelve)


def test_small_stem_and_small_cnn_are_rejected(tmp_path):
    _, r18 = _random_variables("resnet18")
    path = _save(tmp_path, pretrained.to_torchvision_state_dict(r18))
    _, small_stem = _random_variables("resnet18", stem="small")
    with pytest.raises(ConfigError, match=r"stem='imagenet'.*\(3, 3, 3, 64\)|\(3, 3, 3, 64\).*stem='imagenet'"):
        pretrained.load(path, small_stem)
    _, cnn = _random_variables("small_cnn", widths=(8,))
    with pytest.raises(ConfigError, match="ResNets only"):
        pretrained.load(path, cnn)
