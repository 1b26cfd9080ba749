"""From a finished run to predictions on new images (`--mode=predict`), and its re-evaluation on a split
(`--mode=eval`). docs/predict.md is the user's guide.

A run's workdir holds everything needed, without the dataset: config.json (the run's config, the source of truth),
dataset_info.json (class names, input size, band statistics, the stored dtype and band order, written when the
run starts: `write_dataset_info`) and the checkpoints. The reported model is the one results.json reports: the
last epoch's teacher where the run has one (`ema.weights`), else its student.

Reading and checking the new image files, and making the model input from them, is image_files.py's job. A file
that cannot be decoded, or that holds another band count or dtype, is reported by name with the reason and left
out; the other files are still predicted.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from adagc_jax import checkpoint, evaluate, experiment, image_files, input_pipeline, parallel, prepare, reporting
from adagc_jax import workdir as workdir_lib
from adagc_jax.errors import ConfigError, DatasetError, DeviceError, WorkdirError

DATASET_INFO_FILE = "dataset_info.json"
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
# Metrics of the --mode=eval table, in this order (metrics.compute_metrics keys).
TABLE_METRICS = ("mAP", "micro_F1", "macro_F1", "micro_precision", "micro_recall", "macro_precision",
                 "macro_recall", "hamming_loss", "ranking_loss", "one_error", "coverage", "label_cardinality_error")


# -- what the run stores about its data ---------------------------------------------------------------------------

def write_dataset_info(workdir: str, builder, info: input_pipeline.DatasetInfo) -> None:
    """Writes <workdir>/dataset_info.json: what predict needs to prepare new images like the training ones."""
    metadata = builder.info.metadata or {}
    record = {
        "name": info.name,
        "builder_config": builder.builder_config.name if builder.builder_config else None,
        "class_names": list(info.class_names),
        "num_examples": dict(info.num_examples),
        "image_shape": list(info.image_shape),
        "mean": [float(v) for v in info.mean],
        "std": [float(v) for v in info.std],
        "dtype": tf.as_dtype(builder.info.features["image"].dtype).name,
        "bands": list(metadata["bands"]) if "bands" in metadata else None,
    }
    reporting.write_json(os.path.join(workdir, DATASET_INFO_FILE), record)


@dataclasses.dataclass
class StoredData:
    """The run's data description: the DatasetInfo the model was built with, the stored dtype and band names."""

    info: input_pipeline.DatasetInfo
    dtype: np.dtype
    bands: list | None


def read_dataset_info(workdir: str, config) -> StoredData:
    """dataset_info.json; for a run written before it existed, results.json's dataset block plus the builder's
    statistics and dtype (the builder is constructed, its data are not read)."""
    path = os.path.join(workdir, DATASET_INFO_FILE)
    if os.path.isfile(path):
        record = _read_json(path)
    else:
        results = os.path.join(workdir, RESULTS_FILE)
        if not os.path.isfile(results):
            raise WorkdirError(f"{workdir} holds neither {DATASET_INFO_FILE} nor {RESULTS_FILE}, so the input size, "
                               "classes and normalisation of the run's images are unknown. Give --workdir the "
                               "folder of a finished training run.")
        record = dict(_read_json(results)["dataset"])
        builder = input_pipeline.get_builder(config.dataset)
        mean, std = builder.band_statistics()
        record.update(mean=np.asarray(mean).tolist(), std=np.asarray(std).tolist(), bands=None,
                      dtype=tf.as_dtype(builder.info.features["image"].dtype).name)
    info = input_pipeline.DatasetInfo(
        name=record["name"], num_classes=len(record["class_names"]), class_names=tuple(record["class_names"]),
        num_examples=dict(record["num_examples"]), image_shape=tuple(record["image_shape"]),
        mean=np.asarray(record["mean"], np.float32), std=np.asarray(record["std"], np.float32))
    return StoredData(info=info, dtype=np.dtype(record["dtype"]), bands=record.get("bands"))


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise WorkdirError(f"cannot read {path} ({e}); it is written by the training run: give --workdir the "
                           "folder of a finished run, or train it again.") from e


