"""Pieces shared by the real-data TFDS builders (aid_multilabel, ucm_multilabel, reben).

One job each, all host-side numpy / pathlib:
- manual_dir resolution and the "data missing" message (DATASETS.md section 7, last point:
  nothing is downloaded, a missing file names the expected layout and where the data are
  published);
- the error types the builders raise (a corrupt file can be skipped, nothing else);
- parsing of the `IMAGE\\LABEL` label tables of AID- and UCM-multilabel (sections 1.3, 3);
- seeded stratified hold-out splits (section 7: validation carved from train, 20 %,
  stratified by scene);
- the lift rule for the dominant label (section 7, "Dominant label"), and user tables
  replacing it;
- config-name formatting for the `make_config` helpers.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

# ImageNet statistics (DATASETS.md 1.7) in raw 0..255 units, so that AID / UCM images are
# normalised like the reBEN bands: (x - mean) / std on the stored integer values.
IMAGENET_MEAN_255 = np.asarray([0.485, 0.456, 0.406], np.float32) * np.float32(255.0)
IMAGENET_STD_255 = np.asarray([0.229, 0.224, 0.225], np.float32) * np.float32(255.0)

# The 17 object labels of AID- and UCM-multilabel, index order of DATASETS.md 1.2.
MULTILABEL_17 = (
    "airplane", "bare-soil", "buildings", "cars", "chaparral", "court", "dock", "field",
    "grass", "mobile-home", "pavement", "sand", "sea", "ship", "tanks", "trees", "water",
)

# First header cell of the AID / UCM label tables (sections 1.3, 1.4, 3).
LABEL_TABLE_KEY = "IMAGE\\LABEL"

SPLITS = ("train", "validation", "test")


class ModuleCodePath:
    """Builder mixin: the builder's code path is its module file.

    TFDS 4.9.10 looks the file up through the `importlib_resources` backport, which it only
    installs on Python < 3.9 (tensorflow/datasets#11212), so download_and_prepare() fails
    with ModuleNotFoundError on Python 3.11 without this.
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return tfds.core.Path(sys.modules[cls.__module__].__file__)


class CorruptFileError(ValueError):
    """A file exists but cannot be decoded. The only error `skip_corrupt=True` skips."""

    def __init__(self, path: Path | str, reason: object):
        self.path = Path(path)
        self.reason = _clean_reason(reason)
        super().__init__(f"Cannot decode {path}: {self.reason}")


class FileContentError(ValueError):
    """A file decodes but has the wrong size, band count, dtype or values, or a table names an unknown label,
    scene or column."""


def _clean_reason(reason: object) -> str:
    """The decoder's message without TensorFlow's op decorations ('{{function_node ...}} ... [Op:DecodeImage]')."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(reason))
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text, flags=re.S)
    return " ".join(text.split()) or type(reason).__name__


def missing_data_message(dataset: str, where: Path | str, layout: str, published_at: str,
                         missing: Sequence[str] = ()) -> str:
    """The one message for "the data are not where they should be"."""
    lines = [f"{dataset}: the data were not found in {where}."]
    if missing:
        shown = list(missing[:10])
        more = len(missing) - len(shown)
        lines.append("Missing: " + ", ".join(str(m) for m in shown)
                     + (f" (and {more} more)" if more > 0 else ""))
    lines += [
        "Expected layout of manual_dir (or of one folder directly inside it):",
        layout.rstrip(),
        f"The data are published at {published_at}; nothing is downloaded by this builder.",
    ]
    return "\n".join(lines)


def manual_dir_or_raise(dl_manager, dataset: str, layout: str, published_at: str) -> Path:
    """Returns `dl_manager.manual_dir`, turning TFDS's AssertionError into a FileNotFoundError.

    TFDS raises AssertionError when manual_dir does not exist or is empty; callers and users
    expect a FileNotFoundError that names the layout and the source of the data.
    """
    try:
        return Path(dl_manager.manual_dir)
    except AssertionError as err:
        # pylint: disable-next=protected-access
        where = getattr(dl_manager, "_manual_dir", None) or "the manual_dir"
        raise FileNotFoundError(
            missing_data_message(dataset, where, layout, published_at)) from err


def resolve_data_root(manual_dir: Path, required: Sequence[Sequence[str]], *, dataset: str,
                      layout: str, published_at: str) -> Path:
    """The folder holding the release: manual_dir itself or exactly one folder inside it.

    `required` lists groups of alternatives (relative paths); a folder qualifies when every
    group has at least one existing member. One level of nesting is accepted because users
    usually unpack the archive into manual_dir (e.g. manual_dir/AID_multilabel/...).
    """
    manual_dir = Path(manual_dir)

    def missing_in(folder: Path) -> list[str]:
        return [" or ".join(group) for group in required
                if not any((folder / rel).exists() for rel in group)]

    if not manual_dir.is_dir():
        raise FileNotFoundError(missing_data_message(dataset, manual_dir, layout, published_at))
    missing_here = missing_in(manual_dir)
    if not missing_here:
        return manual_dir
    children = sorted(p for p in manual_dir.iterdir() if p.is_dir())
    matches = [child for child in children if not missing_in(child)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise FileNotFoundError(
            f"{dataset}: several folders in {manual_dir} hold the data "
            f"({', '.join(m.name for m in matches)}); point manual_dir at one of them.")
    raise FileNotFoundError(
        missing_data_message(dataset, manual_dir, layout, published_at, missing_here))


def normalize_label_name(name: str) -> str:
    """'Bare Soil', 'bare_soil', 'bare-soil' -> 'bare-soil' (both spellings exist, section 1.2)."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def label_index(name: str, class_names: Sequence[str], source: str) -> int:
    """Index of a label name (either spelling); unknown names are an error listing valid ones."""
    normalized = normalize_label_name(name)
    if normalized not in class_names:
        raise FileContentError(
            f"Unknown label name {name!r} in {source}. Valid names (either '-' or ' ' between "
            f"words): {', '.join(class_names)}")
    return class_names.index(normalized)


def read_label_table(path: Path, class_names: Sequence[str],
                     strip_suffixes: Sequence[str] = (".jpg", ".jpeg", ".tif", ".tiff")
                     ) -> dict[str, np.ndarray]:
    """Parses an `IMAGE\\LABEL` table: header key + label names, then one 0/1 row per image.

    Separator: tab when the header has a tab, else comma (AID's multilabel.csv is read with
    pandas defaults by third-party loaders, the aitlas-arena CSVs and UCM's txt are
    tab-separated, sections 1.3, 1.4, 3). Columns are matched by NAME, so a different column
    order would still give vectors in `class_names` order. Returns {file stem: uint8 (C,)}.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise FileContentError(f"Label table {path} is not a UTF-8 text file ({err.reason} at byte "
                               f"{err.start}).") from err
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise FileContentError(f"Label table {path} is empty.")
    separator = "\t" if "\t" in lines[0] else ","
    header = [cell.strip() for cell in lines[0].split(separator)]
    if header[0] != LABEL_TABLE_KEY:
        # Only seen through third-party loaders (DATASETS.md 1.3): tolerate, but say so.
        logging.warning("%s: first header cell is %r, expected %r; reading it as the image "
                        "column.", path, header[0], LABEL_TABLE_KEY)
    columns = [label_index(name, class_names, f"the header of {path}") for name in header[1:]]
    missing = [class_names[i] for i in range(len(class_names)) if i not in columns]
    if missing or len(set(columns)) != len(columns):
        raise FileContentError(
            f"Label table {path} must have each of the {len(class_names)} labels exactly once; "
            f"missing: {missing}, header: {header[1:]}")
    table = {}
    for line_number, line in enumerate(lines[1:], start=2):
        cells = [cell.strip() for cell in line.split(separator)]
        if len(cells) != len(header):
            raise FileContentError(
                f"{path}, line {line_number}: {len(cells)} fields, the header has {len(header)}.")
        stem = cells[0]
        for suffix in strip_suffixes:
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
        if cells[1:] and not all(cell in ("0", "1") for cell in cells[1:]):
            raise FileContentError(f"{path}, line {line_number}: label values must be 0 or 1.")
        if stem in table:
            raise FileContentError(f"{path}, line {line_number}: image {stem!r} listed twice.")
        vector = np.zeros(len(class_names), np.uint8)
        vector[columns] = [int(cell) for cell in cells[1:]]
        table[stem] = vector
    return table


def stratified_holdout(names: Sequence[str], strata: Sequence[int], fraction: float,
                       seed: int, stream: int) -> set[str]:
    """Names held out: round(fraction * n) of each stratum, drawn with a seeded permutation.

    Each stratum has its own generator seeded by (seed, stream, stratum), so the draw of one
    scene does not depend on which other scenes are present (the dummy data have 3 of 30),
    and `stream` separates successive hold-outs (UCM: test, then validation). round() is
    half-up. Names are sorted first, so the result does not depend on listing order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"Hold-out fraction must be in [0, 1), got {fraction}.")
    by_stratum: dict[int, list[str]] = {}
    for name, stratum in zip(names, strata):
        by_stratum.setdefault(int(stratum), []).append(name)
    held_out = set()
    for stratum, members in sorted(by_stratum.items()):
        members = sorted(members)
        count = math.floor(fraction * len(members) + 0.5)
        order = np.random.default_rng([seed, stream, stratum]).permutation(len(members))
        held_out.update(members[i] for i in order[:count])
    return held_out


