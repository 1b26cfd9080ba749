"""ImageNet-pretrained weights for the project's ResNets, from a `.safetensors` file the user downloaded.

Two files users actually have share one key layout: torchvision's ResNet state dict saved with
`safetensors.torch.save_file(model.state_dict(), ...)`, and timm's hub `model.safetensors` (resnet50.a1_in1k, ...).
Both name the layers conv1, bn1, layer{1-4}.{block}.conv{k}/bn{k}, layer{i}.0.downsample.0/1 and fc. docs/pretrained.md
tells where to get them; nothing here downloads anything.

`load(path, variables)` puts a file's weights into a model's freshly initialised variables:
- conv kernels OIHW (PyTorch) -> HWIO (flax); the Dense kernel (out, in) -> (in, out);
- BatchNorm weight/bias -> params scale/bias, running_mean/running_var -> batch_stats mean/var;
  num_batches_tracked (a counter PyTorch keeps for momentum=None) has no counterpart and is dropped;
- the classifier `fc` is loaded only when it has the model's number of classes; otherwise the model keeps its own
  freshly initialised head (near-zero, as models.py wants for the 0.5 start) and the log says so;
- a file with RGB filters loaded into a model with another number of bands (reBEN's 12) gets its first convolution
  adapted the way timm's `adapt_input_conv` does: one band -> the sum of the RGB filters; otherwise the RGB filters
  are repeated over the bands (band i takes RGB filter i mod 3) and scaled by 3 / bands. The scaling keeps the
  first layer's response to an image whose bands repeat R, G, B equal to the RGB model's response, so the
  pretrained statistics of every later layer stay valid at the start; it is only a starting point for bands that
  are not RGB.

The ResNets of models.py compute what torchvision computes for the same weights (symmetric padding of the 7x7 stem
conv, the max-pool and the strided 3x3 convs; BatchNorm epsilon 1e-5), so a loaded ImageNet model reproduces
torchvision's logits (benchmarks/check_pretrained_torch.py measures it). Only the ImageNet stem takes the weights:
the 'small' stem's 3x3 conv has no pretrained counterpart.

The core library imports this module without TensorFlow and without torch: files are read with the `safetensors`
package's numpy API.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from adagc_jax.errors import ConfigError

# Torchvision's block counts per stage and block type for the ResNets it ships; used to name what a file holds.
_KNOWN_RESNETS = {
    ((2, 2, 2, 2), "basic"): "resnet18",
    ((3, 4, 6, 3), "basic"): "resnet34",
    ((3, 4, 6, 3), "bottleneck"): "resnet50",
    ((3, 4, 23, 3), "bottleneck"): "resnet101",
    ((3, 8, 36, 3), "bottleneck"): "resnet152",
}

# flax leaf name -> torch parameter suffix, per collection.
_LEAF_NAMES = {
    "params": {"kernel": "weight", "scale": "weight", "bias": "bias"},
    "batch_stats": {"mean": "running_mean", "var": "running_var"},
}
_BLOCK = re.compile(r"stage(\d+)_block(\d+)$")
_BLOCK_LAYER = re.compile(r"(conv|bn)\d+$")
_TOP_LEVEL = {"stem_conv": "conv1", "stem_bn": "bn1", "head": "fc"}
_IN_BLOCK = {"proj_conv": "downsample.0", "proj_bn": "downsample.1"}

_log = logging.getLogger(__name__)


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    """The torchvision state-dict key of one flax leaf, e.g. ('params', ('stage1_block0', 'proj_conv', 'kernel'))
    -> 'layer2.0.downsample.0.weight'. Raises ValueError for a leaf that is not part of a project ResNet."""
    *modules, leaf = path
    names = []
    for depth, module in enumerate(modules):
        block = _BLOCK.match(module)
        if depth == 0 and module in _TOP_LEVEL:
            names.append(_TOP_LEVEL[module])
        elif depth == 0 and block:
            names.append(f"layer{int(block.group(1)) + 1}.{int(block.group(2))}")
        elif depth == 1 and _BLOCK.match(modules[0]) and (module in _IN_BLOCK or _BLOCK_LAYER.match(module)):
            names.append(_IN_BLOCK.get(module, module))
        else:
            names = None
            break
    suffix = _LEAF_NAMES.get(collection, {}).get(leaf)
    if not names or suffix is None:
        raise ValueError(f"{collection}/{'/'.join(path)} is not a variable of a project ResNet")
    return ".".join(names + [suffix])


# Conv kernels: flax HWIO <-> PyTorch OIHW; Dense kernels are transposed; vectors are the same in both.
_TO_TORCH_AXES, _TO_FLAX_AXES = (3, 2, 0, 1), (2, 3, 1, 0)


def _relayout(array: np.ndarray, conv_axes: tuple) -> np.ndarray:
    if array.ndim == 4:
        return np.transpose(array, conv_axes)
    return array.T if array.ndim == 2 else array


def _to_torch_layout(array: np.ndarray) -> np.ndarray:
    """flax layout -> PyTorch layout: conv HWIO -> OIHW, Dense (in, out) -> (out, in); vectors unchanged."""
    return _relayout(array, _TO_TORCH_AXES)


def _to_flax_layout(array: np.ndarray) -> np.ndarray:
    """PyTorch layout -> flax layout: conv OIHW -> HWIO, Dense (out, in) -> (in, out); vectors unchanged."""
    return _relayout(array, _TO_FLAX_AXES)


def _flat_resnet_variables(variables: dict) -> dict[str, tuple[str, tuple[str, ...]]]:
    """torch key -> (collection, flax path) of every params/batch_stats leaf. Raises ConfigError for variables that
    are not those of a project ResNet with the ImageNet stem."""
    params = variables.get("params", {})
    if "stem_conv" not in params or "stage0_block0" not in params:
        raise ConfigError(
            "model.pretrained: ImageNet weights exist for the ResNets only (resnet18, resnet50), and these "
            f"variables are not a ResNet's (their top-level layers are {sorted(params)[:6]}...). Set "
            "model.name to the architecture of the weights file, or leave model.pretrained empty.")
    stem_kernel = np.shape(params["stem_conv"]["kernel"])
    if tuple(stem_kernel[:2]) != (7, 7):
        raise ConfigError(
            f"model.pretrained: ImageNet weights need the ImageNet stem (a 7x7 first convolution), but the model's "
            f"stem_conv kernel is {tuple(stem_kernel)} (HWIO): set model.stem='imagenet', or leave "
            "model.pretrained empty to train the small stem from scratch.")
    keys = {}
    for collection in ("params", "batch_stats"):
        for path in traverse_util.flatten_dict(variables.get(collection, {})):
            try:
                keys[torch_key(collection, path)] = (collection, path)
            except ValueError as err:
                raise ConfigError(
                    f"model.pretrained: {err}; only resnet18 and resnet50 take ImageNet weights.") from err
    return keys


def to_torchvision_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """The torchvision state dict (numpy arrays, torchvision key names and layouts) of a project ResNet's variables,
    including the `num_batches_tracked` counters (0) that torchvision files carry.

    The inverse of `load` for a model with the ImageNet stem: `safetensors.numpy.save_file(state, path)` writes a
    file that `load` reads back exactly, and that torchvision's `load_state_dict` accepts for the same
    architecture (3 bands) once read with `safetensors.torch.load_file`.
    """
    state = {}
    for key, (collection, path) in _flat_resnet_variables(variables).items():
        leaf = traverse_util.flatten_dict(variables[collection])[path]
        state[key] = np.ascontiguousarray(_to_torch_layout(np.asarray(leaf, np.float32)))
        if key.endswith(".running_var"):
            state[key[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return state


def describe_state_dict(keys) -> str:
    """What architecture a ResNet state dict's keys describe, e.g. 'resnet50 (bottleneck blocks [3, 4, 6, 3])'."""
    keys = set(keys)
    blocks = []
    for layer in range(1, 5):
        indices = {int(k.split(".")[1]) for k in keys if k.startswith(f"layer{layer}.") and k.split(".")[1].isdigit()}
        blocks.append(max(indices) + 1 if indices else 0)
    if not any(blocks):
        return "not a torchvision-layout ResNet (no layer1-4 keys)"
    kind = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
    name = _KNOWN_RESNETS.get((tuple(blocks), kind), "an unknown ResNet")
    return f"{name} ({kind} blocks {blocks})"


