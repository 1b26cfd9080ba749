"""Config helpers: `get_config(arg)` argument parsing, override-key checking and validation with clear errors."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re

import ml_collections

from adagc_jax.errors import ConfigError


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """'method=an,seed=1' -> ConfigDict(method='an', seed=1, <other defaults>): the typed argument of a config file's
    `get_config(arg)` (big_vision's configs/common.py style).

    The defaults define both the valid names and their types: a value is converted to its default's type (bool
    accepts True/False/1/0), an unknown name or an unconvertible value is a ConfigError listing the valid ones.
    """
    args = ml_collections.ConfigDict(dict(defaults))
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(f"config argument {item!r} is not of the form key=value (in {arg!r})")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in defaults:
            raise ConfigError(f"unknown config argument {key!r} in {arg!r}; valid arguments: "
                              + ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()))
        args[key] = _convert(key, value, defaults[key])
    return args


def _convert(key: str, value: str, default):
    kind = type(default)
    try:
        if kind is bool:
            if value not in ("True", "False", "1", "0", "true", "false"):
                raise ValueError(value)
            return value in ("True", "1", "true")
        if kind in (int, float):
            return kind(ast.literal_eval(value))
        return value
    except (ValueError, SyntaxError, TypeError):
        raise ConfigError(f"config argument {key}={value!r} is not a {kind.__name__} "
                          f"(default {default!r})") from None


def lookup(registry, name, key: str):
    """registry[name], or a ConfigError naming the config key and listing the valid names (in registry order).

    The one lookup by name of the project: methods, models, datasets, optimizers, schedules, GC modes, trigger
    rules and signals, noise types.
    """
    if name not in registry:
        raise ConfigError(f"{key}={name!r} is not valid; valid values: {list(registry)}")
    return registry[name] if isinstance(registry, dict) else name


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(flat_keys(value, path + "."))
        else:
            keys.append(path)
    return keys


def _resolve(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return False
        node = node[part]
    return True


def set_keys(config, values: dict) -> None:
    """Sets dotted keys ('optimizer.learning_rate' -> value) in place, as --config.<key>=<value> would; an unknown
    key is a ConfigError that lists the valid ones."""
    for dotted, value in values.items():
        if not _resolve(config, dotted):
            raise ConfigError(unknown_key_message(config, dotted))
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value


def unknown_key_message(config, key: str) -> str:
    valid = flat_keys(config)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (f"unknown config key {key!r}.{hint}\nValid keys:\n  " + "\n  ".join(valid))


def load_config_file(spec: str):
    """Loads 'path/to/file.py[:arg]' the way ml_collections' config_flags does, returning the ConfigDict."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location("_adagc_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


_OVERRIDE = re.compile(r"^--config\.([A-Za-z0-9_.]+)(=.*)?$")


def check_overrides(argv: list[str]) -> None:
    """Fails with a clear message (listing the valid keys) on any `--config.<key>` the config file lacks.

    Runs before absl parses the flags, whose own error for an unknown key is a bare traceback.
    """
    spec = None
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            spec = a.split("=", 1)[1]
        elif a == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
    if spec is None:
        return
    config = load_config_file(spec)
    for a in argv:
        m = _OVERRIDE.match(a)
        if m and not _resolve(config, m.group(1)):
            raise ConfigError(unknown_key_message(config, m.group(1)))
