"""`synthetic_scenes`: the built-in, procedurally generated SPML dataset (spec: SYNTHETIC_SCENES.md).

Every example is an aerial-looking tile generated from (seed, split, index) alone:

1. a domain-warped Voronoi partition into 2-6 regions of the 8 REGION classes, drawn with
   co-occurrence preferences ("What an image is");
2. a procedural texture per region class (colour, pattern frequency, orientation), with
   per-image variation of every parameter;
3. OBJECT classes as small shapes placed on matching regions with a probability;
4. per-image illumination / colour jitter and sensor noise, so colour alone does not solve it;
5. labels from the final class map ("Labels"): region classes with area share >= 2 %, every object
   visible at least once; `dominant_label` = argmax of the area shares.

The knobs the lead calibrates with the trainer (region count distribution, texture contrast,
noise level, object probabilities, ...) are the upper-case module constants below.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import tensorflow_datasets as tfds

from adagc_jax.datasets.synthetic_textures import OBJECT_SHAPES, REGION_TEXTURES, wave_noise

CLASS_NAMES = (
    "water", "trees", "grass", "field", "bare_soil", "pavement", "sand", "buildings",
    "car", "ship", "tank", "court",
)
REGION_CLASSES = CLASS_NAMES[:8]
OBJECT_CLASSES = CLASS_NAMES[8:]
NUM_CLASSES = len(CLASS_NAMES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}

SPLITS = ("train", "validation", "test")
# Part of each example's seed, so the three splits never share an image.
_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
VALID_BANDS = (3, 12)

# ---------------------------------------------------------------------------------------------
# Generator knobs (calibration). Sizes are in pixels of a 48 px tile and scale with image_size,
# so a larger image_size gives the same kinds of scene at a higher resolution.
# ---------------------------------------------------------------------------------------------
REFERENCE_SIZE = 48

# P(number of Voronoi seeds = k), k = 2..6 ("2 to 6 regions").
REGION_COUNT_PROBS = {2: 0.06, 3: 0.15, 4: 0.25, 5: 0.28, 6: 0.26}
# Amplitude (fraction of the tile) of the smooth displacement that makes region borders irregular.
REGION_BOUNDARY_WARP = 0.07
# A region class is labelled when its area share reaches this (spec "Labels": 2 %).
MIN_REGION_SHARE = 0.02

# Relative frequency of each region class (the first region, and the base of later draws).
REGION_BASE_WEIGHTS = {
    "water": 1.0, "trees": 1.0, "grass": 1.0, "field": 0.9, "bare_soil": 0.9,
    "pavement": 1.3, "sand": 0.7, "buildings": 1.0,
}
# Co-occurrence preferences: a new region's class is drawn with weight
# REGION_BASE_WEIGHTS[new] * affinity(class of the nearest earlier region, new). Unlisted pairs: 1.
REGION_AFFINITY_DEFAULT = 1.0
REGION_SELF_AFFINITY = 0.6  # the same class again mostly just enlarges that class
REGION_AFFINITY = {
    ("water", "sand"): 4.0, ("grass", "field"): 3.0, ("grass", "trees"): 3.0,
    ("field", "trees"): 2.5, ("buildings", "pavement"): 4.0, ("bare_soil", "field"): 2.0,
    ("bare_soil", "pavement"): 1.5, ("pavement", "grass"): 2.0, ("buildings", "trees"): 2.0,
    ("buildings", "grass"): 1.5, ("water", "trees"): 1.5, ("water", "grass"): 1.5,
    ("sand", "bare_soil"): 1.5,
    ("water", "buildings"): 0.4, ("sand", "field"): 0.4, ("sand", "buildings"): 0.5,
    ("water", "field"): 0.6,
}

# Objects: the region classes they sit on, the probability to place them when a host is present
# and the range of instances (inclusive).
OBJECT_HOSTS = {
    "car": ("pavement",), "ship": ("water",), "tank": ("bare_soil", "pavement"),
    "court": ("grass", "pavement"),
}
# Not close to 1: otherwise the host region alone would predict the object.
OBJECT_PROBS = {"car": 0.7, "ship": 0.65, "tank": 0.5, "court": 0.5}
OBJECT_COUNT_RANGE = {"car": (2, 7), "ship": (1, 3), "tank": (1, 4), "court": (1, 2)}
# An instance is placed only where this share of its shape lies inside the tile and on its host:
# a fragment of an object is not a learnable positive.
OBJECT_MIN_VISIBLE_FRACTION = 0.8
# Large objects first, so that small ones fill the space that is left.
OBJECT_DRAW_ORDER = ("court", "tank", "ship", "car")
OBJECT_PLACEMENT_TRIES = 10

# Texture contrast and per-class colour jitter: synthetic_textures.TEXTURE_CONTRAST / CLASS_COLOUR_JITTER.
# Per-image illumination: global gain, per-channel gain, additive haze, linear brightness ramp.
ILLUMINATION_GAIN_RANGE = (0.75, 1.25)
CHANNEL_GAIN_STD = 0.05
HAZE_RANGE = (0.0, 0.08)
ILLUMINATION_GRADIENT = 0.10
# Per-image std of the i.i.d. Gaussian sensor noise (on [0, 1]).
SENSOR_NOISE_STD_RANGE = (0.01, 0.035)

# 12-band config: bands 0-2 are R, G, B; bands 3-11 are fixed random linear mixes of R, G, B
# (the same for every image and config, drawn from this seed), each with its own noise.
MULTISPECTRAL_MIX_SEED = 20240601
MULTISPECTRAL_SCALE = 10000.0  # uint16 units per unit reflectance (like Sentinel-2 L2A DNs)

BAND_STATISTICS_EXAMPLES = 256


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=True)
class SyntheticScenesConfig(tfds.core.BuilderConfig):
    """Size, bands, split sizes and seed of a `synthetic_scenes` variant (SYNTHETIC_SCENES.md "Splits").

    Immutable after construction. (`dataclass(frozen=True)` cannot subclass the non-frozen
    `tfds.core.BuilderConfig`, so assignment is blocked by hand.)
    """

    image_size: int = 48
    bands: int = 3
    num_train: int = 2400
    num_validation: int = 600
    num_test: int = 2000
    seed: int = 0

    def __post_init__(self):
        _validate_fields(self.image_size, self.bands, self.num_train, self.num_validation,
                         self.num_test, self.seed)
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super().__setattr__(name, value)

    def __hash__(self):
        # The base class's list fields are unhashable; the name and the values define the data.
        return hash((self.name,) + self.values())

    def values(self) -> tuple[int, ...]:
        """The fields that determine the data (everything but the name and TFDS bookkeeping)."""
        return tuple(getattr(self, f) for f in _VALUE_FIELDS)

    def num_examples(self, split: str) -> int:
        if split not in _SPLIT_CODES:
            raise ValueError(f"Unknown split {split!r}; valid splits: {SPLITS}")
        return {"train": self.num_train, "validation": self.num_validation,
                "test": self.num_test}[split]


_VALUE_FIELDS = ("image_size", "bands", "num_train", "num_validation", "num_test", "seed")


def _validate_fields(image_size, bands, num_train, num_validation, num_test, seed):
    if bands not in VALID_BANDS:
        raise ValueError(f"Unknown bands={bands!r}; valid values: {VALID_BANDS}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    for field, value in (("num_train", num_train), ("num_validation", num_validation),
                         ("num_test", num_test)):
        if value < 1:
            raise ValueError(f"{field} must be >= 1, got {value}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy SeedSequence), got {seed}")


def _config_name(image_size, bands, num_train, num_validation, num_test, seed) -> str:
    return f"s{seed}_{image_size}px_{bands}b_{num_train}-{num_validation}-{num_test}"


DEFAULT_CONFIG = SyntheticScenesConfig(
    name="default", description="48 x 48 RGB (uint8 PNG), 2400 / 600 / 2000 images, seed 0.")
MULTISPECTRAL_CONFIG = SyntheticScenesConfig(
    name="multispectral", bands=12,
    description="48 x 48 x 12 bands (uint16: R, G, B + 9 fixed mixes), 2400 / 600 / 2000, seed 0.")
BUILTIN_CONFIGS = (DEFAULT_CONFIG, MULTISPECTRAL_CONFIG)


def make_config(**overrides) -> SyntheticScenesConfig:
    """A config with any of the fields of SyntheticScenesConfig overridden.

    The name is a function of all field values, so differently sized datasets prepared into one
    data_dir never collide. Values equal to a built-in config return that config itself (TFDS
    refuses a custom config that differs from a built-in one of the same name, and sharing the
    built-in name shares its prepared files): `make_config()` is `DEFAULT_CONFIG`.
    """
    unknown = sorted(set(overrides) - set(_VALUE_FIELDS))
    if unknown:
        raise ValueError(f"Unknown field(s) {unknown}; valid fields: {_VALUE_FIELDS}")
    values = {f: getattr(DEFAULT_CONFIG, f) for f in _VALUE_FIELDS}
    for field, value in overrides.items():
        if int(value) != value:
            raise ValueError(f"{field} must be an integer, got {value!r}")
        values[field] = int(value)
    for builtin in BUILTIN_CONFIGS:
        if builtin.values() == tuple(values[f] for f in _VALUE_FIELDS):
            return builtin
    return SyntheticScenesConfig(name=_config_name(**values), **values)


# ---------------------------------------------------------------------------------------------
# Scene generation
# ---------------------------------------------------------------------------------------------
def _affinity_matrix() -> np.ndarray:
    affinity = np.full((8, 8), REGION_AFFINITY_DEFAULT)
    np.fill_diagonal(affinity, REGION_SELF_AFFINITY)
    for (a, b), weight in REGION_AFFINITY.items():
        affinity[CLASS_INDEX[a], CLASS_INDEX[b]] = affinity[CLASS_INDEX[b], CLASS_INDEX[a]] = weight
    return affinity


_AFFINITY = _affinity_matrix()
_BASE_WEIGHTS = np.array([REGION_BASE_WEIGHTS[c] for c in REGION_CLASSES])


def _region_map(rng, u, v) -> np.ndarray:
    """(H, W) region-class map: warped Voronoi cells with co-occurrence-driven classes."""
    counts = np.array(list(REGION_COUNT_PROBS))
    num_regions = rng.choice(counts, p=np.array(list(REGION_COUNT_PROBS.values())))
    seeds = rng.uniform(size=(num_regions, 2))
    classes = np.empty(num_regions, np.int64)
    classes[0] = rng.choice(8, p=_BASE_WEIGHTS / _BASE_WEIGHTS.sum())
    for j in range(1, num_regions):  # <= 6 seeds; a class depends on the ones drawn before it
        nearest = np.argmin(np.sum((seeds[:j] - seeds[j]) ** 2, axis=1))
        weights = _BASE_WEIGHTS * _AFFINITY[classes[nearest]]
        classes[j] = rng.choice(8, p=weights / weights.sum())
    warped_u = u + REGION_BOUNDARY_WARP * wave_noise(rng, u, v, (0.8, 2.5), n_waves=4)
    warped_v = v + REGION_BOUNDARY_WARP * wave_noise(rng, u, v, (0.8, 2.5), n_waves=4)
    dist = ((warped_u[None] - seeds[:, 0, None, None]) ** 2
            + (warped_v[None] - seeds[:, 1, None, None]) ** 2)
    return classes[np.argmin(dist, axis=0)]


def _place_objects(rng, class_map, image, scale):
    """Draws OBJECT classes onto matching regions, in place; objects never overlap each other."""
    size = class_map.shape[0]
    # Shapes are drawn on a grid padded beyond the tile, so the part of an object that would
    # fall outside the tile is counted (and such an object rejected) like one off its host.
    pad = int(np.ceil(8 * scale))
    y, x = np.mgrid[-pad:size + pad, -pad:size + pad].astype(np.float64) + 0.5
    inside = (slice(pad, pad + size), slice(pad, pad + size))
    free = np.ones(class_map.shape, bool)  # pixels no object occupies yet
    region_map = class_map.copy()  # hosts are looked up in the regions, before any object
    for obj in OBJECT_DRAW_ORDER:
        hosts = np.isin(region_map, [CLASS_INDEX[h] for h in OBJECT_HOSTS[obj]]) & free
        if not hosts.any() or rng.uniform() >= OBJECT_PROBS[obj]:
            continue
        low, high = OBJECT_COUNT_RANGE[obj]
        for _ in range(rng.integers(low, high + 1)):
            for _ in range(OBJECT_PLACEMENT_TRIES):
                host_pixels = np.flatnonzero(hosts)
                if host_pixels.size == 0:
                    break
                cy, cx = divmod(host_pixels[rng.integers(host_pixels.size)], size)
                shape, rgb = OBJECT_SHAPES[obj](rng, x, y, cx + 0.5, cy + 0.5, scale)
                mask = shape[inside] & hosts  # a ship stays on water, a car on pavement
                if mask.sum() >= OBJECT_MIN_VISIBLE_FRACTION * shape.sum():
                    class_map[mask] = CLASS_INDEX[obj]
                    image[mask] = rgb[inside][mask]
                    hosts &= ~mask
                    free &= ~mask
                    break


def _apply_illumination(rng, image, u, v):
    """Per-image gain, colour cast, haze and a brightness ramp (the same scene under other light)."""
    gain = rng.uniform(*ILLUMINATION_GAIN_RANGE) * rng.normal(1.0, CHANNEL_GAIN_STD, size=3)
    haze = rng.uniform(*HAZE_RANGE)
    ramp_angle = rng.uniform(0, 2 * np.pi)
    ramp = 1.0 + ILLUMINATION_GRADIENT * rng.uniform(-1, 1) * (
        np.cos(ramp_angle) * (u - 0.5) + np.sin(ramp_angle) * (v - 0.5)) * 2
    return image * gain * ramp[..., None] + haze


@functools.cache
def _multispectral_mix() -> np.ndarray:
    """(3, 12) fixed mixing matrix: identity for R, G, B, then 9 random positive mixes."""
    rng = np.random.default_rng(MULTISPECTRAL_MIX_SEED)
    mixes = rng.dirichlet(np.ones(3), size=9) * rng.uniform(0.6, 1.3, size=(9, 1))
    return np.concatenate([np.eye(3), mixes], axis=0).T


def _area_and_labels(class_map):
    counts = np.bincount(class_map.ravel(), minlength=NUM_CLASSES)
    area = (counts / class_map.size).astype(np.float32)
    is_region = np.arange(NUM_CLASSES) < len(REGION_CLASSES)
    labels = np.where(is_region, area >= MIN_REGION_SHARE, area > 0).astype(np.uint8)
    return area, labels


def _scene(rng, size):
    """(region_map, class_map, image): the regions, the final per-pixel classes (objects drawn)
    and the lit float RGB image of one scene, before sensor noise."""
    v, u = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size
    region_map = _region_map(rng, u, v)
    image = np.zeros((size, size, 3))
    for c in np.unique(region_map):  # only the classes present are textured
        region = region_map == c
        image[region] = REGION_TEXTURES[CLASS_NAMES[c]](rng, u, v, 1.0 / REFERENCE_SIZE)[region]
    class_map = region_map.copy()
    _place_objects(rng, class_map, image, size / REFERENCE_SIZE)
    return region_map, class_map, _apply_illumination(rng, image, u, v)


def generate_example(config: SyntheticScenesConfig, split: str, index: int) -> dict:
    """Example `index` of `split`, a pure function of (config.seed, split, index, size, bands).

    Returns numpy values: image (H, W, 3) uint8 or (H, W, 12) uint16, labels (12,) uint8,
    area (12,) float32, dominant_label int, name str, id int (SYNTHETIC_SCENES.md "Labels").
    """
    if split not in _SPLIT_CODES:
        raise ValueError(f"Unknown split {split!r}; valid splits: {SPLITS}")
    rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], index])
    _, class_map, image = _scene(rng, config.image_size)

    noise_std = rng.uniform(*SENSOR_NOISE_STD_RANGE)
    if config.bands == 3:
        image = image + rng.normal(0.0, noise_std, size=image.shape)
        pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    else:
        bands = image @ _multispectral_mix()
        bands = bands + rng.normal(0.0, noise_std, size=bands.shape) * rng.uniform(0.7, 1.5, size=12)
        pixels = np.round(np.clip(bands, 0.0, None) * MULTISPECTRAL_SCALE).clip(0, 65535)
        pixels = pixels.astype(np.uint16)

    area, labels = _area_and_labels(class_map)
    return {
        "image": pixels,
        "labels": labels,
        "area": area,
        "dominant_label": int(np.argmax(area)),
        "name": f"{split}_{index:06d}",
        "id": int(index),
    }


def band_statistics_for(config: SyntheticScenesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (mean, std) float32 in raw image units over the first min(256, num_train)
    training examples, regenerated (deterministic, no prepared data needed)."""
    mean, std = _cached_band_statistics(config)
    return mean.copy(), std.copy()  # copies: the cached arrays must not be changed by a caller


