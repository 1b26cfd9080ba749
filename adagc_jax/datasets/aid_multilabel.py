"""TFDS builder `aid_multilabel`: AID-multilabel (Hua, Mou, Zhu, TGRS 2020) from a manual_dir.

Facts: DATASETS.md section 1; choices: section 7. The release is read as published:
images_tr/<Scene>/<scene>_<n>.jpg, images_test/..., multilabel.csv (or multilabel.mat).

Configs
- `official` (default): train / validation carved from the 2400 images of images_tr
  (20 %, stratified by scene, seeded) / test = the 600 images of images_test (section 1.4).
- `arena`: the aitlas-arena split (1917 / 483 / 600), read from its three tab-separated
  CSVs, which the user places next to the images (section 1.4).
- `make_config(...)` builds others (another seed, a user dominant-label table, skip_corrupt).

Every example: the original JPEG bytes (600 x 600 x 3 uint8, no re-encoding), the 17-dim
multi-hot `labels` (order of 1.2), the AID `scene`, the `dominant_label` by the lift rule
of section 7 (table in the dataset metadata), `name` (file stem) and `id` (index of the
example within its split in sorted-name order).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from adagc_jax.datasets import common

CLASS_NAMES = common.MULTILABEL_17

# AID scene classes (section 1.3) as they appear in file stems; alphabetical, which is also
# the order of the CamelCase folder names and of the scene blocks in multilabel.mat.
SCENE_NAMES = (
    "airport", "bareland", "baseballfield", "beach", "bridge", "center", "church",
    "commercial", "denseresidential", "desert", "farmland", "forest", "industrial",
    "meadow", "mediumresidential", "mountain", "park", "parking", "playground", "pond",
    "port", "railwaystation", "resort", "river", "school", "sparseresidential", "square",
    "stadium", "storagetanks", "viaduct",
)

IMAGE_SIZE = 600
SPLIT_MODES = ("official", "arena")
ARENA_FILES = {
    "train": "aidmultilabel_train.csv",
    "validation": "aidmultilabel_val.csv",
    "test": "aidmultilabel_test.csv",
}
LABEL_FILES = ("multilabel.csv", "Multilabel.csv", "multilabel.mat")
PUBLISHED_AT = ("https://github.com/Hua-YS/AID-Multilabel-Dataset (Google Drive link in its "
                "README)")
LAYOUT = """\
  images_tr/<Scene>/<scene>_<n>.jpg      e.g. images_tr/Airport/airport_1.jpg (2400 images)
  images_test/<Scene>/<scene>_<n>.jpg    e.g. images_test/Airport/airport_81.jpg (600 images)
  multilabel.csv                         header IMAGE\\LABEL + 17 labels, one row per image
                                         (multilabel.mat, variable `labels` 17 x 3000, is
                                         read when the csv is absent)
  aidmultilabel_train.csv, aidmultilabel_val.csv, aidmultilabel_test.csv
                                         only for the `arena` config (aitlas-arena splits/)"""

_DESCRIPTION = """\
AID-multilabel: 3000 Google Earth RGB images of 600 x 600 px from 30 AID scene classes,
annotated with 17 object labels (Hua, Mou, Zhu, "Relation Network for Multi-label Aerial
Image Classification", IEEE TGRS 2020). Includes the AID scene class and a dominant label
(most scene-specific positive, lift rule) for single-positive multi-label learning."""

_CITATION = """\
@article{hua2020relation,
  title={Relation Network for Multi-label Aerial Image Classification},
  author={Hua, Yuansheng and Mou, Lichao and Zhu, Xiao Xiang},
  journal={IEEE Transactions on Geoscience and Remote Sensing},
  year={2020}
}"""


@dataclasses.dataclass(eq=False)
class AidMultilabelConfig(tfds.core.BuilderConfig):
    """Builder config; build one with `make_config` so that its name is unique and stable.

    Attributes:
      split: 'official' (2400 / 600 + seeded validation) or 'arena' (aitlas-arena CSVs).
      split_seed: seed of the validation hold-out (official only).
      validation_fraction: share of each scene of images_tr held out for validation.
      dominant_table: optional path to a JSON scene -> label table replacing the lift table
        (format: `common.load_dominant_table`).
      skip_corrupt: skip (log and list in metadata['skipped']) images that cannot be decoded
        instead of stopping.
    """

    split: str = "official"
    split_seed: int = 0
    validation_fraction: float = 0.2
    dominant_table: str | None = None
    skip_corrupt: bool = False

    def __post_init__(self):
        _check_fields(self.split, self.validation_fraction)


def _check_fields(split: str, validation_fraction: float) -> None:
    if split not in SPLIT_MODES:
        raise ValueError(f"Unknown split {split!r}; valid: {', '.join(SPLIT_MODES)}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")


def _config_name(split, split_seed, validation_fraction, dominant_table, skip_corrupt):
    name = split
    if split == "official" and (split_seed, validation_fraction) != (0, 0.2):
        name += f"_seed{split_seed}_val{common.format_number(validation_fraction)}"
    if dominant_table is not None:
        # The content, not the path, decides the dataset: name the config by a content hash.
        name += "_table" + hashlib.sha1(Path(dominant_table).read_bytes()).hexdigest()[:10]
    if skip_corrupt:
        name += "_skipcorrupt"
    return name


_REGISTERED = {
    "official": AidMultilabelConfig(
        name="official", description="Official 2400/600 split; validation = 20 % of "
        "images_tr per scene (seed 0)."),
    "arena": AidMultilabelConfig(
        name="arena", split="arena", description="aitlas-arena split 1917/483/600."),
}


def make_config(split: str = "official", seed: int = 0, validation_fraction: float = 0.2,
                dominant_table: str | None = None,
                skip_corrupt: bool = False) -> AidMultilabelConfig:
    """A config whose name is a deterministic function of everything that changes the data.

    Returns the registered instance for 'official' / 'arena' with default fields (TFDS refuses
    a different object under a registered name). `seed` and `validation_fraction` only
    apply to the official split.
    """
    _check_fields(split, validation_fraction)
    name = _config_name(split, seed, validation_fraction, dominant_table, skip_corrupt)
    if name in _REGISTERED:
        return _REGISTERED[name]
    return AidMultilabelConfig(
        name=name, split=split, split_seed=seed, validation_fraction=validation_fraction,
        dominant_table=None if dominant_table is None else str(dominant_table),
        skip_corrupt=skip_corrupt)


def _scene_of(stem: str, source: Path) -> int:
    """AID scene index from a file stem like 'storagetanks_37' (section 1.3)."""
    scene = stem.rsplit("_", 1)[0]
    if scene not in SCENE_NAMES:
        raise common.FileContentError(
            f"{source}: scene {scene!r} of image {stem!r} is not an AID scene. Valid scenes: "
            f"{', '.join(SCENE_NAMES)}")
    return SCENE_NAMES.index(scene)


def _list_images(root: Path) -> dict[str, tuple[Path, str]]:
    """{stem: (path, folder)} for every JPEG under images_tr/ and images_test/."""
    images = {}
    for folder in ("images_tr", "images_test"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg"):
                if path.stem in images:
                    raise common.FileContentError(
                        f"Image {path.stem!r} appears twice: {images[path.stem][0]} and {path}")
                images[path.stem] = (path, folder)
    return images


def _labels_from_mat(path: Path, stems) -> dict[str, np.ndarray]:
    """Labels from multilabel.mat (section 1.3, one third-party loader only: UNCONFIRMED).

    Variable `labels` is 17 x 3000; column = scene position (alphabetical) * 100 + n - 1,
    with Park numbered 101-200 (n - 100). Rows are taken in the label order of 1.2.
    """
    import scipy.io  # pylint: disable=import-outside-toplevel  # only this rare path needs it

    try:
        matrix = np.asarray(scipy.io.loadmat(str(path))["labels"])
    except NotImplementedError as err:  # MATLAB v7.3 files are HDF5
        raise common.FileContentError(
            f"{path} is a MATLAB v7.3 (HDF5) file; provide multilabel.csv instead.") from err
    except Exception as err:  # pylint: disable=broad-except
        raise common.CorruptFileError(path, err) from err
    if matrix.shape == (len(SCENE_NAMES) * 100, len(CLASS_NAMES)):
        matrix = matrix.T
    if matrix.shape != (len(CLASS_NAMES), len(SCENE_NAMES) * 100):
        raise common.FileContentError(
            f"{path}: `labels` has shape {matrix.shape}, expected (17, 3000).")
    table = {}
    for stem in stems:
        scene = _scene_of(stem, path)
        suffix = stem.rsplit("_", 1)[-1]
        number = int(suffix) if suffix.isdigit() else 0
        number -= 100 if SCENE_NAMES[scene] == "park" else 0
        if not 1 <= number <= 100:
            raise common.FileContentError(f"{path}: image {stem!r} has no column (number 1-100).")
        table[stem] = (matrix[:, scene * 100 + number - 1] > 0).astype(np.uint8)
    return table


class AidMultilabel(common.ModuleCodePath, tfds.core.GeneratorBasedBuilder):
    """AID-multilabel from the published files in manual_dir (DATASETS.md sections 1, 7)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = list(_REGISTERED.values())
    DEFAULT_CONFIG_NAME = "official"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download AID-multilabel from {PUBLISHED_AT} and unpack it into manual_dir (or into a
single folder inside manual_dir, e.g. manual_dir/AID_multilabel/), so that it holds:
{LAYOUT}
For the `arena` config, copy the three split files of the aitlas-arena repository
(github.com/biasvariancelabs/aitlas-arena, folder splits/) next to images_tr/.
"""

    def _info(self) -> tfds.core.DatasetInfo:
        return common.rgb_scene_info(self, _DESCRIPTION, IMAGE_SIZE, "jpeg", CLASS_NAMES, SCENE_NAMES,
                                     homepage="https://github.com/Hua-YS/AID-Multilabel-Dataset", citation=_CITATION)

    def band_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per RGB channel in raw 0..255 units: ImageNet's (DATASETS.md 1.7) x 255."""
        return common.imagenet_band_statistics()

    def _split_generators(self, dl_manager):
        """Indexes files and labels, fixes splits and dominant labels before any example is written.

        The lift table uses the label rows of the train split (an image skipped later as
        corrupt still counts: its labels are known, only its pixels are not).
        """
        config = self.builder_config
        manual_dir = common.manual_dir_or_raise(dl_manager, self.name, LAYOUT, PUBLISHED_AT)
        required = [("images_tr",), ("images_test",)]
        required += ([LABEL_FILES] if config.split == "official"
                     else [(f,) for f in ARENA_FILES.values()])
        root = common.resolve_data_root(manual_dir, required, dataset=self.name, layout=LAYOUT,
                                        published_at=PUBLISHED_AT)
        images = _list_images(root)
        if config.split == "official":
            labels, split_of = self._official_split(root, images)
        else:
            labels, split_of = self._arena_split(root, images)

        names = sorted(labels)
        scenes = np.asarray([_scene_of(n, root) for n in names])
        label_matrix = np.stack([labels[n] for n in names])
        self.info.metadata["split"] = config.split
        return common.scene_split_generators(self.info.metadata, config, names, scenes, label_matrix, split_of,
                                             {n: images[n][0] for n in names}, SCENE_NAMES, CLASS_NAMES,
                                             self._generate_examples)

    def _official_split(self, root: Path, images):
        """Labels from multilabel.csv/.mat; test = images_test, validation carved from images_tr."""
        csv_paths = [root / f for f in LABEL_FILES[:2] if (root / f).exists()]
        if csv_paths:
            labels = common.read_label_table(csv_paths[0], CLASS_NAMES)
        else:
            labels = _labels_from_mat(root / "multilabel.mat", images)
        self._check_images_match(root, images, labels, every_image_labelled=True)
        train_pool = [n for n in labels if images[n][1] == "images_tr"]
        validation = common.stratified_holdout(
            train_pool, [_scene_of(n, root) for n in train_pool],
            self.builder_config.validation_fraction, self.builder_config.split_seed, stream=0)
        split_of = {n: ("test" if images[n][1] == "images_test"
                        else "validation" if n in validation else "train") for n in labels}
        return labels, split_of

    def _arena_split(self, root: Path, images):
        """Membership and labels from the three aitlas-arena CSVs; images looked up by stem."""
        labels, split_of = {}, {}
        for split, filename in ARENA_FILES.items():
            for name, vector in common.read_label_table(root / filename, CLASS_NAMES).items():
                if name in split_of:
                    raise common.FileContentError(
                        f"Image {name!r} is in two aitlas-arena splits "
                        f"({split_of[name]}, {split}).")
                labels[name], split_of[name] = vector, split
        # The arena files list all 3000 images; extra images on disk are simply not used.
        self._check_images_match(root, images, labels, every_image_labelled=False)
        return labels, split_of

    def _check_images_match(self, root: Path, images, labels, every_image_labelled) -> None:
        """Every labelled image must exist (and, for the official files, be labelled)."""
        missing = sorted(n for n in labels if n not in images)
        if missing:
            raise FileNotFoundError(common.missing_data_message(
                self.name, root, LAYOUT, PUBLISHED_AT, [f"image {n}.jpg" for n in missing]))
        unlabelled = sorted(str(images[n][0]) for n in images if n not in labels)
        if every_image_labelled and unlabelled:
            raise common.FileContentError(
                f"Images without a row in the label table: {', '.join(unlabelled[:10])}")

    def _generate_examples(self, records, skip_log: common.SkipLog):
        """Yields the examples of one split; `id` counts only the examples actually written."""
        yield from common.scene_examples(records, _read_checked_jpeg, skip_log)


def _read_checked_jpeg(path: Path) -> bytes:
    """The file's bytes, after decoding once to check it is a 600 x 600 RGB image.

    The bytes are stored unchanged: re-encoding a JPEG would lose quality for nothing.
    """
    encoded = path.read_bytes()
    try:
        shape = tuple(tf.io.decode_image(encoded, channels=0, expand_animations=False).shape)
    except (tf.errors.InvalidArgumentError, ValueError) as err:
        raise common.CorruptFileError(path, err) from err
    if shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise common.FileContentError(
            f"Image {path} has shape {shape}; AID-multilabel images are "
            f"({IMAGE_SIZE}, {IMAGE_SIZE}, 3) RGB.")
    return encoded