def _read(path: str) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays; ConfigError naming the file when it cannot be read."""
    if not os.path.isfile(path):
        raise ConfigError(
            f"model.pretrained: no weights file at {path!r}. Give the path of a torchvision or timm ResNet "
            "'.safetensors' file; docs/pretrained.md tells how to get one (nothing is downloaded at run time).")
    from safetensors import numpy as safetensors_numpy  # imported here: only runs that load weights need it

    try:
        return safetensors_numpy.load_file(path)
    except Exception as err:  # the package raises its own error types (and OSError, ValueError) for bad files
        raise ConfigError(
            f"model.pretrained: {path!r} cannot be read as a safetensors file ({type(err).__name__}: {err}). "
            "Convert a PyTorch checkpoint with safetensors.torch.save_file(model.state_dict(), path) as "
            "docs/pretrained.md shows.") from err


def _adapt_first_conv(rgb: np.ndarray, bands: int) -> np.ndarray:
    """timm's adapt_input_conv on an OIHW kernel with 3 input channels: 1 band -> the RGB sum; otherwise the RGB
    filters repeated over `bands` (band i gets filter i mod 3), scaled by 3 / bands so that an image whose bands
    cycle R, G, B gives the RGB response."""
    if bands == 1:
        return rgb.sum(axis=1, keepdims=True)
    repeats = -(-bands // 3)
    return np.tile(rgb, (1, repeats, 1, 1))[:, :bands] * np.float32(3.0 / bands)


def load(path: str | os.PathLike, variables: dict, log: Callable[[str], None] | None = None) -> dict:
    """`variables` (a project ResNet's freshly initialised {'params', 'batch_stats'}, ImageNet stem) with the
    weights of the torchvision/timm ResNet `.safetensors` file at `path` in place.

    `log` receives one line per decision a run log should show (the file loaded, whether the head was kept, the
    band adaptation); by default the lines go to this module's logger. Raises ConfigError when the file is missing
    or unreadable, holds another architecture (naming the keys that differ), or has a tensor whose shape does not
    fit (naming the key and both shapes).
    """
    say = log if log is not None else _log.info
    path = os.fspath(path)
    state = {k: v for k, v in _read(path).items() if not k.endswith(".num_batches_tracked")}
    expected = _flat_resnet_variables(variables)
    model_arch = describe_state_dict(expected)

    # Architecture: the same set of tensors apart from the classifier, which may differ in size or be absent.
    body_expected = {k for k in expected if not k.startswith("fc.")}
    body_file = {k for k in state if not k.startswith("fc.")}
    missing, unexpected = sorted(body_expected - body_file), sorted(body_file - body_expected)
    if missing or unexpected:
        details = []
        if missing:
            details.append(f"{len(missing)} key(s) the model needs are missing (first: {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} key(s) the model does not have (first: {unexpected[:3]})")
        raise ConfigError(
            f"model.pretrained: {path!r} holds {describe_state_dict(state)} but the model is {model_arch}: "
            f"{'; '.join(details)}. Use a weights file of the model's architecture, or set model.name to the "
            "file's.")

    flat = {c: dict(traverse_util.flatten_dict(variables.get(c, {}))) for c in ("params", "batch_stats")}
    num_classes = np.shape(flat["params"][("head", "bias")])[0]
    head_file = state.get("fc.weight")
    features = np.shape(flat["params"][("head", "kernel")])[0]
    load_head = (head_file is not None and "fc.bias" in state
                 and np.shape(head_file) == (num_classes, features) and np.shape(state["fc.bias"]) == (num_classes,))
    notes = []
    for key, (collection, leaf_path) in expected.items():
        if key.startswith("fc.") and not load_head:
            continue
        target = flat[collection][leaf_path]
        value = np.asarray(state[key], np.float32)
        if key == "conv1.weight" and value.ndim == 4 and value.shape[1] == 3 and np.shape(target)[2] != 3:
            bands = np.shape(target)[2]
            value = _adapt_first_conv(value, bands)
            how = ("the sum of the RGB filters" if bands == 1
                   else f"RGB filters repeated over the bands and scaled by 3/{bands}")
            notes.append(f"first convolution adapted from 3 to {bands} bands ({how}, as timm's adapt_input_conv)")
        value = _to_flax_layout(value)
        if value.shape != np.shape(target):
            raise ConfigError(
                f"model.pretrained: tensor {key!r} of {path!r} has shape {tuple(state[key].shape)} "
                f"(PyTorch layout), which is {value.shape} in the model's layout, but the model's "
                f"{collection}/{'/'.join(leaf_path)} has shape {tuple(np.shape(target))}. The file is not a "
                f"{model_arch.split(' ')[0]} for this input (bands) or it is another variant (e.g. a wide ResNet).")
        flat[collection][leaf_path] = jnp.asarray(value, dtype=target.dtype)

    if load_head:
        notes.append(f"classifier loaded ({num_classes} classes)")
    else:
        found = f"{np.shape(head_file)[0]} outputs" if head_file is not None else "no fc layer"
        notes.append(f"classifier NOT loaded: the file's has {found}, the model has {num_classes} classes; "
                     "the head is freshly initialised")
    say(f"Pretrained weights: loaded {path} ({describe_state_dict(state)}, "
        f"{len(expected) - (0 if load_head else 2)} tensors); " + "; ".join(notes))
    loaded = dict(variables)
    for collection in ("params", "batch_stats"):
        loaded[collection] = traverse_util.unflatten_dict(flat[collection])
    return loaded