# -- the trained model --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainedRun:
    """A finished run, restored: its config, data description, experiment (eval step, mesh) and final models."""

    workdir: str
    config: ml_collections.ConfigDict
    data: StoredData
    exp: experiment.Experiment
    epoch: int
    models: dict  # 'student' and, where the run has one, 'teacher': variables on the mesh

    @property
    def reported(self) -> str:
        """The reported model (train.Run.reported): the teacher where the run has one, else the student."""
        return "teacher" if self.config.ema.weights else "student"


def run_config(workdir: str, config=None) -> ml_collections.ConfigDict:
    """The run's own config (config.json). A `config` given as well (the training command repeated) may only
    differ in keys that cannot change the trained model (workdir.MODEL_NEUTRAL_KEYS: where the data live, the
    number of devices, the eval batch size, logging); it is then used, so those keys can be set for this call."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise WorkdirError(f"{workdir} has no {CONFIG_FILE}: it is not the workdir of a training run (or the run "
                           "never started). Give --workdir the folder a `--mode=train` run wrote.")
    saved = _read_json(path)
    if config is None:
        return ml_collections.ConfigDict(saved)
    given = json.loads(config.to_json_best_effort())
    differ = [d for d in workdir_lib.compare_configs(saved, given) if not workdir_lib.is_model_neutral(d[0])]
    if differ:
        listed = "; ".join(f"{k}: {json.dumps(a)} (run) vs {json.dumps(b)} (given)" for k, a, b in differ[:8])
        more = f" and {len(differ) - 8} more" if len(differ) > 8 else ""
        raise ConfigError(
            f"the --config given describes another model than the run in {workdir} ({listed}{more}). Leave "
            f"--config out (the run's own {path} is used), or give the config and arguments the run was trained "
            "with; only keys that cannot change the model (data_dir, num_devices, eval_batch_size, log...) may "
            "differ.")
    return ml_collections.ConfigDict(given)


def load_run(workdir: str, config=None) -> TrainedRun:
    """Restores the final models of the finished run in `workdir` (WorkdirError when it has not finished)."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} does not exist; give the folder of a finished training run.")
    config = run_config(workdir, config)
    folder = os.path.join(workdir, "checkpoints")
    epochs = sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []
    if not epochs:
        raise WorkdirError(f"the run in {workdir} has no checkpoint ({folder} is missing or empty): it has not "
                           "finished an epoch. Train it first (the training command resumes an interrupted run).")
    results_path = os.path.join(workdir, RESULTS_FILE)
    stopped = _read_json(results_path).get("early_stopped_epoch") if os.path.isfile(results_path) else None
    if epochs[-1] < config.num_epochs and epochs[-1] != stopped:  # an early-stopped run is finished too
        raise WorkdirError(
            f"the run in {workdir} has not finished: its last checkpoint is epoch {epochs[-1]} of "
            f"{config.num_epochs}. Run the training command again to finish it (it resumes from epoch "
            f"{epochs[-1]}); predictions and evaluation use the final model.")
    data = read_dataset_info(workdir, config)
    if config.model.get("pretrained"):
        config.model.pretrained = ""  # the checkpoint holds the weights; the file need not exist any more
    mesh = parallel.make_mesh(None if config.num_devices <= 0 else config.num_devices)
    num_train = data.info.num_examples["train"]
    exp = experiment.build(config, data.info, max(1, num_train // int(config.batch_size)), mesh)
    # The state to restore into: same structure, dtypes and shardings as the run's (observed labels only shape
    # the method's state, their values are restored with it).
    like = exp.initial_state(np.zeros((num_train, data.info.num_classes), np.float32), label_cardinality=1.0)
    ckpt = checkpoint.Checkpointer(workdir, config.checkpoint.keep)
    try:
        state, _, _ = ckpt.restore(epochs[-1], like)
    except Exception as e:  # pylint: disable=broad-except  # orbax / TensorStore raise many types
        raise WorkdirError(
            f"cannot read the final checkpoint (epoch {epochs[-1]}) in {folder}: "
            f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:300]}. If the files were damaged, the "
            "training command run again resumes from the previous checkpoint and writes it again; if the code or "
            f"the config changed since the run, use the version it was trained with.") from e
    finally:
        ckpt.close()
    return TrainedRun(workdir=workdir, config=config, data=data, exp=exp, epoch=epochs[-1],
                      models=evaluate.evaluated_models(state))


