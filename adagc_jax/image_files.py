"""New image files for `--mode=predict` (docs/predict.md): which files an --input names, their pixels, whether
they fit the run's model, and the model input made from them; and the one-file reBEN input format.

Files are prepared exactly as the evaluation pipeline prepares a stored image: decoded to the stored dtype,
resized with `input_pipeline.resize_image`, normalised with `input_pipeline.normalise` and the run's statistics
(one definition of each). What a file must hold: the training images' band count and dtype (JPEG / PNG / TIFF
RGB uint8 for AID and UCM; for reBEN one GeoTIFF per patch with the 12 bands B01..B12 (B8A after B08) as uint16
on one grid, the layout `reben_patch_to_geotiff` writes). A file that cannot be decoded, or that holds another
band count or dtype, raises UnusableFile with the reason; predict.py reports it by name and leaves it out.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
import tifffile

from adagc_jax import input_pipeline
from adagc_jax.errors import DatasetError

if TYPE_CHECKING:  # annotation only: predict.py imports this module
    from adagc_jax.predict import StoredData

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


# -- reading new images -------------------------------------------------------------------------------------------

class UnusableFile(Exception):
    """A file that is left out of the predictions; the message says why (and how to fix it where one can)."""


def list_inputs(pattern: str) -> tuple[list[str], str | None]:
    """(files, folder): every JPEG / PNG / TIFF under a folder (recursively, sorted; other files such as GDAL's
    .aux.xml side-cars are ignored), or the files a glob pattern (or one path) names. Rows are named relative to
    `folder` (None: as given)."""
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
        files = sorted(os.path.join(root, name) for root, _, names in os.walk(pattern) for name in names
                       if name.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DatasetError(f"--input {pattern} holds no {', '.join(IMAGE_EXTENSIONS)} file (searched "
                               "recursively). Point --input at the folder of the images, or at a glob such as "
                               "'images/*.tif'.")
        return files, pattern
    files = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
    if not files:
        raise DatasetError(f"--input {pattern!r} matches no file. Give a folder, a file, or a glob pattern in "
                           "quotes (e.g. --input='images/**/*.jpg').")
    return files, None


def read_image(path: str) -> np.ndarray:
    """The pixels of one file as (H, W, bands) in the file's own dtype; UnusableFile when it cannot be decoded."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise UnusableFile(f"not a JPEG, PNG or TIFF file (reads {', '.join(IMAGE_EXTENSIONS)})")
    try:
        if suffix in (".tif", ".tiff"):
            return _read_tiff(path)
        with open(path, "rb") as f:
            encoded = f.read()
        # As TFDS decodes the stored JPEG / PNG images (tf.image.decode_image), with the file's own band count.
        return tf.io.decode_image(encoded, channels=0, expand_animations=False).numpy()
    except UnusableFile:
        raise
    except Exception as e:  # pylint: disable=broad-except  # decoders raise many types
        text = " ".join(str(e).split()) or type(e).__name__
        raise UnusableFile(f"cannot be decoded ({text[:200]})") from e


def _read_tiff(path: str) -> np.ndarray:
    """A (Geo)TIFF as (H, W, bands): pixel-interleaved, band-interleaved (planar) or one page per band."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data, axes, shaped = series.asarray(), series.axes, tif.is_shaped
    if data.size == 0:  # tifffile returns an empty array when the first IFD is unreadable
        raise UnusableFile("cannot be decoded (no image data)")
    if data.ndim == 2:
        return data[..., None]
    if data.ndim == 3:
        if axes.endswith("S"):  # samples last: (H, W, bands)
            return data
        if axes.startswith("S"):  # planar configuration 'separate' (GDAL's INTERLEAVE=BAND)
            return np.moveaxis(data, 0, -1)
        if shaped:  # written by tifffile from an (H, W, bands) array, as pages; its own metadata says so
            return data
        if axes.endswith("YX"):  # one page per band
            return np.moveaxis(data, 0, -1)
    raise UnusableFile(f"holds an array of shape {data.shape} (axes {axes}); expected one image of "
                       "(height, width, bands)")


def check_image(image: np.ndarray, data: StoredData) -> None:
    """UnusableFile unless the image has the training images' band count and dtype (values in other units would
    be normalised with the wrong statistics and give confident nonsense)."""
    expected = data.info.image_shape[-1]
    bands = image.shape[-1]
    order = f" ({', '.join(data.bands)}, in this order)" if data.bands else ""
    if bands != expected:
        raise UnusableFile(
            f"has {bands} band{'s' if bands != 1 else ''}, but the model was trained on {expected}-band "
            f"{data.info.name} images{order}: give it images with those bands (docs/predict.md)")
    if image.dtype != data.dtype:
        raise UnusableFile(
            f"holds {image.dtype} values, but the model was trained on {data.dtype} {data.info.name} images "
            f"(normalised with their statistics): convert it to {data.dtype} in the training data's units "
            "(docs/predict.md)")


def prepare_image(image: np.ndarray, info: input_pipeline.DatasetInfo) -> np.ndarray:
    """The model input of one image: the evaluation pipeline's resize and normalisation."""
    height, width, _ = info.image_shape
    return input_pipeline.normalise(input_pipeline.resize_image(image, height, width), info.mean, info.std).numpy()


# -- the reBEN input format ---------------------------------------------------------------------------------------

def reben_patch_to_geotiff(patch_dir: str, output: str, bands: str = "all") -> np.ndarray:
    """Writes one BigEarthNet v2.0 patch folder (<patch_id>_<band>.tif, one GeoTIFF per band) as the one-file
    input predict reads: (120, 120, bands) uint16, bands in the training order (B01..B12, B8A after B08; or
    B04, B03, B02 for 'rgb'), the 20 m and 60 m bands resampled to the 10 m grid exactly as the reben builder
    does. Returns the array written."""
    from pathlib import Path  # pylint: disable=import-outside-toplevel

    from adagc_jax.datasets import reben  # pylint: disable=import-outside-toplevel  # reBEN only

    folder = Path(patch_dir)
    patch_id = folder.name
    image = np.stack([reben._read_band(folder / f"{patch_id}_{b}.tif", b)  # pylint: disable=protected-access
                      for b in reben.BAND_SETS[bands]], -1)
    tifffile.imwrite(output, image, photometric="minisblack", planarconfig="contig")
    return image