def lift_table(labels: np.ndarray, scenes: np.ndarray, num_scenes: int) -> np.ndarray:
    """lift(s, c) = P(c | s) / P(c) on the given (training) examples, DATASETS.md section 7.

    Computed as (n_sc * N) / (N_s * n_c) from integer counts with one division, so two lifts
    that are equal as fractions are equal floats and ties are exact. Undefined entries
    (scene or label absent from the examples) are 0.
    """
    labels = np.asarray(labels, np.int64)
    scene_one_hot = np.eye(num_scenes, dtype=np.int64)[np.asarray(scenes)]
    n_sc = scene_one_hot.T @ labels                      # (S, C) positives per scene
    n_s = scene_one_hot.sum(axis=0)                      # (S,) images per scene
    n_c = labels.sum(axis=0)                             # (C,) positives per label
    numerator = n_sc * labels.shape[0]
    denominator = n_s[:, None] * n_c[None, :]
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape, np.float64),
                     where=denominator > 0)


def dominant_from_scores(labels: np.ndarray, scenes: np.ndarray, scores: np.ndarray,
                         names: Sequence[str]) -> np.ndarray:
    """Dominant label: the image's positive with the highest score for its scene (section 7).

    Ties go to the lowest class index (argmax returns the first maximum). `scores` may hold
    -inf for labels a user table does not rank: among the positives they lose to every ranked
    label and tie among themselves. An image without positives has no dominant label.
    """
    positive = np.asarray(labels) > 0
    empty = np.flatnonzero(~positive.any(axis=1))
    if empty.size:
        raise FileContentError(
            f"Images without any positive label: {[names[i] for i in empty[:10]]}")
    scene_scores = np.asarray(scores, np.float64)[np.asarray(scenes)]
    finite_floor = np.min(scene_scores[np.isfinite(scene_scores)], initial=0.0) - 1.0
    scene_scores = np.where(np.isfinite(scene_scores), scene_scores, finite_floor)
    return np.where(positive, scene_scores, -np.inf).argmax(axis=1)


