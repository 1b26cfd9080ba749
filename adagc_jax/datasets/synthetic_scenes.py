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

# Multiplies every texture's pattern amplitude (1 = as designed; 0 = flat colours).
TEXTURE_CONTRAST = 1.0
# Per-image, per-class additive colour jitter (std, on [0, 1] reflectance).
CLASS_COLOUR_JITTER = 0.03
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
# Texture helpers. Coordinates: u (x) and v (y) in [0, 1), one unit = the tile, so texture
# frequencies are in cycles per tile and independent of image_size.
# ---------------------------------------------------------------------------------------------
def _wave_noise(rng, u, v, freq_range, n_waves=8, angle=None, angle_spread=np.pi):
    """Band-limited noise on the tile grid (u, v): a sum of random plane waves, unit variance.

    freq_range: cycles per tile. angle=None gives isotropic noise; otherwise the waves' directions
    lie within angle +- angle_spread / 2 (oriented patterns such as dune ripples).
    """
    freqs = rng.uniform(*freq_range, size=n_waves)
    if angle is None:
        angles = rng.uniform(0.0, np.pi, size=n_waves)
    else:
        angles = angle + rng.uniform(-angle_spread / 2, angle_spread / 2, size=n_waves)
    phases = rng.uniform(0.0, 2 * np.pi, size=n_waves)
    # A plane wave is separable: cos(a(x) + b(y)) = cos a cos b - sin a sin b, so the sum over
    # waves is one (H, 2n) @ (2n, W) product instead of n cosines of the whole tile.
    x, y = u[0, :], v[:, 0]
    a = 2 * np.pi * (freqs * np.cos(angles))[:, None] * x + phases[:, None]  # (n, W)
    b = 2 * np.pi * (freqs * np.sin(angles))[:, None] * y  # (n, H)
    waves = np.cos(b).T @ np.cos(a) - np.sin(b).T @ np.sin(a)
    # Each cosine has variance 1/2, so the scaled sum has variance 1.
    return waves * np.sqrt(2.0 / n_waves)


def _pick_palette(rng, palettes):
    """One (dark, light) colour pair of a class, jittered per image (within-class variation)."""
    dark, light = palettes[rng.integers(len(palettes))]
    jitter = rng.normal(0.0, CLASS_COLOUR_JITTER, size=3)
    return np.asarray(dark) + jitter, np.asarray(light) + jitter


