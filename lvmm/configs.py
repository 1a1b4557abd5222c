"""Training configs as files: a config may name ``__base__`` files that it is merged over.

``python tools/train.py fit --config FILE`` hands Lightning one ``--config`` per file of the chain, bases
first; jsonargparse merges them in that order, so a dataset's file holds only what differs from its base.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

BASE_KEY = "__base__"


def config_chain(path: str | os.PathLike, _seen: tuple = ()) -> list[tuple[Path, dict]]:
    """The files a config is made of, bases first, each as ``(path, mapping without __base__)``."""
    path = Path(path)
    if path in _seen:
        raise SystemExit(f"error: {path}: circular {BASE_KEY}")
    if not path.is_file():
        raise SystemExit(f"error: config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"error: {path}: a config must be a mapping")
    bases = data.pop(BASE_KEY, None) or []
    chain: list[tuple[Path, dict]] = []
    for base in [bases] if isinstance(bases, str) else bases:
        chain += config_chain(path.parent / base, _seen + (path,))
    return chain + [(path, data)]


def merge_configs(base: dict, over: dict) -> dict:
    """``over`` merged over ``base``: mappings key by key (recursively), anything else replaced (as jsonargparse)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            merge_configs(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def merged_config(path: str | os.PathLike) -> dict:
    """The config at ``path`` with its ``__base__`` chain merged into one mapping (bases first)."""
    out: dict = {}
    for _, data in config_chain(path):
        out = merge_configs(out, data)
    return out


def expand_config_args(args: list[str]) -> list[str]:
    """Replace ``--config FILE`` by one ``--config`` per file of its ``__base__`` chain (bases first).

    Files without ``__base__`` are passed through as paths; files with one are passed as their YAML
    text without the key (jsonargparse takes either).
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value = None
        if arg == "--config" and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        chain = config_chain(value) if Path(value).suffix in (".yaml", ".yml") else None
        if not chain or len(chain) == 1:
            out += ["--config", value]
            continue
        for _, data in chain:
            out += ["--config", yaml.safe_dump(data, sort_keys=False)]
    return out
