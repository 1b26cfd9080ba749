r"""Benchmark: every method of METHOD.md section 8 (or a selection), several seeds, one after another, one table.

    python launch.py --config configs/benchmark.py:dataset=synthetic_scenes,noise=random,seeds=3 --workdir runs/bench
    python launch.py --config configs/benchmark.py:methods=an+role+ll_r,epochs=5 --workdir runs/bench_short

Arguments (comma-separated key=value after the colon):
  config    the training config every run uses: default (default) | synthetic_memorization |
            synthetic_memorization_fast | aid_multilabel | reben (configs/<name>.py)
  dataset   shorthand for config: synthetic_scenes (= default) | aid_multilabel | reben
  noise     'random' (default) | 'dominant'
  seeds     number of seeds per method (default 1): seed, seed+1, ...
  seed      the first seed (default 0)
  methods   'all' (default: METHOD.md section 8's order) or names joined by '+', e.g. an+role+gr
  epochs    num_epochs of every run (default: the dataset config's)
  cpu, split, subset   passed to the dataset's config (aid_multilabel / reben)
Every other key is the dataset config's and applies to every run: --config.<key>=<value> (e.g.
--config.losses.ll_r.delta_rel=0.003). `benchmark.methods` and `benchmark.seeds` can also be set that way.

Each run trains in <workdir>/<method>/seed_<s> exactly as `launch.py --config <dataset config>:method=<m>,seed=<s>`
would: it resumes from its checkpoints if interrupted, and a finished run (results.json present) is not trained
again (its saved config must agree with the current one). After every run, <workdir>/results.md and results.csv
gather test mAP (mean +- std over seeds), val mAP, micro/macro F1 and per-class AP of the reported model.

Expected runtime: the sum of the runs; on synthetic_scenes about 5 minutes per run on 2 CPU cores (configs/default.py),
so 15 methods x 3 seeds is about 4 hours there. Measured tables (synthetic_scenes, random and dominant, 3 seeds):
docs/benchmark_synthetic.md.
"""

import importlib

import ml_collections

from adagc_jax import config_utils
from configs import common

TRAINING_CONFIGS = ("default", "synthetic_memorization", "synthetic_memorization_fast", "aid_multilabel", "reben")
DATASET_CONFIGS = {"synthetic_scenes": "default", "aid_multilabel": "aid_multilabel", "reben": "reben"}


def get_config(arg=None):
    args = common.parse_arg(arg, config="", dataset="", noise="random", seeds=1, seed=0, methods="all", epochs=-1,
                            cpu=False, split="", subset=-1.0)
    if args.config and args.dataset:
        raise config_utils.ConfigError("give either config=... or dataset=..., not both")
    name = args.config or config_utils.lookup(DATASET_CONFIGS, args.dataset or "synthetic_scenes", "dataset")
    config_utils.lookup(TRAINING_CONFIGS, name, "config")
    if args.seeds < 1:
        raise config_utils.ConfigError(f"{__file__}: seeds must be >= 1, got {args.seeds}")

    # Forward what was given to the training config (which rejects an argument it does not take).
    forwarded = {"noise": args.noise, "epochs": args.epochs if args.epochs > 0 else None,
                 "cpu": int(args.cpu) if args.cpu else None, "split": args.split or None,
                 "subset": args.subset if args.subset > 0 else None}
    arg_string = ",".join(f"{k}={v}" for k, v in forwarded.items() if v is not None)
    c = importlib.import_module(f"configs.{name}").get_config(arg_string)
    c.unlock()
    c.runner = "sweep"
    c.seed = args.seed
    c.benchmark = ml_collections.ConfigDict({
        # Method names (METHOD.md section 8) in table order; ('all',) = every method. Checked by the runner.
        "methods": tuple(m.strip() for m in args.methods.split("+") if m.strip()),
        "seeds": tuple(range(args.seed, args.seed + args.seeds)),
    })
    c.lock()
    return c
