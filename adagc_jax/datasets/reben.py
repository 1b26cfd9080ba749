"""TFDS builder `reben`: reBEN / BigEarthNet v2.0 Sentinel-2 (Clasen et al., IGARSS 2025).

Facts: DATASETS.md section 2; choices: section 7. Read from a manual_dir as published on Zenodo:
metadata.parquet (patch_id, labels, split, ...), BigEarthNet-S2/<tile>/<patch_id>/
<patch_id>_<band>.tif (one uint16 GeoTIFF per band at native resolution) and
Reference_Maps/<tile>/<patch_id>/<patch_id>_reference_map.tif (deflate, CLC level-3 codes).

GeoTIFFs are read with tifffile (pure Python + numpy; it reads the uncompressed bands and,
through Python's zlib, the deflate-compressed reference maps; no GDAL needed). Only the
patches of metadata.parquet are used (snow / cloud patches excluded, as ConfigILM and
torchgeo do), with the official train / validation / test split of its `split` column.

Configs: `all` (12 bands, B01..B12 order of 2.2, 20 m and 60 m bands resampled bilinearly
to 120 x 120) and `rgb` (B04, B03, B02); `make_config(bands, subset, seed)` adds a seeded
per-split `subset` fraction for CPU-sized runs. The dominant label is the argmax of BEN-19
pixel counts of the reference map (2.7; ties to the lowest class index).

Splits are generated in-process, or as an Apache Beam pipeline when the DownloadConfig carries beam options
(dataset.beam_options, docs/scaling.md); both call `read_patch` for every patch.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
import tifffile
from absl import logging

from adagc_jax.datasets import beam_generation, common, resize

# The 19 BEN classes in their ORIGINAL order (DATASETS.md 2.5), not ConfigILM's sorted one.
CLASS_NAMES = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
# Names in metadata.parquet are mapped to indices by this explicit table (exact spelling).
CLASS_INDEX = {name: index for index, name in enumerate(CLASS_NAMES)}

# CLC2018 level-3 code -> BEN-19 class (DATASETS.md 2.7, pipeline `clc_code_18_to_ben19_name`).
CLC_TO_BEN19 = {
    111: "Urban fabric", 112: "Urban fabric",
    121: "Industrial or commercial units",
    211: "Arable land", 212: "Arable land", 213: "Arable land",
    221: "Permanent crops", 222: "Permanent crops", 223: "Permanent crops",
    241: "Permanent crops",
    231: "Pastures",
    242: "Complex cultivation patterns",
    243: "Land principally occupied by agriculture, with significant areas of natural "
         "vegetation",
    244: "Agro-forestry areas",
    311: "Broad-leaved forest",
    312: "Coniferous forest",
    313: "Mixed forest",
    321: "Natural grassland and sparsely vegetated areas",
    333: "Natural grassland and sparsely vegetated areas",
    322: "Moors, heathland and sclerophyllous vegetation",
    323: "Moors, heathland and sclerophyllous vegetation",
    324: "Transitional woodland, shrub",
    331: "Beaches, dunes, sands",
    411: "Inland wetlands", 412: "Inland wetlands",
    421: "Coastal wetlands", 422: "Coastal wetlands",
    511: "Inland waters", 512: "Inland waters",
    521: "Marine waters", 522: "Marine waters", 523: "Marine waters",
}
# Codes with no BEN-19 class (2.7) and GDAL nodata 0: present in maps, ignored when counting.
UNLABELED_CODES = (0, 122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423, 999)

# Canonical band order (2.2, = order of the statistics of 2.9) and native size in pixels.
BAND_NAMES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11",
              "B12")
NATIVE_SIZE = {"B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60,
               "B07": 60, "B08": 120, "B8A": 60, "B09": 20, "B11": 60, "B12": 60}
BAND_SETS = {"all": BAND_NAMES, "rgb": ("B04", "B03", "B02")}
IMAGE_SIZE = 120

# ConfigILM `120_bilinear` statistics of the official train split, raw DN (2.9).
BILINEAR_120_MEAN = dict(zip(BAND_NAMES, (
    360.65, 438.37, 614.06, 588.41, 942.75, 1769.85, 2049.48, 2193.29, 2235.49, 2241.11,
    1568.21, 997.72)))
BILINEAR_120_STD = dict(zip(BAND_NAMES, (
    563.17, 607.03, 603.30, 684.57, 727.58, 1087.43, 1261.43, 1369.37, 1342.49, 1294.36,
    1063.92, 806.88)))

METADATA_FILE = "metadata.parquet"
IMAGES_DIR = "BigEarthNet-S2"
MAPS_DIR = "Reference_Maps"
PUBLISHED_AT = ("Zenodo, DOI 10.5281/zenodo.10891137 (https://zenodo.org/records/10891137; "
                "also linked from https://bigearth.net)")
LAYOUT = """\
  metadata.parquet
  BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_<band>.tif            (B01..B12, B8A; uint16)
  Reference_Maps/<tile>/<patch_id>/<patch_id>_reference_map.tif
  where <tile> is <patch_id> without its last two '_' fields, e.g.
  BigEarthNet-S2/S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP/
      S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57/..._B02.tif"""

_DESCRIPTION = """\
reBEN (refined BigEarthNet, BigEarthNet v2.0): Sentinel-2 L2A patches of 1200 m x 1200 m
with BEN-19 multi-labels from CLC2018, official geographic train/validation/test split.
12 bands at 120 x 120 (20 m and 60 m bands bilinearly upsampled) or RGB; dominant label
from the pixel counts of the CLC reference map."""

_CITATION = """\
@inproceedings{clasen2025reben,
  title={reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis},
  author={Clasen, Kai Norman and Hackel, Leonard and Burgert, Tom and Sumbul, Gencer and
          Demir, Beg{\\"u}m and Markl, Volker},
  booktitle={IEEE International Geoscience and Remote Sensing Symposium (IGARSS)},
  year={2025}
}"""


def _clc_lookup() -> np.ndarray:
    """code -> class index (0..18), -1 = ignored (UNLABELED / nodata), -2 = unknown code."""
    lookup = np.full(1000, -2, np.int64)
    lookup[list(UNLABELED_CODES)] = -1
    for code, name in CLC_TO_BEN19.items():
        lookup[code] = CLASS_INDEX[name]
    return lookup


_CLC_LOOKUP = _clc_lookup()


@dataclasses.dataclass(eq=False)
class RebenConfig(tfds.core.BuilderConfig):
    """Builder config; build one with `make_config` so that its name is unique and stable.

    Attributes:
      bands: 'all' (12 bands) or 'rgb' (B04, B03, B02).
      subset: fraction of each split kept (seeded), 1.0 = everything.
      seed: seed of the subset draw.
      skip_corrupt: skip (log and list in metadata['skipped']) patches with an undecodable
        band or reference map instead of stopping.
    """

    bands: str = "all"
    subset: float = 1.0
    seed: int = 0
    skip_corrupt: bool = False

    def __post_init__(self):
        _check_fields(self.bands, self.subset)


def _check_fields(bands: str, subset: float) -> None:
    if bands not in BAND_SETS:
        raise ValueError(f"Unknown bands {bands!r}; valid: {', '.join(BAND_SETS)}")
    if not 0.0 < subset <= 1.0:
        raise ValueError(f"subset must be a fraction in (0, 1], got {subset}")


_REGISTERED = {
    "all": RebenConfig(name="all", description="All 12 Sentinel-2 bands at 120 x 120."),
    "rgb": RebenConfig(name="rgb", bands="rgb", description="B04, B03, B02 at 120 x 120."),
}


def make_config(bands: str = "all", subset: float = 1.0, seed: int = 0,
                skip_corrupt: bool = False) -> RebenConfig:
    """A config named deterministically by what changes the data, e.g. 'all_subset0p05_seed0'.

    `subset=1.0` keeps every patch, so the seed does not enter the name; the registered
    'all' / 'rgb' instances are returned for the defaults (TFDS refuses a second object under
    a registered name).
    """
    _check_fields(bands, subset)
    name = bands
    if subset < 1.0:
        name += f"_subset{common.format_number(subset)}_seed{seed}"
    if skip_corrupt:
        name += "_skipcorrupt"
    if name in _REGISTERED:
        return _REGISTERED[name]
    return RebenConfig(name=name, bands=bands, subset=subset, seed=seed,
                       skip_corrupt=skip_corrupt,
                       description=f"{bands} bands, {subset:g} of each split (seed {seed}).")


def tile_of(patch_id: str) -> str:
    """S2 tile folder of a patch: its name without the last two '_' fields (2.3)."""
    return patch_id.rsplit("_", 2)[0]


def band_path(root: Path, patch_id: str, band: str) -> Path:
    return root / IMAGES_DIR / tile_of(patch_id) / patch_id / f"{patch_id}_{band}.tif"


def map_path(root: Path, patch_id: str) -> Path:
    return root / MAPS_DIR / tile_of(patch_id) / patch_id / f"{patch_id}_reference_map.tif"


class Reben(common.ModuleCodePath, tfds.core.GeneratorBasedBuilder):
    """reBEN Sentinel-2 from the published files in manual_dir (DATASETS.md sections 2, 7)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = list(_REGISTERED.values())
    DEFAULT_CONFIG_NAME = "all"
    _use_beam = False  # set per preparation by _download_and_prepare
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download metadata.parquet, BigEarthNet-S2.tar.zst and Reference_Maps.tar.zst from
{PUBLISHED_AT}, and extract the archives into manual_dir (or into a single folder
inside manual_dir), so that it holds:
{LAYOUT}
(BigEarthNet-S1 and the snow/cloud parquet are not needed.)
"""

    def _info(self) -> tfds.core.DatasetInfo:
        num_bands = len(BAND_SETS[self.builder_config.bands])
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, num_bands),
                                              dtype=np.uint16, encoding="zlib"),
                "labels": tfds.features.Tensor(shape=(len(CLASS_NAMES),), dtype=np.uint8),
                "dominant_label": tfds.features.ClassLabel(names=CLASS_NAMES),
                "name": tfds.features.Text(),
                "id": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image", "labels"),
            homepage="https://bigearth.net",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def band_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per band of this config, raw DN, `120_bilinear` train statistics (2.9)."""
        bands = BAND_SETS[self.builder_config.bands]
        return (np.asarray([BILINEAR_120_MEAN[b] for b in bands], np.float32),
                np.asarray([BILINEAR_120_STD[b] for b in bands], np.float32))

    def _split_generators(self, dl_manager):
        """Reads and checks metadata.parquet and draws the subset before anything is written."""
        config = self.builder_config
        manual_dir = common.manual_dir_or_raise(dl_manager, self.name, LAYOUT, PUBLISHED_AT)
        root = common.resolve_data_root(
            manual_dir, [(METADATA_FILE,), (IMAGES_DIR,), (MAPS_DIR,)], dataset=self.name,
            layout=LAYOUT, published_at=PUBLISHED_AT)
        patches = _read_metadata(root / METADATA_FILE)

        metadata = self.info.metadata
        metadata["bands"] = list(BAND_SETS[config.bands])
        metadata["subset"] = config.subset
        metadata["seed"] = config.seed
        metadata["patches_before_subset"] = {s: len(patches[s]) for s in common.SPLITS}
        metadata["skipped"] = []
        skip_log = common.SkipLog(config.skip_corrupt, metadata)

        generators = {}
        for split_index, split in enumerate(common.SPLITS):
            chosen = sorted(patches[split])
            if config.subset < 1.0 and chosen:
                # Seeded per split, so a subset of one split does not depend on the others.
                count = max(1, int(np.floor(config.subset * len(chosen) + 0.5)))
                keep = np.random.default_rng([config.seed, split_index]).choice(
                    len(chosen), size=count, replace=False)
                chosen = [chosen[i] for i in sorted(keep)]
            items = [(patch_id, patches[split][patch_id]) for patch_id in chosen]
            if self._use_beam:
                generators[split] = beam_generation.split_transform(
                    split, items, functools.partial(read_patch, root, BAND_SETS[config.bands]),
                    config.skip_corrupt)
            else:
                generators[split] = self._generate_examples(root, items, skip_log)
        return generators

    def _download_and_prepare(self, dl_manager, download_config):
        """Beam generates the splits when the DownloadConfig carries beam options or a runner (docs/scaling.md);
        without them (the default) they are generated in this process."""
        self._use_beam = download_config.beam_options is not None or download_config.beam_runner is not None
        super()._download_and_prepare(dl_manager, download_config)

    def _process_pipeline_result(self, pipeline_result) -> None:
        beam_generation.record_skipped(pipeline_result, self.info.metadata, common.SPLITS)

    def _generate_examples(self, root: Path, patches, skip_log: common.SkipLog):
        """Yields the examples of one split; `id` counts only the examples actually written."""
        bands = BAND_SETS[self.builder_config.bands]
        next_id = 0
        for item in patches:
            try:
                patch_id, example = read_patch(root, bands, item)
            except common.CorruptFileError as err:
                skip_log.handle(err)
                continue
            yield patch_id, {**example, "id": next_id}
            next_id += 1


def read_patch(root: Path, bands, item) -> tuple[str, dict]:
    """(patch_id, example without 'id') of one (patch_id, labels) item: the per-patch work of both the
    in-process generator and the Beam pipeline. Raises CorruptFileError for an undecodable band or map."""
    patch_id, labels = item
    image = np.stack([_read_band(band_path(root, patch_id, b), b) for b in bands], -1)
    reference = _read_reference_map(map_path(root, patch_id))
    return patch_id, {
        "image": image,
        "labels": labels,
        "dominant_label": dominant_from_map(reference, labels, map_path(root, patch_id)),
        "name": patch_id,
    }


def _read_metadata(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{split: {patch_id: multi-hot uint8 (19,)}} from metadata.parquet (schema of 2.4)."""
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel  # reBEN only

    try:
        table = pq.read_table(path, columns=["patch_id", "labels", "split"])
    except Exception as err:  # pylint: disable=broad-except  # pyarrow raises many types
        raise common.FileContentError(
            f"Cannot read {path} as the reBEN metadata (columns patch_id, labels, split): "
            f"{(str(err).strip().splitlines() or [type(err).__name__])[0]}") from err
    patches = {split: {} for split in common.SPLITS}
    for row in table.to_pylist():
        split = row["split"]
        if split not in patches:
            raise common.FileContentError(
                f"{path}: patch {row['patch_id']} has split {split!r}; valid: "
                f"{', '.join(common.SPLITS)}")
        vector = np.zeros(len(CLASS_NAMES), np.uint8)
        for name in row["labels"]:
            if name not in CLASS_INDEX:
                raise common.FileContentError(
                    f"Unknown label name {name!r} in {path} (patch {row['patch_id']}). "
                    f"Valid names: "
                    f"{'; '.join(CLASS_NAMES)}")
            vector[CLASS_INDEX[name]] = 1
        if not vector.any():
            raise common.FileContentError(f"{path}: patch {row['patch_id']} has no label.")
        if any(row["patch_id"] in p for p in patches.values()):
            raise common.FileContentError(f"{path}: patch {row['patch_id']} listed twice.")
        patches[split][row["patch_id"]] = vector
    return patches


def _read_tiff(path: Path) -> np.ndarray:
    """A single GeoTIFF as a numpy array; a missing file names the layout, a broken one itself."""
    if not path.is_file():
        raise FileNotFoundError(common.missing_data_message(
            "reben", path.parent, LAYOUT, PUBLISHED_AT, [str(path)]))
    try:
        data = tifffile.imread(path)
    except Exception as err:  # pylint: disable=broad-except  # tifffile raises many types
        raise common.CorruptFileError(path, err) from err
    if data.size == 0:  # tifffile returns an empty array when the first IFD is unreadable
        raise common.CorruptFileError(path, "no image data (broken IFD)")
    return data


def _read_band(path: Path, band: str) -> np.ndarray:
    """One band as (120, 120) uint16; 20 m and 60 m bands upsampled bilinearly (section 7).

    Resampling is numpy (`resize.resize_bilinear`, half-pixel centres = tf.image.resize
    bilinear without antialias = torch interpolate align_corners=False, which the
    `120_bilinear` statistics assume), rounded to the nearest integer to stay uint16.
    """
    data = _read_tiff(path)
    size = NATIVE_SIZE[band]
    if data.ndim != 2:
        raise common.FileContentError(
            f"GeoTIFF {path} has shape {data.shape}; expected one band of {size} x {size}.")
    if data.shape != (size, size) or data.dtype != np.uint16:
        raise common.FileContentError(
            f"GeoTIFF {path} is {data.shape} {data.dtype}; band {band} is ({size}, {size}) "
            f"uint16.")
    if size != IMAGE_SIZE:
        data = resize.round_to_dtype(resize.resize_bilinear(data, IMAGE_SIZE, IMAGE_SIZE),
                                     np.uint16)
    return data


def _read_reference_map(path: Path) -> np.ndarray:
    """The (120, 120) CLC code map of a patch, checked for shape and known codes."""
    data = _read_tiff(path)
    if data.shape != (IMAGE_SIZE, IMAGE_SIZE) or not np.issubdtype(data.dtype, np.integer):
        raise common.FileContentError(
            f"Reference map {path} is {data.shape} {data.dtype}; expected ({IMAGE_SIZE}, "
            f"{IMAGE_SIZE}) integer CLC codes.")
    codes = data.astype(np.int64)
    unknown = np.unique(codes[(codes < 0) | (codes >= len(_CLC_LOOKUP))])
    if unknown.size == 0:
        unknown = np.unique(codes[_CLC_LOOKUP[codes] == -2])
    if unknown.size:
        raise common.FileContentError(
            f"Reference map {path} holds codes that are neither CLC2018 level-3 codes of the "
            f"BEN-19 table nor UNLABELED: {unknown.tolist()}")
    return codes


def dominant_from_map(codes: np.ndarray, labels: np.ndarray, path: Path) -> int:
    """argmax over BEN-19 classes of their pixel counts, ties to the lowest index (2.7, 7).

    UNLABELED codes and nodata 0 are not counted. Only the patch's own labels compete, so
    the dominant label is always one of its positives (in a consistent release the overall
    argmax already is one; a mismatch is logged).
    """
    classes = _CLC_LOOKUP[codes.ravel()]
    counts = np.bincount(classes[classes >= 0], minlength=len(CLASS_NAMES))
    positive_counts = np.where(np.asarray(labels) > 0, counts, -1)
    if positive_counts.max() <= 0:
        raise common.FileContentError(
            f"Reference map {path} has no pixel of the patch's labels "
            f"{[CLASS_NAMES[i] for i in np.flatnonzero(labels)]}.")
    dominant = int(positive_counts.argmax())
    if dominant != int(counts.argmax()):
        logging.warning("Reference map %s: most frequent class %s is not a label of the patch; "
                        "dominant label = %s.", path, CLASS_NAMES[counts.argmax()],
                        CLASS_NAMES[dominant])
    return dominant
