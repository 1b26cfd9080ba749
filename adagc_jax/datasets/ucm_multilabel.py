"""TFDS builder `ucm_multilabel`: UC Merced multi-label (Chaudhuri et al., TGRS 2018).

Facts: DATASETS.md section 3; choices: section 7. Read from a manual_dir as published:
UCMerced_LandUse/Images/<class>/<class>NN.tif (2100 RGB TIFFs, 21 classes x 100) and
LandUse_Multilabeled.txt (tab-separated, header IMAGE\\LABEL + 17 labels).

There is no official split (section 3). Config `stratified` (default): a seeded 80/20
train/test split stratified by the 21 scene classes, then 20 % of train (stratified,
seeded) held out for validation: 1344 / 336 / 420 images. `make_config(seed=...)` gives
other draws. The dominant label follows the lift rule of section 7 with the 21 scenes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
import tifffile

from adagc_jax.datasets import common, resize

CLASS_NAMES = common.MULTILABEL_17

# The 21 UC Merced land-use classes, alphabetical = folder names = loader index order (section 3).
SCENE_NAMES = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
    "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
    "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
    "sparseresidential", "storagetanks", "tenniscourt",
)

IMAGE_SIZE = 256
# A few UCM images are slightly off 256 x 256 (section 3); sides within this range are
# resized to 256, anything else is taken to be a wrong file and stops the build.
ACCEPTED_SIDES = (224, 288)
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.2
IMAGES_DIR = Path("UCMerced_LandUse") / "Images"
LABEL_FILE = "LandUse_Multilabeled.txt"
PUBLISHED_AT = ("the BigEarth datasets page, https://bigearth.net (LandUse_Multilabeled.txt; "
                "also linked as https://bigearth.eu/datasets); the images are the UC Merced "
                "Land Use archive UCMerced_LandUse.zip")
LAYOUT = """\
  UCMerced_LandUse/Images/<class>/<class>NN.tif   e.g. .../Images/agricultural/agricultural00.tif
  LandUse_Multilabeled.txt                        tab-separated: IMAGE\\LABEL + 17 labels"""

_DESCRIPTION = """\
UC Merced multi-label: the 2100 UC Merced land-use images (256 x 256 RGB, 21 classes)
annotated with 17 object labels (Chaudhuri, Demir, Chaudhuri, Bruzzone, IEEE TGRS 2018).
Includes the scene class and a dominant label (lift rule) for single-positive learning."""

_CITATION = """\
@article{chaudhuri2018multilabel,
  title={Multilabel Remote Sensing Image Retrieval Using a Semisupervised Graph-Theoretic
         Method},
  author={Chaudhuri, Bindita and Demir, Beg{\\"u}m and Chaudhuri, Subhasis and Bruzzone,
          Lorenzo},
  journal={IEEE Transactions on Geoscience and Remote Sensing},
  year={2018}
}"""


@dataclasses.dataclass(eq=False)
class UcmMultilabelConfig(tfds.core.BuilderConfig):
    """Builder config; build one with `make_config`.

    Attributes:
      split_seed: seed of the stratified test and validation hold-outs.
      dominant_table: optional path to a JSON scene -> label table replacing the lift table.
      skip_corrupt: skip (log and list in metadata['skipped']) undecodable images.
    """

    split_seed: int = 0
    dominant_table: str | None = None
    skip_corrupt: bool = False


_REGISTERED = {
    "stratified": UcmMultilabelConfig(
        name="stratified", description="Seeded (0) stratified 80/20 train/test, 20 % of "
        "train held out for validation."),
}


def make_config(seed: int = 0, dominant_table: str | None = None,
                skip_corrupt: bool = False) -> UcmMultilabelConfig:
    """A config whose name is a deterministic function of everything that changes the data."""
    name = "stratified" + (f"_seed{seed}" if seed != 0 else "")
    if dominant_table is not None:
        name += "_table" + hashlib.sha1(Path(dominant_table).read_bytes()).hexdigest()[:10]
    if skip_corrupt:
        name += "_skipcorrupt"
    if name in _REGISTERED:
        return _REGISTERED[name]
    return UcmMultilabelConfig(
        name=name, split_seed=seed, skip_corrupt=skip_corrupt,
        dominant_table=None if dominant_table is None else str(dominant_table))


def assign_splits(names, scenes, seed: int) -> dict[str, str]:
    """{name: split}: stratified seeded 80/20 train/test, then 20 % of train to validation.

    Two hold-outs on separate random streams (section 7 applied to UCM, which has no official
    split): 100 images per scene give 64 / 16 / 20.
    """
    test = common.stratified_holdout(names, scenes, TEST_FRACTION, seed, stream=0)
    pool = [i for i, name in enumerate(names) if name not in test]
    validation = common.stratified_holdout(
        [names[i] for i in pool], [scenes[i] for i in pool], VALIDATION_FRACTION, seed,
        stream=1)
    return {name: "test" if name in test else "validation" if name in validation else "train"
            for name in names}


class UcmMultilabel(common.ModuleCodePath, tfds.core.GeneratorBasedBuilder):
    """UC Merced multi-label from the published files in manual_dir (DATASETS.md 3, 7)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = list(_REGISTERED.values())
    DEFAULT_CONFIG_NAME = "stratified"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the UC Merced Land Use images and the multi-label annotations from
{PUBLISHED_AT}, and unpack them into manual_dir (or into a single folder inside
manual_dir), so that it holds:
{LAYOUT}
"""

    def _info(self) -> tfds.core.DatasetInfo:
        return common.rgb_scene_info(self, _DESCRIPTION, IMAGE_SIZE, "png", CLASS_NAMES, SCENE_NAMES,
                                     homepage="https://bigearth.net", citation=_CITATION)

    def band_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per RGB channel in raw 0..255 units: ImageNet's (DATASETS.md 1.7) x 255."""
        return common.imagenet_band_statistics()

    def _split_generators(self, dl_manager):
        """Indexes files and labels, fixes splits and dominant labels before anything is written."""
        config = self.builder_config
        manual_dir = common.manual_dir_or_raise(dl_manager, self.name, LAYOUT, PUBLISHED_AT)
        root = common.resolve_data_root(
            manual_dir, [(str(IMAGES_DIR),), (LABEL_FILE,)], dataset=self.name, layout=LAYOUT,
            published_at=PUBLISHED_AT)
        images = self._list_images(root)
        labels = common.read_label_table(root / LABEL_FILE, CLASS_NAMES)
        missing = sorted(n for n in labels if n not in images)
        if missing:
            raise FileNotFoundError(common.missing_data_message(
                self.name, root, LAYOUT, PUBLISHED_AT,
                [str(IMAGES_DIR / "<class>" / f"{n}.tif") for n in missing]))
        unlabelled = sorted(str(images[n][0]) for n in images if n not in labels)
        if unlabelled:
            raise common.FileContentError(
                f"Images without a row in {root / LABEL_FILE}: {', '.join(unlabelled[:10])}")

        names = sorted(labels)
        scenes = np.asarray([images[n][1] for n in names])
        label_matrix = np.stack([labels[n] for n in names])
        split_of = assign_splits(names, scenes, config.split_seed)

        return common.scene_split_generators(self.info.metadata, config, names, scenes, label_matrix, split_of,
                                             {n: images[n][0] for n in names}, SCENE_NAMES, CLASS_NAMES,
                                             self._generate_examples)

    def _list_images(self, root: Path) -> dict[str, tuple[Path, int]]:
        """{stem: (path, scene index)} for every TIFF under UCMerced_LandUse/Images/<class>/."""
        images = {}
        for path in sorted((root / IMAGES_DIR).glob("*/*")):
            if not (path.is_file() and path.suffix.lower() in (".tif", ".tiff")):
                continue
            scene = path.parent.name
            if scene not in SCENE_NAMES:
                raise common.FileContentError(
                    f"{path}: folder {scene!r} is not a UC Merced class. Valid classes: "
                    f"{', '.join(SCENE_NAMES)}")
            if path.stem in images:
                raise common.FileContentError(f"Image {path.stem!r} appears twice (e.g. {path}).")
            images[path.stem] = (path, SCENE_NAMES.index(scene))
        return images

    def _generate_examples(self, records, skip_log: common.SkipLog):
        """Yields the examples of one split; `id` counts only the examples actually written."""
        yield from common.scene_examples(records, _read_checked_tiff, skip_log)


def _read_checked_tiff(path: Path) -> np.ndarray:
    """(256, 256, 3) uint8 from a UCM TIFF; the few near-256 sizes are resized (section 3)."""
    try:
        image = tifffile.imread(path)
    except Exception as err:  # pylint: disable=broad-except  # tifffile raises many types
        raise common.CorruptFileError(path, err) from err
    if image.size == 0:  # tifffile returns an empty array when the first IFD is unreadable
        raise common.CorruptFileError(path, "no image data (broken IFD)")
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise common.FileContentError(
            f"Image {path} has shape {image.shape} and dtype {image.dtype}; expected "
            f"(H, W, 3) uint8 RGB.")
    height, width = image.shape[:2]
    low, high = ACCEPTED_SIDES
    if not (low <= height <= high and low <= width <= high):
        raise common.FileContentError(
            f"Image {path} is {height} x {width}; UC Merced images are {IMAGE_SIZE} x "
            f"{IMAGE_SIZE} (sides {low}-{high} are resized).")
    if (height, width) != (IMAGE_SIZE, IMAGE_SIZE):
        # Some UC Merced images are a few pixels short (section 3; torchgeo resizes them too):
        # every example must have one shape, and a bilinear resize of a few pixels keeps content.
        image = resize.round_to_dtype(
            resize.resize_bilinear(image, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return image