@functools.lru_cache(maxsize=16)
def _cached_band_statistics(config):
    count = min(BAND_STATISTICS_EXAMPLES, config.num_train)
    images = np.stack([generate_example(config, "train", i)["image"] for i in range(count)])
    pixels = images.reshape(-1, config.bands).astype(np.float64)
    return pixels.mean(axis=0).astype(np.float32), pixels.std(axis=0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# TFDS builder
# ---------------------------------------------------------------------------------------------
class SyntheticScenes(tfds.core.GeneratorBasedBuilder):
    """Procedural aerial scenes with 12 multi-label classes (SYNTHETIC_SCENES.md). No download."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = list(BUILTIN_CONFIGS)
    DEFAULT_CONFIG_NAME = "default"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # TFDS 4.9.10 finds a builder's file through the `importlib_resources` backport, which it
        # only installs on Python < 3.9 (tensorflow/datasets#11212), so download_and_prepare()
        # fails with ModuleNotFoundError; the path is simply this module's file.
        return tfds.core.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        size = config.image_size
        if config.bands == 3:
            image = tfds.features.Image(shape=(size, size, 3), dtype=np.uint8, encoding_format="png")
        else:
            image = tfds.features.Tensor(shape=(size, size, config.bands), dtype=np.uint16,
                                         encoding="zlib")
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": image,
                "labels": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.uint8),
                "area": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.float32),
                "dominant_label": tfds.features.ClassLabel(names=CLASS_NAMES),
                "name": tfds.features.Text(),
                "id": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image", "labels"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is generated; nothing to download
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split):
        config = self.builder_config
        for index in range(config.num_examples(split)):
            yield index, generate_example(config, split, index)

    def band_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) float32 of length `bands` in raw image units; the input pipeline normalises with them."""
        return band_statistics_for(self.builder_config)
