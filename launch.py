"""Entry point: python launch.py --config configs/<file>.py[:args] --workdir <dir> [--config.<key>=<value> ...]

Also, on a finished run: --mode=predict --input=<folder|file|glob> [--output=predictions.csv] (docs/predict.md)
and --mode=eval [--split=test]; there --config is optional (the run's own config.json is used).

No logic here: flags in, adagc_jax.cli.run out (ARCHITECTURE.md style rule 1).
"""

import os
import sys

# TensorFlow only feeds data here: silence its C++ start-up chatter (a user's own setting wins).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from adagc_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:args]); required "
                                          "for --mode=train.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, plots and results.json.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Join a multi-process job whose cluster JAX detects (Cloud TPU, "
                                "SLURM, Kubernetes): jax.distributed.initialize() first. docs/scaling.md")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "A manual multi-process job: HOST:PORT of process 0 "
                                   "(with --num_processes and --process_id on every process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "A manual multi-process job: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "A manual multi-process job: this process's id, 0..N-1.")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout", 30, "Multi-process jobs: seconds without a heartbeat after "
                                  "which a lost process fails the job (the last checkpoint is kept).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show the traceback of user errors too (also: ADAGC_DEBUG=1).")
_MODE = flags.DEFINE_enum("mode", "train", cli.MODES, "train: train the run; predict: predict new images with the "
                          "finished run in --workdir; eval: re-evaluate it on --split.")
_INPUT = flags.DEFINE_string("input", None, "--mode=predict: a folder (searched recursively), an image file or a "
                             "glob pattern of JPEG / PNG / TIFF images.")
_OUTPUT = flags.DEFINE_string("output", None, "--mode=predict: the CSV to write (default <workdir>/predictions.csv).")
_THRESHOLD = flags.DEFINE_float("threshold", 0.5, "--mode=predict: a class is in an image's label set when its "
                                "probability is >= this.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "--mode=predict: > 0 makes the label set the k most probable classes "
                              "instead (the threshold is not used).")
_SPLIT = flags.DEFINE_enum("split", "test", ("train", "validation", "test"), "--mode=eval: the split to evaluate.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    options = {"input": _INPUT.value, "output": _OUTPUT.value, "threshold": _THRESHOLD.value, "top_k": _TOP_K.value,
               "split": _SPLIT.value}
    cluster = {"coordinator_address": _COORDINATOR.value, "num_processes": _NUM_PROCESSES.value,
               "process_id": _PROCESS_ID.value, "heartbeat_timeout_s": _HEARTBEAT.value}
    sys.exit(cli.run(_CONFIG.value, _WORKDIR.value, _MULTIHOST.value, _DEBUG.value, _MODE.value, options, cluster))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