def load_dominant_table(path: str | Path, scene_names: Sequence[str],
                        class_names: Sequence[str], required_scenes: Sequence[int]
                        ) -> np.ndarray:
    """Reads a user scene -> label table (JSON) into a (S, C) score array, -inf = unranked.

    Per scene the value is one of: a label name (that label first, the rest by class index);
    a list of C scores in class order; or {label name: score} (missing labels unranked).
    The metadata's `dominant_table` is in the last form, so a stored table can be edited and
    fed back. Every scene present in the data must be covered.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"Dominant-label table {path} does not exist.") from err
    except json.JSONDecodeError as err:
        raise FileContentError(f"Dominant-label table {path} is not valid JSON: {err}") from err
    if not isinstance(raw, Mapping):
        raise FileContentError(f"Dominant-label table {path} must be a JSON object scene -> labels.")
    scores = np.full((len(scene_names), len(class_names)), -np.inf)
    for scene, value in raw.items():
        if scene not in scene_names:
            raise FileContentError(f"Unknown scene {scene!r} in {path}. Valid scenes: "
                             f"{', '.join(scene_names)}")
        row = scores[scene_names.index(scene)]
        source = f"{path} (scene {scene!r})"
        if isinstance(value, str):
            row[label_index(value, class_names, source)] = 1.0
        elif isinstance(value, Sequence):
            if len(value) != len(class_names):
                raise FileContentError(f"{source}: a list must have {len(class_names)} scores.")
            row[:] = [float(v) for v in value]
        elif isinstance(value, Mapping):
            for label, score in value.items():
                row[label_index(label, class_names, source)] = float(score)
        else:
            raise FileContentError(f"{source}: expected a label name, a list or an object.")
    uncovered = [scene_names[s] for s in sorted(set(int(s) for s in required_scenes))
                 if scene_names[s] not in raw]
    if uncovered:
        raise FileContentError(f"Dominant-label table {path} lacks scenes present in the data: "
                         f"{', '.join(uncovered)}")
    return scores


def table_to_json(scores: np.ndarray, scene_names: Sequence[str], class_names: Sequence[str],
                  scenes: Sequence[int]) -> dict[str, dict[str, float]]:
    """{scene: {label: score}} for the given scenes; unranked (-inf) labels are left out."""
    return {
        scene_names[s]: {class_names[c]: float(scores[s, c])
                         for c in range(len(class_names)) if np.isfinite(scores[s, c])}
        for s in sorted(set(int(s) for s in scenes))
    }


def format_number(value: float) -> str:
    """0.05 -> '0p05': config names keep to letters, digits and '_'."""
    return format(value, ".10g").replace(".", "p").replace("-", "m").replace("+", "")


class SkipLog:
    """Collects the files a `skip_corrupt=True` build left out (logged and listed in metadata)."""

    def __init__(self, skip_corrupt: bool, metadata: dict):
        self.skip_corrupt = skip_corrupt
        self.skipped = metadata.setdefault("skipped", [])

    def handle(self, err: CorruptFileError) -> None:
        """Re-raises unless skipping is enabled; then logs and records the file."""
        if not self.skip_corrupt:
            raise err
        logging.warning("Skipping corrupt file %s: %s", err.path, err)
        self.skipped.append({"file": str(err.path), "error": str(err)})


def rgb_scene_features(image_size: int, encoding_format: str, class_names, scene_names):
    """The example features of the RGB scene datasets (AID-multilabel, UCM multi-label): the image at its original
    size, the multi-hot labels, the dominant label, the scene class kept per image, the file stem and the id."""
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(image_size, image_size, 3), encoding_format=encoding_format),
        "labels": tfds.features.Tensor(shape=(len(class_names),), dtype=np.uint8),
        "dominant_label": tfds.features.ClassLabel(names=class_names),
        "scene": tfds.features.ClassLabel(names=scene_names),
        "name": tfds.features.Text(),
        "id": tfds.features.Scalar(dtype=np.int64),
    })


def scene_examples(records, read_image, skip_log: SkipLog):
    """(key, example) pairs of one split of an RGB scene dataset. `read_image(path)` returns the image (bytes or
    array) or raises CorruptFileError, which `skip_log` stops on or records; `id` counts only the examples actually
    written, so the ids of a split are exactly 0..N-1 (the input pipeline indexes per-sample state by them)."""
    next_id = 0
    for record in records:
        try:
            image = read_image(record["path"])
        except CorruptFileError as err:
            skip_log.handle(err)
            continue
        yield record["name"], {
            "image": image,
            "labels": record["labels"],
            "dominant_label": record["dominant_label"],
            "scene": record["scene"],
            "name": record["name"],
            "id": next_id,
        }
        next_id += 1


def rgb_scene_info(builder, description: str, image_size: int, encoding: str, class_names, scene_names,
                   homepage: str, citation: str) -> tfds.core.DatasetInfo:
    """The DatasetInfo of an RGB scene builder (aid_multilabel, ucm_multilabel): rgb_scene_features, supervised
    keys (image, labels) and an empty metadata dict (where skip_corrupt records the skipped files)."""
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=rgb_scene_features(image_size, encoding, class_names, scene_names),
        supervised_keys=("image", "labels"),
        homepage=homepage,
        citation=citation,
        metadata=tfds.core.MetadataDict(),
    )


def imagenet_band_statistics() -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per RGB channel in raw 0..255 units: ImageNet's (DATASETS.md 1.7) x 255."""
    return IMAGENET_MEAN_255.copy(), IMAGENET_STD_255.copy()