# -- predicting ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Predictions:
    """What `predict_files` did: the CSV, its rows, and the files left out with their reasons."""

    output: str
    rows: int
    columns: list
    problems: list  # [(file, reason)]


def label_set(probabilities: np.ndarray, class_names, threshold: float, top_k: int) -> list[str]:
    """The predicted labels of one image: classes with probability >= threshold, or (top_k > 0) the top_k most
    probable classes whatever their probability, most probable first."""
    if top_k > 0:
        chosen = np.argsort(-probabilities, kind="stable")[:top_k]
    else:
        chosen = [c for c in np.argsort(-probabilities, kind="stable") if probabilities[c] >= threshold]
    return [class_names[c] for c in chosen]


def predict_files(run: TrainedRun, input_pattern: str, output: str, threshold: float = 0.5, top_k: int = 0,
                  progress_bar: bool = True) -> Predictions:
    """Predicts every image `input_pattern` names with the run's reported model, batched over the mesh's devices,
    and writes `output` (CSV): `file`, one probability column per class (named by the class), `labels` (the
    predicted label set, ';'-separated). Unusable files are reported and left out; DatasetError when none is left.
    """
    if jax.process_count() > 1:
        raise DeviceError("--mode=predict runs in one process; drop --multihost (it uses every device of this "
                          "host).")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold={threshold} is not a probability; give a value in [0, 1] (default 0.5).")
    if top_k < 0:
        raise ConfigError(f"--top_k={top_k} is negative; give 0 (use --threshold) or the number of labels per image.")
    files, folder = image_files.list_inputs(input_pattern)
    info, mesh = run.data.info, run.exp.mesh
    num_devices = mesh.devices.size
    batch_size = -(-int(run.config.eval_batch_size) // num_devices) * num_devices
    variables = run.models[run.reported]
    class_names = list(info.class_names)
    columns = ["file", *class_names, "labels"]
    problems, rows = [], 0

    def load(path):
        try:
            image = image_files.read_image(path)
            image_files.check_image(image, run.data)
            return image_files.prepare_image(image, info), None
        except image_files.UnusableFile as e:
            return None, str(e)

    output = os.path.abspath(os.path.expanduser(output))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tmp = output + ".tmp"
    bar = tqdm(total=len(files), desc="predict", unit="img", dynamic_ncols=True,
               disable=not (progress_bar and parallel.is_main_process()))
    try:
        # Decoding and resizing release the GIL (TF kernels, tifffile's codecs): a thread pool overlaps them.
        workers = min(8, os.cpu_count() or 1)
        with open(tmp, "w", newline="") as f, concurrent.futures.ThreadPoolExecutor(workers) as pool:
            writer = csv.writer(f)
            writer.writerow(columns)
            for start in range(0, len(files), batch_size):
                chunk = files[start:start + batch_size]
                names, images = [], []
                for path, (image, problem) in zip(chunk, pool.map(load, chunk)):
                    name = os.path.relpath(path, folder) if folder else path
                    if problem is None:
                        names.append(name)
                        images.append(image)
                    else:
                        problems.append((name, problem))
                        reporting.log(f"skipped {name}: {problem}")
                if images:
                    probabilities = _predict_batch(run.exp.eval_step, variables, np.stack(images), batch_size, mesh)
                    for name, p in zip(names, probabilities):
                        writer.writerow([name, *(f"{v:.7g}" for v in p),
                                         ";".join(label_set(p, class_names, threshold, top_k))])
                    rows += len(images)
                bar.update(len(chunk))
        bar.close()
        if rows == 0:
            raise DatasetError(f"none of the {len(files)} input files could be predicted; "
                               f"{_describe_problems(problems)}")
        os.replace(tmp, output)
    finally:
        bar.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return Predictions(output=output, rows=rows, columns=columns, problems=problems)


def _predict_batch(eval_step, variables, images: np.ndarray, batch_size: int, mesh) -> np.ndarray:
    """Probabilities of up to `batch_size` images: padded with zero images to the full batch (one compiled shape,
    split evenly over the devices), the padding dropped."""
    n = len(images)
    if n < batch_size:
        images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]), images.dtype)])
    sharded = parallel.shard_batch({"image": images}, mesh)["image"]
    return np.asarray(parallel.to_host(eval_step(variables, sharded)))[:n]


