"""Checkpoints that carry what is needed to rebuild their networks.

Every network derives from :class:`Configurable`, which records the arguments it was built with. A
checkpoint stores, for each named network, its ``class_path`` and ``init_args`` beside its weights, so
generation and preprocessing rebuild the networks without the training modules. Two containers are
read: a ``.safetensors`` file written by :func:`save_networks` (configs in its metadata), and a
Lightning ``.ckpt`` whose ``"lvmm_networks"`` entry the stage modules write; the latter is read with
``torch.load(weights_only=True)``. Only classes under the ``lvmm`` package are ever instantiated.
"""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

ALLOWED_PREFIX = "lvmm."


class Configurable:
    """Mixin that records a module's constructor arguments in ``self.config``.

    Subclasses are plain ``nn.Module``s; the arguments are captured around ``__init__``, so the
    recorded config is exactly what rebuilds the module.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        def wrapped(self, *args, __init=init, __sig=signature, **kw):
            bound = __sig.bind(self, *args, **kw)
            bound.apply_defaults()
            args_dict = {k: v for k, v in bound.arguments.items() if k != "self"}
            # Only the outermost __init__ (the concrete class) sets the config.
            if getattr(self, "_lvmm_config_depth", 0) == 0:
                object.__setattr__(self, "_lvmm_config", {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": _jsonable(args_dict)})
            object.__setattr__(self, "_lvmm_config_depth", getattr(self, "_lvmm_config_depth", 0) + 1)
            try:
                __init(self, *args, **kw)
            finally:
                object.__setattr__(self, "_lvmm_config_depth", getattr(self, "_lvmm_config_depth") - 1)

        wrapped.__signature__ = signature
        wrapped.__doc__ = init.__doc__
        cls.__init__ = wrapped

    @property
    def config(self) -> dict:
        """``{"class_path": ..., "init_args": {...}}`` that rebuilds this module."""
        return json.loads(json.dumps(self._lvmm_config))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Configurable):
        return value.config
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"constructor argument of type {type(value).__name__} cannot be recorded in a checkpoint")


def build(config: Mapping) -> nn.Module:
    """Instantiate ``{"class_path", "init_args"}``; nested configs are built recursively."""
    class_path = config["class_path"]
    if not class_path.startswith(ALLOWED_PREFIX):
        raise ValueError(f"refusing to build {class_path!r}: only classes under 'lvmm.' are allowed")
    module_name, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    args = {k: build(v) if isinstance(v, Mapping) and "class_path" in v else v for k, v in config.get("init_args", {}).items()}
    return cls(**args)


def save_networks(path: str | Path, networks: Mapping[str, nn.Module], extra: Mapping | None = None) -> Path:
    """Write the networks' weights and configs to one ``.safetensors`` file (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, net in networks.items() for k, v in net.state_dict().items()}
    meta = {"lvmm_networks": json.dumps({n: net.config for n, net in networks.items()}), "lvmm_extra": json.dumps(dict(extra or {}))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the networks it describes."""


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """Return ``(network configs, flat state dict, extra)`` from a ``.safetensors`` or ``.ckpt`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "lvmm_networks" not in meta:
            raise CheckpointError(f"{path}: not an LVMM network file (no 'lvmm_networks' metadata)")
        return json.loads(meta["lvmm_networks"]), load_file(str(path)), json.loads(meta.get("lvmm_extra", "{}"))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint ({e})") from e
    if "lvmm_networks" not in ckpt:
        raise CheckpointError(f"{path}: no 'lvmm_networks' entry; was it written by an LVMM stage module?")
    return ckpt["lvmm_networks"], ckpt["state_dict"], ckpt.get("lvmm_extra", {})


def load_networks(path: str | Path, names: list[str] | None = None, prefix: str = "", map_location="cpu") -> dict[str, nn.Module]:
    """Rebuild the named networks of a checkpoint and load their weights strictly.

    ``prefix`` is the attribute path of the networks inside the state dict (e.g. ``"ema."``); a
    mismatch raises :class:`CheckpointError` naming the first differing keys and shapes.
    """
    configs, state, _ = read_checkpoint(path)
    names = names or list(configs)
    nets = {}
    for name in names:
        if name not in configs:
            raise CheckpointError(f"{path}: has no network {name!r} (it has {sorted(configs)})")
        net = build(configs[name])
        key = f"{prefix}{name}."
        sub = {k[len(key):]: v for k, v in state.items() if k.startswith(key)}
        check_state_dict(net, sub, f"{path} [{name}]")
        net.load_state_dict(sub, strict=True)
        nets[name] = net.to(map_location).eval()
    return nets


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], where: str, show: int = 5) -> None:
    """Raise a :class:`CheckpointError` naming the first missing, unexpected or mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {missing[:show]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:show]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches, first: {shapes[:show]}")
        raise CheckpointError(f"{where}: state dict does not match the model: " + "; ".join(parts))