def scene_split_generators(metadata, config, names, scenes, label_matrix, split_of, paths, scene_names,
                           class_names, generate_examples) -> dict:
    """The end of an RGB scene builder's _split_generators (aid_multilabel, ucm_multilabel): the dominant labels
    (the lift rule on the train split, DATASETS.md section 7, or the user's `dominant_table`), the metadata, and one
    example generator per split over `paths[name]`."""
    is_train = np.asarray([split_of[n] == "train" for n in names])
    if config.dominant_table is None:
        scores = lift_table(label_matrix[is_train], scenes[is_train], len(scene_names))
        table_source = "lift on the train split (DATASETS.md section 7)"
    else:
        scores = load_dominant_table(config.dominant_table, scene_names, class_names, scenes)
        table_source = str(config.dominant_table)
    dominant = dominant_from_scores(label_matrix, scenes, scores, names)

    metadata["dominant_table"] = table_to_json(scores, scene_names, class_names, scenes)
    metadata["dominant_table_source"] = table_source
    metadata["skipped"] = []
    skip_log = SkipLog(config.skip_corrupt, metadata)

    records = {split: [] for split in SPLITS}
    for i, name in enumerate(names):
        records[split_of[name]].append(dict(name=name, path=paths[name], labels=label_matrix[i],
                                            scene=int(scenes[i]), dominant_label=int(dominant[i])))
    return {split: generate_examples(records[split], skip_log) for split in SPLITS}