def _blend(dark, light, t):
    """Per-pixel mix of two colours; t is clipped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)[..., None]
    return dark * (1.0 - t) + light * t


def _rotated(u, v, angle):
    """Coordinates along and across direction `angle`."""
    c, s = np.cos(angle), np.sin(angle)
    return c * u + s * v, -s * u + c * v


# Per-class textures: f(rng, u, v, px) -> (H, W, 3) float image of the whole tile in that class's
# look; px = size of one 48-px-tile pixel in tile units (for patterns defined in pixels).
def _water_texture(rng, u, v, px):
    """Smooth, low-frequency; faint ripples at one orientation; dark blue or greenish."""
    dark, light = _pick_palette(rng, [((0.04, 0.11, 0.22), (0.11, 0.24, 0.36)),
                                      ((0.07, 0.16, 0.15), (0.15, 0.28, 0.26))])
    t = (0.5 + TEXTURE_CONTRAST * 0.17 * _wave_noise(rng, u, v, (0.7, 2.5))
         + TEXTURE_CONTRAST * 0.06 * _wave_noise(rng, u, v, (9.0, 14.0), angle=rng.uniform(0, np.pi),
                                                 angle_spread=0.4))
    return _blend(dark, light, t)


def _trees_texture(rng, u, v, px):
    """Blotchy dark green: crowns of a few pixels separated by dark shadow."""
    dark, light = _pick_palette(rng, [((0.03, 0.09, 0.04), (0.14, 0.33, 0.12)),
                                      ((0.05, 0.11, 0.05), (0.22, 0.36, 0.14))])
    blobs = _wave_noise(rng, u, v, (6.0, 11.0), n_waves=12)
    t = 0.5 + 0.5 * np.tanh(TEXTURE_CONTRAST * 1.6 * blobs)
    return _blend(dark, light, t)


def _grass_texture(rng, u, v, px):
    """Light green, smooth with low-contrast patches."""
    dark, light = _pick_palette(rng, [((0.26, 0.46, 0.16), (0.38, 0.58, 0.24)),
                                      ((0.21, 0.39, 0.14), (0.33, 0.51, 0.20))])
    t = (0.5 + TEXTURE_CONTRAST * 0.20 * _wave_noise(rng, u, v, (1.5, 4.0))
         + TEXTURE_CONTRAST * 0.08 * _wave_noise(rng, u, v, (12.0, 20.0)))
    return _blend(dark, light, t)


# Pairs of crop colours that differ enough for the stripes to show (green / wheat / ploughed).
_FIELD_CROP_PAIRS = (
    ((0.30, 0.47, 0.13), (0.66, 0.59, 0.32)), ((0.42, 0.32, 0.20), (0.66, 0.59, 0.32)),
    ((0.30, 0.47, 0.13), (0.48, 0.38, 0.24)), ((0.24, 0.38, 0.11), (0.52, 0.63, 0.28)),
)


def _field_texture(rng, u, v, px):
    """Parallel stripes at a random angle and frequency between two crop colours."""
    dark, light = _pick_palette(rng, _FIELD_CROP_PAIRS)
    along, _ = _rotated(u, v, rng.uniform(0, np.pi))
    stripes = np.sin(2 * np.pi * rng.uniform(4.0, 9.0) * along + rng.uniform(0, 2 * np.pi))
    # tanh squares the sine wave off; the contrast knob blends the stripes towards the mean colour.
    t = 0.5 + 0.5 * TEXTURE_CONTRAST * np.tanh(2.5 * stripes)
    t = t + 0.06 * _wave_noise(rng, u, v, (2.0, 5.0))
    return _blend(dark, light, t)


def _bare_soil_texture(rng, u, v, px):
    """Mottled brown: medium-frequency patches plus a coarse per-pixel grain (clods, stones)."""
    dark, light = _pick_palette(rng, [((0.39, 0.29, 0.19), (0.58, 0.45, 0.32)),
                                      ((0.47, 0.29, 0.19), (0.64, 0.42, 0.29))])
    t = (0.5 + TEXTURE_CONTRAST * 0.20 * _wave_noise(rng, u, v, (3.0, 7.0))
         + TEXTURE_CONTRAST * 0.25 * rng.uniform(-1.0, 1.0, size=u.shape))
    return _blend(dark, light, t)


def _pavement_texture(rng, u, v, px):
    """Flat grey, slow tone changes, and (often) thin parallel markings aligned to the tile axes."""
    dark, light = _pick_palette(rng, [((0.35, 0.35, 0.37), (0.50, 0.50, 0.52)),
                                      ((0.42, 0.41, 0.40), (0.58, 0.57, 0.55))])
    t = 0.5 + TEXTURE_CONTRAST * 0.15 * _wave_noise(rng, u, v, (0.7, 2.5))
    image = _blend(dark, light, t)
    if rng.uniform() < 0.7:
        angle = rng.integers(2) * np.pi / 2 + rng.normal(0.0, 0.05)
        along, _ = _rotated(u, v, angle)
        spacing = rng.uniform(5.0, 9.0) * px
        phase = np.mod(along / spacing + rng.uniform(), 1.0)
        marking = (phase < 0.8 * px / spacing)[..., None]
        image = np.where(marking, image + TEXTURE_CONTRAST * 0.18, image)
    return image


def _sand_texture(rng, u, v, px):
    """Bright beige, dune ripples at one orientation."""
    dark, light = _pick_palette(rng, [((0.74, 0.66, 0.48), (0.90, 0.82, 0.64)),
                                      ((0.78, 0.75, 0.66), (0.90, 0.88, 0.80))])
    t = (0.5 + TEXTURE_CONTRAST * 0.20 * _wave_noise(rng, u, v, (4.0, 8.0),
                                                     angle=rng.uniform(0, np.pi), angle_spread=0.5)
         + TEXTURE_CONTRAST * 0.08 * _wave_noise(rng, u, v, (0.7, 2.0)))
    return _blend(dark, light, t)


# Muted roofs (no pure white, no saturated colour): bright white shapes are tanks and ships,
# saturated small ones are cars, so objects are not confused with roofs.
_ROOF_COLOURS = np.array([(0.58, 0.58, 0.58), (0.58, 0.36, 0.30), (0.70, 0.68, 0.64),
                          (0.38, 0.38, 0.41), (0.47, 0.50, 0.55), (0.62, 0.56, 0.46)])


def _buildings_texture(rng, u, v, px):
    """A (rotated) grid of blocks: roofs of random colours, dark streets and a shadow edge."""
    along, across = _rotated(u, v, rng.uniform(0, np.pi / 2))
    period = rng.uniform(5.0, 9.0) * px
    a, b = along / period + rng.uniform(), across / period + rng.uniform()
    fa, fb = a - np.floor(a), b - np.floor(b)
    fill = rng.uniform(0.55, 0.8)
    roof = (np.abs(fa - 0.5) < fill / 2) & (np.abs(fb - 0.5) < fill / 2)
    # Roof colour per block through a small lookup table indexed by the block coordinates; some
    # blocks are empty lots (street colour) so the grid is not perfectly regular.
    table_size = 16
    roof_colour_ids = rng.integers(len(_ROOF_COLOURS), size=(table_size, table_size))
    empty_lots = rng.uniform(size=(table_size, table_size)) < 0.12
    ia = np.floor(a).astype(np.int64) % table_size
    ib = np.floor(b).astype(np.int64) % table_size
    roof &= ~empty_lots[ia, ib]
    jitter = rng.normal(0.0, CLASS_COLOUR_JITTER, size=3)
    street = np.array([0.27, 0.27, 0.29]) + jitter
    roofs = _ROOF_COLOURS[roof_colour_ids[ia, ib]] + jitter
    # The sun casts a shadow just past one side of every roof.
    shadow = (~roof) & (np.abs(fb - 0.5) < fill / 2) & (fa - 0.5 >= fill / 2) & (
        fa - 0.5 < fill / 2 + 1.2 * px / period)
    image = np.where(roof[..., None], 0.5 + TEXTURE_CONTRAST * (roofs - 0.5),
                     np.broadcast_to(street, roofs.shape))
    return np.where(shadow[..., None], image * 0.55, image)


REGION_TEXTURES = {
    "water": _water_texture, "trees": _trees_texture, "grass": _grass_texture,
    "field": _field_texture, "bare_soil": _bare_soil_texture, "pavement": _pavement_texture,
    "sand": _sand_texture, "buildings": _buildings_texture,
}


# ---------------------------------------------------------------------------------------------
# Objects: f(rng, x, y, cx, cy, scale) -> (mask, rgb) of one instance centred at (cx, cy);
# x, y, cx, cy in pixels, scale = image_size / 48.
# ---------------------------------------------------------------------------------------------
def _car_shape(rng, x, y, cx, cy, scale):
    """A 2 x 3-4 px box of a typical car colour, parked along or across the tile axes."""
    angle = rng.integers(2) * np.pi / 2 + rng.normal(0.0, 0.1)
    along, across = _rotated(x - cx, y - cy, angle)
    length, width = rng.uniform(3.5, 4.8) * scale, rng.uniform(1.8, 2.4) * scale
    mask = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
    # Saturated or black: white small shapes are left to tanks and ships.
    colours = [(0.05, 0.05, 0.07), (0.85, 0.10, 0.08), (0.10, 0.25, 0.85), (0.95, 0.80, 0.10)]
    rgb = np.broadcast_to(np.array(colours[rng.integers(len(colours))]), x.shape + (3,))
    return mask, rgb


def _ship_shape(rng, x, y, cx, cy, scale):
    """An elongated white/grey hull with a darker deck line, at any angle; a moving ship trails a
    pale wake behind its stern."""
    along, across = _rotated(x - cx, y - cy, rng.uniform(0, 2 * np.pi))
    half_length, half_width = rng.uniform(3.8, 6.0) * scale, rng.uniform(1.3, 1.7) * scale
    hull_mask = (along / half_length) ** 2 + (across / half_width) ** 2 <= 1.0
    wake_length = half_length * rng.uniform(1.0, 2.0) * (rng.uniform() < 0.6)
    wake = ((along < -half_length * 0.8) & (along > -half_length - wake_length)
            & (np.abs(across) < 0.6 * scale))
    hull = np.array((0.88, 0.88, 0.86)) * rng.uniform(0.85, 1.05)
    deck = (np.abs(across) < 0.35 * scale) & (np.abs(along) < 0.6 * half_length)
    rgb = np.where(deck[..., None], hull * 0.7, np.broadcast_to(hull, x.shape + (3,)))
    rgb = np.where((wake & ~hull_mask)[..., None], np.array((0.55, 0.62, 0.66)), rgb)
    return hull_mask | wake, rgb


def _tank_shape(rng, x, y, cx, cy, scale):
    """A round storage tank: bright roof, a darker rim, and its cast shadow on the ground."""
    radius = rng.uniform(2.3, 3.3) * scale
    r = np.hypot(x - cx, y - cy)
    disc = r <= radius
    # The shadow is the part of a copy of the disc, shifted away from the sun, outside the disc.
    shadow = (np.hypot(x - cx - 1.2 * scale, y - cy - 1.2 * scale) <= radius) & ~disc
    roof = np.array((0.90, 0.90, 0.88)) * rng.uniform(0.9, 1.05)
    rim = np.hypot(x - cx + 0.7 * scale, y - cy + 0.7 * scale) > radius - 0.4 * scale
    rgb = np.where(rim[..., None], roof * 0.6, np.broadcast_to(roof, x.shape + (3,)))
    rgb = np.where(shadow[..., None], np.array((0.10, 0.10, 0.11)), rgb)
    return disc | shadow, rgb


def _court_shape(rng, x, y, cx, cy, scale):
    """A sports court: coloured rectangle with a white border and centre line."""
    along, across = _rotated(x - cx, y - cy, rng.uniform(0, np.pi))
    half_length, half_width = rng.uniform(4.5, 6.5) * scale, rng.uniform(2.6, 3.8) * scale
    mask = (np.abs(along) <= half_length) & (np.abs(across) <= half_width)
    surfaces = [(0.22, 0.55, 0.30), (0.23, 0.38, 0.66), (0.72, 0.38, 0.24)]
    surface = np.array(surfaces[rng.integers(len(surfaces))])
    line = 0.7 * scale
    lines = ((np.abs(along) > half_length - line) | (np.abs(across) > half_width - line)
             | (np.abs(along) < line / 2))
    rgb = np.where(lines[..., None], np.array((0.95, 0.95, 0.95)),
                   np.broadcast_to(surface, x.shape + (3,)))
    return mask, rgb


OBJECT_SHAPES = {"car": _car_shape, "ship": _ship_shape, "tank": _tank_shape,
                 "court": _court_shape}


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
    warped_u = u + REGION_BOUNDARY_WARP * _wave_noise(rng, u, v, (0.8, 2.5), n_waves=4)
    warped_v = v + REGION_BOUNDARY_WARP * _wave_noise(rng, u, v, (0.8, 2.5), n_waves=4)
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


@functools.lru_cache(maxsize=None)
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
