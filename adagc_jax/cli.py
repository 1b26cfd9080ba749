"""What launch.py runs: flag parsing that reports unknown config keys clearly, and friendly top-level errors."""

from __future__ import annotations

import sys

from absl import flags

from adagc_jax import config_utils, input_pipeline, parallel

# Errors whose message says everything the user needs: printed without a traceback.
_USER_ERRORS = {
    config_utils.ConfigError: ("config error", 2),
    parallel.DeviceConfigError: ("device error", 2),
    input_pipeline.DatasetError: ("dataset error", 3),
}


def parse_flags(argv):
    """absl's parser, preceded by a check of every --config.<key> against the config file's keys."""
    try:
        config_utils.check_overrides(argv[1:])
    except config_utils.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"flag error: {e}\nUsage: python launch.py --config configs/<file>.py --workdir <dir> "
              "[--config.<key>=<value> ...]", file=sys.stderr)
        sys.exit(2)


def run(config, workdir: str, multihost: bool = False) -> int:
    """Trains and evaluates (one run, or the benchmark's runs when the config has a `benchmark` block); returns the
    process exit code."""
    from absl import logging

    from adagc_jax import train  # after flag parsing: importing jax/TF is slow

    # Orbax and TFDS log every save/read at INFO through absl, and TFDS repeats a deprecation WARNING of its own
    # internals for every feature; the run prints its own one line per epoch and raises real problems as errors.
    logging.set_verbosity(logging.ERROR)

    if multihost:
        import jax
        jax.distributed.initialize()
    errors = dict(_USER_ERRORS)
    errors[train.NonFiniteLossError] = ("training stopped", 4)
    try:
        if "benchmark" in config:  # configs/benchmark.py: every selected method and seed, then one table
            from adagc_jax import benchmark
            benchmark.run(config, workdir)
        else:
            train.train_and_evaluate(config, workdir)
    except tuple(errors) as e:
        label, code = next(v for k, v in errors.items() if isinstance(e, k))
        print(f"\n{label}: {e}", file=sys.stderr)
        return code
    except ValueError as e:
        # Unknown names raised by the library (methods, models, modes...) list the valid ones already.
        if "valid" in str(e):
            print(f"\nconfig error: {e}", file=sys.stderr)
            return 2
        raise
    return 0
