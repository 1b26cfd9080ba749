"""Regenerates the dummy releases under adagc_jax/datasets/dummy_data/ (deterministic).

    python -m adagc_jax.datasets.make_dummy_data [--out DIR]

Each sub-folder imitates a real release in file names, folder layout, headers and dtypes
(DATASETS.md sections 1.3, 2.2-2.4, 2.7, 3) with a handful of low-entropy files, so the
builders' tests run the real reading code in seconds. The label contents are chosen so
that the tests can check splits, lift tables and dominant labels by hand:

aid_multilabel/  images_tr/{Airport,Beach,Park}/ (3 images each; Park numbered from 101),
                 images_test/ (1 per scene), multilabel.csv (comma, spellings 'bare soil' /
                 'mobile home'), aidmultilabel_{train,val,test}.csv (tab, hyphenated).
ucm_multilabel/  UCMerced_LandUse/Images/{agricultural,beach,harbor}/<class>0{0..4}.tif
                 (harbor03 is 256 x 252, agricultural00 uncompressed like the release, the
                 others deflate-compressed to stay small), LandUse_Multilabeled.txt.
reben/           metadata.parquet (schema of 2.4), 4 patches x 12 band GeoTIFFs at native
                 120 / 60 / 20 px uint16 (uncompressed), deflate reference maps with CLC
                 codes including UNLABELED 122, 999 and nodata 0.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import tifffile

DUMMY_DIR = Path(__file__).resolve().parent / "dummy_data"

# ----------------------------------------------------------------------------------------------
# AID-multilabel
# ----------------------------------------------------------------------------------------------
AID_LABELS = {  # stem -> positive labels
    "airport_1": ("airplane", "buildings", "pavement"),
    "airport_2": ("airplane", "buildings", "cars", "pavement"),
    "airport_3": ("buildings", "grass", "pavement"),
    "airport_81": ("airplane", "grass", "pavement"),
    "beach_1": ("sand", "sea"),
    "beach_2": ("sand", "sea", "trees"),
    "beach_3": ("buildings", "sand", "sea"),
    "beach_81": ("sea", "trees", "water"),
    "park_101": ("buildings", "cars", "grass", "pavement", "trees"),
    "park_102": ("grass", "trees", "water"),
    "park_103": ("grass", "pavement", "trees"),
    "park_181": ("court", "mobile-home"),
}
AID_FOLDERS = {"airport": "Airport", "beach": "Beach", "park": "Park"}
AID_TEST = ("airport_81", "beach_81", "park_181")
AID_ARENA = {
    "train": ("airport_1", "airport_2", "beach_1", "beach_2", "park_101", "park_102"),
    "val": ("airport_3", "beach_3", "park_103"),
    "test": AID_TEST,
}
LABELS_17 = (
    "airplane", "bare-soil", "buildings", "cars", "chaparral", "court", "dock", "field",
    "grass", "mobile-home", "pavement", "sand", "sea", "ship", "tanks", "trees", "water",
)

# ----------------------------------------------------------------------------------------------
# UC Merced multi-label
# ----------------------------------------------------------------------------------------------
UCM_LABELS = {
    "agricultural00": ("field",),
    "agricultural01": ("field", "trees"),
    "agricultural02": ("field", "grass"),
    "agricultural03": ("bare-soil", "field"),
    "agricultural04": ("field", "grass", "trees"),
    "beach00": ("sand", "sea"),
    "beach01": ("sand", "sea", "trees"),
    "beach02": ("sand", "sea"),
    "beach03": ("grass", "sand", "sea"),
    "beach04": ("sand", "sea", "water"),
    "harbor00": ("dock", "sea", "ship"),
    "harbor01": ("dock", "ship", "water"),
    "harbor02": ("buildings", "dock", "sea", "ship"),
    "harbor03": ("dock", "pavement", "sea", "ship"),
    "harbor04": ("cars", "dock", "ship", "water"),
}
UCM_ODD_SIZE = {"harbor03": (256, 252)}
UCM_UNCOMPRESSED = ("agricultural00",)

# ----------------------------------------------------------------------------------------------
# reBEN: patch_id -> (split, labels, reference-map runs of (CLC code, pixel count) in
# row-major order). Counts are designed for the dominant-label rule (argmax of BEN-19 pixels).
# ----------------------------------------------------------------------------------------------
REBEN_PATCHES = {
    # 211 Arable 7200, 311 Broad-leaved 3600, 313 Mixed 2400, 231 Pastures 1200 -> Arable land.
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57": (
        "train", ("Arable land", "Broad-leaved forest", "Mixed forest", "Pastures"),
        ((211, 7200), (311, 3600), (313, 2400), (231, 1200))),
    # UNLABELED 122 is the largest area and is ignored; Coniferous 4000 = Inland waters 4000
    # -> tie to the lower index: Coniferous forest.
    "S2B_MSIL2A_20180204T094159_N9999_R036_T35VNL_10_20": (
        "train", ("Coniferous forest", "Inland waters"),
        ((122, 5000), (312, 4000), (512, 4000), (999, 1400))),
    # Urban fabric = 111 + 112 = 6000 beats Arable land 5000 (the largest single code).
    "S2A_MSIL2A_20170717T113321_N9999_R080_T29UPU_40_12": (
        "validation", ("Arable land", "Pastures", "Urban fabric"),
        ((111, 3000), (211, 5000), (112, 3000), (231, 3400))),
    # Marine waters 11800 with nodata 0 and 999 pixels.
    "S2B_MSIL2A_20170924T093019_N9999_R136_T34VFN_55_71": (
        "test", ("Beaches, dunes, sands", "Marine waters"),
        ((0, 200), (331, 2000), (523, 11800), (999, 400))),
}
REBEN_COUNTRY = ("Austria", "Finland", "Portugal", "Lithuania")
BAND_NAMES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11",
              "B12")
NATIVE_SIZE = {"B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60,
               "B07": 60, "B08": 120, "B8A": 60, "B09": 20, "B11": 60, "B12": 60}


def reben_band_values(patch_index: int, band_index: int, size: int) -> np.ndarray:
    """Deterministic smooth uint16 band: distinct offset per (patch, band) plus a ramp."""
    rows, cols = np.mgrid[0:size, 0:size]
    step = 120 // size  # same ramp per metre whatever the resolution
    ramp = (rows * 7 + cols * 3) * step
    return (1000 + 300 * band_index + 50 * patch_index + ramp).astype(np.uint16)


def reben_reference_map(runs) -> np.ndarray:
    codes = np.concatenate([np.full(count, code, np.uint16) for code, count in runs])
    assert codes.size == 120 * 120, codes.size
    return codes.reshape(120, 120)


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------
def _rgb_tile(index: int, height: int, width: int) -> np.ndarray:
    """A low-entropy RGB image: a colour per index and two flat bands (compresses well)."""
    base = np.asarray([(53 * index) % 200 + 30, (97 * index) % 200 + 30, (31 * index) % 200 + 30])
    image = np.empty((height, width, 3), np.uint8)
    image[:] = base
    image[height // 2:, : width // 3] = 255 - base
    return image


def encode_jpeg(image: np.ndarray) -> bytes:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  # heavy, AID only

    return tf.io.encode_jpeg(image, quality=90).numpy()


def _label_row(stem: str, positives, separator: str) -> str:
    return separator.join([stem] + ["1" if label in positives else "0" for label in LABELS_17])


def write_aid(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for index, (stem, _) in enumerate(sorted(AID_LABELS.items())):
        folder = "images_test" if stem in AID_TEST else "images_tr"
        scene = stem.rsplit("_", 1)[0]
        path = root / folder / AID_FOLDERS[scene] / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(_rgb_tile(index, 600, 600)))
    # multilabel.csv: comma-separated, spaces in the two-word labels (both spellings occur).
    header = ",".join(["IMAGE\\LABEL"] + [label.replace("-", " ") for label in LABELS_17])
    rows = [_label_row(stem, AID_LABELS[stem], ",") for stem in AID_LABELS]
    (root / "multilabel.csv").write_text("\n".join([header] + rows) + "\n", encoding="utf-8")
    # aitlas-arena split files: tab-separated, hyphenated labels (DATASETS.md 1.4).
    for split, stems in AID_ARENA.items():
        header = "\t".join(["IMAGE\\LABEL"] + list(LABELS_17))
        rows = [_label_row(stem, AID_LABELS[stem], "\t") for stem in stems]
        (root / f"aidmultilabel_{split}.csv").write_text(
            "\n".join([header] + rows) + "\n", encoding="utf-8")


def write_ucm(root: Path) -> None:
    images = root / "UCMerced_LandUse" / "Images"
    for index, stem in enumerate(sorted(UCM_LABELS)):
        scene = stem.rstrip("0123456789")
        height, width = UCM_ODD_SIZE.get(stem, (256, 256))
        path = images / scene / f"{stem}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, _rgb_tile(index, height, width), photometric="rgb",
                         metadata=None, software=False,
                         compression=None if stem in UCM_UNCOMPRESSED else "zlib")
    header = "\t".join(["IMAGE\\LABEL"] + list(LABELS_17))
    rows = [_label_row(stem, UCM_LABELS[stem], "\t") for stem in UCM_LABELS]
    (root / "LandUse_Multilabeled.txt").write_text("\n".join([header] + rows) + "\n",
                                                    encoding="utf-8")


def _geotiff_tags(size: int) -> list:
    """GeoTIFF tags as GDAL writes them for a UTM patch (pixel scale, tie point, keys, nodata)."""
    pixel = 1200.0 / size
    return [
        (33550, "d", 3, (pixel, pixel, 0.0), True),                       # ModelPixelScale
        (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 6000000.0, 0.0), True),  # ModelTiepoint
        (34735, "H", 20, (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1,        # GeoKeyDirectory
                          3072, 0, 1, 32633, 3076, 0, 1, 9001), True),
        (42113, "s", 2, "0", True),                                        # GDAL_NODATA
    ]


def write_reben(root: Path) -> None:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    root.mkdir(parents=True, exist_ok=True)
    for patch_index, (patch_id, (_, _, runs)) in enumerate(REBEN_PATCHES.items()):
        tile = patch_id.rsplit("_", 2)[0]
        folder = root / "BigEarthNet-S2" / tile / patch_id
        folder.mkdir(parents=True, exist_ok=True)
        for band_index, band in enumerate(BAND_NAMES):
            size = NATIVE_SIZE[band]
            tifffile.imwrite(folder / f"{patch_id}_{band}.tif",
                             reben_band_values(patch_index, band_index, size),
                             photometric="minisblack", metadata=None, software=False,
                             extratags=_geotiff_tags(size))
        maps = root / "Reference_Maps" / tile / patch_id
        maps.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(maps / f"{patch_id}_reference_map.tif", reben_reference_map(runs),
                         photometric="minisblack", metadata=None, software=False,
                         compression="zlib", extratags=_geotiff_tags(120))
    # Rows deliberately not in name order (the builder sorts), labels sorted as in 2.4.
    order = sorted(REBEN_PATCHES, key=lambda p: p[-5:], reverse=True)
    schema = pa.schema([
        ("patch_id", pa.string()), ("labels", pa.list_(pa.string())), ("split", pa.string()),
        ("country", pa.string()), ("s1_name", pa.string()), ("s2v1_name", pa.string()),
        ("contains_seasonal_snow", pa.bool_()), ("contains_cloud_or_shadow", pa.bool_()),
    ])
    columns = {name: [] for name in schema.names}
    for i, patch_id in enumerate(order):
        split, labels, _ = REBEN_PATCHES[patch_id]
        fields = patch_id.split("_")
        columns["patch_id"].append(patch_id)
        columns["labels"].append(sorted(labels))
        columns["split"].append(split)
        columns["country"].append(REBEN_COUNTRY[i])
        columns["s1_name"].append(
            f"{fields[0][:2]}A_IW_GRDH_1SDV_{fields[2]}_{fields[5][1:]}_{fields[6]}_{fields[7]}")
        columns["s2v1_name"].append(f"{fields[0]}_{fields[1]}_{fields[2]}_{fields[6]}_{fields[7]}")
        columns["contains_seasonal_snow"].append(False)
        columns["contains_cloud_or_shadow"].append(False)
    pq.write_table(pa.table(columns, schema=schema), root / "metadata.parquet")


WRITERS = {"aid_multilabel": write_aid, "ucm_multilabel": write_ucm, "reben": write_reben}


def main(out: Path = DUMMY_DIR) -> None:
    for name, writer in WRITERS.items():
        target = Path(out) / name
        shutil.rmtree(target, ignore_errors=True)
        writer(target)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DUMMY_DIR)
    main(parser.parse_args().out)