def _describe_problems(problems, shown: int = 10) -> str:
    lines = [f"{name}: {reason}" for name, reason in problems[:shown]]
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} file{'s' if len(problems) != 1 else ''} left out:\n  " + "\n  ".join(lines) + more


def predict_command(workdir: str, config, input_pattern: str, output: str | None, threshold: float,
                    top_k: int) -> Predictions:
    """`--mode=predict`: loads the run, predicts, prints where the CSV is and which files were left out."""
    if not input_pattern:
        raise ConfigError("--mode=predict needs --input: a folder, an image file or a glob pattern of the images.")
    run = load_run(workdir, config)
    output = output or os.path.join(run.workdir, "predictions.csv")
    reporting.log(f"Predicting with the {run.reported} of {run.workdir} (epoch {run.epoch}, "
                  f"{run.data.info.name}, {run.data.info.num_classes} classes, input "
                  f"{'x'.join(map(str, run.data.info.image_shape))}) on {run.exp.mesh.devices.size} device(s)")
    result = predict_files(run, input_pattern, output, threshold, top_k, bool(run.config.log.progress_bar))
    reporting.log(f"Wrote {result.rows} rows to {result.output}")
    if result.problems:
        reporting.log(_describe_problems(result.problems))
    return result


# -- re-evaluating ------------------------------------------------------------------------------------------------

def evaluate_run(run: TrainedRun, split: str = "test") -> dict:
    """Metrics of the run's final models (student and teacher) on a whole split of its dataset, as results.json
    holds them: {model: metrics.compute_metrics(...)}. Prepares the dataset from manual_dir when needed."""
    config = run.config
    if split not in input_pipeline.SPLITS:
        raise ConfigError(f"--split={split!r} is not valid; valid splits: {list(input_pipeline.SPLITS)}")
    builder = input_pipeline.get_builder(config.dataset)
    prepare.prepare(builder, config.dataset, log=reporting.log)
    info = input_pipeline.dataset_info(builder, config.dataset)
    stored = run.data.info
    if (info.class_names, info.num_examples, info.image_shape) != (stored.class_names, stored.num_examples,
                                                                   stored.image_shape):
        raise DatasetError(
            f"the prepared dataset {builder.info.full_name} in {builder.data_dir_root} is not the one the run was "
            f"trained on (split sizes {info.num_examples} vs {stored.num_examples}, input {info.image_shape} vs "
            f"{stored.image_shape}). Point --config.dataset.data_dir at the data the run used.")
    parallel.check_batch_size(config.eval_batch_size, run.exp.mesh, "eval_batch_size")
    pipeline = input_pipeline.InputPipeline(builder, config, info, jax.process_index(), jax.process_count())
    return evaluate.evaluate(run.exp.eval_step, run.models, pipeline, split, run.exp.mesh,
                             config.eval.empty_class_ap)


def metrics_table(per_model: dict, reported: str) -> str:
    """A plain-text table: one row per metric, one column per model (the reported one marked with '*')."""
    names = list(per_model)
    header = ["metric", *(f"{n}*" if n == reported else n for n in names)]
    rows = [[key, *("-" if per_model[n].get(key) is None else f"{per_model[n][key]:.4f}" for n in names)]
            for key in TABLE_METRICS]
    rows.append(["num_images", *(str(per_model[n]["num_images"]) for n in names)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def eval_command(workdir: str, config, split: str) -> dict:
    """`--mode=eval`: re-evaluates the finished run on a split and prints the metrics table."""
    run = load_run(workdir, config)
    per_model = evaluate_run(run, split)
    reporting.log(f"{split} split of {run.data.info.name}, final models of {run.workdir} (epoch {run.epoch}; "
                  f"* = reported model):\n{metrics_table(per_model, run.reported)}")
    return per_model
