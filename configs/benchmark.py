r"""Benchmark: every method of METHOD.md section 8 (or a selection), several seeds, one after another, one table.

    python launch.py --config configs/benchmark.py:dataset=synthetic_scenes,noise=random,seeds=3 --workdir runs/bench
    python launch.py --config configs/benchmark.py:methods=an+role+ll_r,epochs=5 --workdir runs/bench_short

Arguments (comma-separated key=value after the colon):
  dataset   synthetic_scenes (configs/default.py, default) | aid_multilabel | reben (their configs' settings)
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

DATASET_CONFIGS = {"synthetic_scenes": "configs.default", "aid_multilabel": "configs.aid_multilabel",
                   "reben": "configs.reben"}
ARGS = ("dataset", "noise", "seeds", "seed", "methods", "epochs", "cpu", "split", "subset")


def get_config(arg=None):
    args = config_utils.parse_arg(arg)
    config_utils.check_arg_keys(args, ARGS, __file__)
    dataset = args.pop("dataset", "synthetic_scenes")
    config_utils.choice(dataset, sorted(DATASET_CONFIGS), "dataset")
    num_seeds, first_seed = int(args.pop("seeds", 1)), int(args.pop("seed", 0))
    if num_seeds < 1:
        raise config_utils.ConfigError(f"{__file__}: seeds must be >= 1, got {num_seeds}")
    selected = str(args.pop("methods", "all"))

    module = importlib.import_module(DATASET_CONFIGS[dataset])
    forwarded = ",".join(f"{k}={v}" for k, v in args.items())  # noise, epochs and the dataset config's own
    c = module.get_config(forwarded or None)
    c.unlock()
    c.seed = first_seed
    c.benchmark = ml_collections.ConfigDict({
        # Method names (METHOD.md section 8) in table order; ('all',) = every method. Checked by the runner.
        "methods": tuple(m.strip() for m in selected.split("+") if m.strip()),
        "seeds": tuple(range(first_seed, first_seed + num_seeds)),
    })
    c.lock()
    return c
