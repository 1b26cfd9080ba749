"""Entry point: python launch.py --config configs/<file>.py[:args] --workdir <dir> [--config.<key>=<value> ...]

No logic here: flags in, adagc_jax.cli.run out (ARCHITECTURE.md style rule 1).
"""

import os
import sys

# TensorFlow only feeds data here: silence its C++ start-up chatter (a user's own setting wins).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from adagc_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:args]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, plots and results.json.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (multi-host TPU/GPU).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show the traceback of user errors too (also: ADAGC_DEBUG=1).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    sys.exit(cli.run(_CONFIG.value, _WORKDIR.value, _MULTIHOST.value, _DEBUG.value))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
