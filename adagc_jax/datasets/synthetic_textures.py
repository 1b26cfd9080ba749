"""Per-class textures and object shapes of the built-in dataset synthetic_scenes (SYNTHETIC_SCENES.md "What an
image is"), numpy only: what each land-cover class looks like. The scene layout, labels and the TFDS builder are in
synthetic_scenes.py.
"""

from __future__ import annotations

import numpy as np

# Multiplies every texture's pattern amplitude (1 = as designed; 0 = flat colours).
TEXTURE_CONTRAST = 1.0
# Per-image, per-class additive colour jitter (std, on [0, 1] reflectance).
CLASS_COLOUR_JITTER = 0.03


# ---------------------------------------------------------------------------------------------
# Texture helpers. Coordinates: u (x) and v (y) in [0, 1), one unit = the tile, so texture
# frequencies are in cycles per tile and independent of image_size.
# ---------------------------------------------------------------------------------------------
def wave_noise(rng, u, v, freq_range, n_waves=8, angle=None, angle_spread=np.pi):
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
    t = (0.5 + TEXTURE_CONTRAST * 0.17 * wave_noise(rng, u, v, (0.7, 2.5))
         + TEXTURE_CONTRAST * 0.06 * wave_noise(rng, u, v, (9.0, 14.0), angle=rng.uniform(0, np.pi),
                                                 angle_spread=0.4))
    return _blend(dark, light, t)


def _trees_texture(rng, u, v, px):
    """Blotchy dark green: crowns of a few pixels separated by dark shadow."""
    dark, light = _pick_palette(rng, [((0.03, 0.09, 0.04), (0.14, 0.33, 0.12)),
                                      ((0.05, 0.11, 0.05), (0.22, 0.36, 0.14))])
    blobs = wave_noise(rng, u, v, (6.0, 11.0), n_waves=12)
    t = 0.5 + 0.5 * np.tanh(TEXTURE_CONTRAST * 1.6 * blobs)
    return _blend(dark, light, t)


def _grass_texture(rng, u, v, px):
    """Light green, smooth with low-contrast patches."""
    dark, light = _pick_palette(rng, [((0.26, 0.46, 0.16), (0.38, 0.58, 0.24)),
                                      ((0.21, 0.39, 0.14), (0.33, 0.51, 0.20))])
    t = (0.5 + TEXTURE_CONTRAST * 0.20 * wave_noise(rng, u, v, (1.5, 4.0))
         + TEXTURE_CONTRAST * 0.08 * wave_noise(rng, u, v, (12.0, 20.0)))
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
    t = t + 0.06 * wave_noise(rng, u, v, (2.0, 5.0))
    return _blend(dark, light, t)


def _bare_soil_texture(rng, u, v, px):
    """Mottled brown: medium-frequency patches plus a coarse per-pixel grain (clods, stones)."""
    dark, light = _pick_palette(rng, [((0.39, 0.29, 0.19), (0.58, 0.45, 0.32)),
                                      ((0.47, 0.29, 0.19), (0.64, 0.42, 0.29))])
    t = (0.5 + TEXTURE_CONTRAST * 0.20 * wave_noise(rng, u, v, (3.0, 7.0))
         + TEXTURE_CONTRAST * 0.25 * rng.uniform(-1.0, 1.0, size=u.shape))
    return _blend(dark, light, t)


def _pavement_texture(rng, u, v, px):
    """Flat grey, slow tone changes, and (often) thin parallel markings aligned to the tile axes."""
    dark, light = _pick_palette(rng, [((0.35, 0.35, 0.37), (0.50, 0.50, 0.52)),
                                      ((0.42, 0.41, 0.40), (0.58, 0.57, 0.55))])
    t = 0.5 + TEXTURE_CONTRAST * 0.15 * wave_noise(rng, u, v, (0.7, 2.5))
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
    t = (0.5 + TEXTURE_CONTRAST * 0.20 * wave_noise(rng, u, v, (4.0, 8.0),
                                                     angle=rng.uniform(0, np.pi), angle_spread=0.5)
         + TEXTURE_CONTRAST * 0.08 * wave_noise(rng, u, v, (0.7, 2.0)))
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
