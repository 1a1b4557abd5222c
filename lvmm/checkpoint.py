"""Checkpoints that carry what is needed to rebuild their networks.

Every network derives from :class:`Configurable`, which records the arguments it was built with. A
checkpoint stores, for each named network, its ``class_path`` and ``init_args`` beside its weights, so
generation and preprocessing rebuild the networks without the training modules. Two containers are
read: a ``.safetensors`` file written by :func:`save_networks` (configs in its metadata), and a
Lightning ``.ckpt`` whose ``"lvmm_networks"`` entry the stage modules write; the latter is read with
``torch.load(weights_only=True)``.

A checkpoint is untrusted input. :func:`build` instantiates only :class:`Configurable` network classes
defined in the ``lvmm`` package, checks every nesting level before it calls anything, and builds the
network on the meta device first so that an absurd size is refused before memory is allocated;
:func:`load_networks` also compares the shapes with the stored tensors before allocating. Every
malformed file raises :class:`CheckpointError` naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvmm.media import atomic_write

ALLOWED_PREFIX = "lvmm."
MAX_NETWORK_ELEMENTS = 4_000_000_000
"""Parameters and buffers a network built from a config may hold (16 GB in float32): an LVMM config asks
for far fewer, a crafted one for more is refused before anything is allocated."""
MAX_NESTING = 8  # nested class_path levels a config may have

_CLASS_PATH = re.compile(r"lvmm(\.[A-Za-z_][A-Za-z0-9_]*)+")


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
                object.__setattr__(
                    self,
                    "_lvmm_config",
                    {
                        "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
                        "init_args": _jsonable(args_dict),
                    },
                )
            object.__setattr__(self, "_lvmm_config_depth", getattr(self, "_lvmm_config_depth", 0) + 1)
            try:
                __init(self, *args, **kw)
            finally:
                object.__setattr__(self, "_lvmm_config_depth", self._lvmm_config_depth - 1)

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


def network_class(class_path) -> type:
    """The :class:`Configurable` ``nn.Module`` class named ``class_path``; raises :class:`CheckpointError` otherwise.

    The name must be ``lvmm.<module>.<Class>`` with plain identifiers, the module one of the project's,
    and the object a class defined there under that name (not a function, a module or a re-export).
    """
    if not isinstance(class_path, str) or not _CLASS_PATH.fullmatch(class_path):
        raise CheckpointError(
            f"refusing to build {class_path!r}: only LVMM network classes ('lvmm.<module>.<Class>') are allowed"
        )
    module_name, _, name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise CheckpointError(f"refusing to build {class_path!r}: no module {module_name!r} in the project") from e
    cls = vars(module).get(name)
    ok = (
        isinstance(cls, type)
        and issubclass(cls, Configurable)
        and issubclass(cls, nn.Module)
        and cls.__module__ == module_name
        and cls.__qualname__ == name
    )
    if not ok:
        raise CheckpointError(f"refusing to build {class_path!r}: not an LVMM network class (Configurable nn.Module)")
    return cls


def _is_config(value) -> bool:
    return isinstance(value, Mapping) and "class_path" in value


def _check_config(config, depth: int = 0) -> None:
    """Validate a whole config tree (class, argument names and value types) before anything is called."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"config nested deeper than {MAX_NESTING} levels")
    if not _is_config(config):
        raise CheckpointError(f"not a network config (a mapping with 'class_path'): {str(config)[:80]!r}")
    cls = network_class(config["class_path"])
    args = config.get("init_args", {})
    if not isinstance(args, Mapping):
        raise CheckpointError(f"{config['class_path']}: init_args must be a mapping, not {type(args).__name__}")
    try:
        inspect.signature(cls.__init__).bind(None, **args)
    except TypeError as e:
        raise CheckpointError(f"{config['class_path']}: init_args do not fit the constructor ({e})") from None

    def check_value(v, d):
        if _is_config(v):
            _check_config(v, depth + 1)
        elif isinstance(v, Mapping):
            for x in v.values():
                check_value(x, d + 1)
        elif isinstance(v, (list, tuple)):
            if d > MAX_NESTING:
                raise CheckpointError("init_args nested too deeply")
            for x in v:
                check_value(x, d + 1)
        elif not (isinstance(v, (str, int, float, bool)) or v is None):
            raise CheckpointError(f"{config['class_path']}: argument of type {type(v).__name__} is not allowed")

    for v in args.values():
        check_value(v, 0)


def _construct(config: Mapping) -> nn.Module:
    cls = network_class(config["class_path"])
    args = {k: _construct(v) if _is_config(v) else v for k, v in config.get("init_args", {}).items()}
    return cls(**args)


def _numel(module: nn.Module) -> int:
    return sum(t.numel() for t in module.parameters()) + sum(b.numel() for b in module.buffers())


def build_meta(config: Mapping) -> nn.Module:
    """Validate ``config`` and build it on the meta device (shapes only, no memory); checks its size."""
    _check_config(config)
    try:
        with torch.device("meta"):
            net = _construct(config)
    except CheckpointError:
        raise
    except Exception as e:  # a bad value the signature check cannot see (a negative width, ...)
        raise CheckpointError(f"{config['class_path']}: cannot build from its config ({type(e).__name__}: {e})") from e
    n = _numel(net)
    if n > MAX_NETWORK_ELEMENTS:
        raise CheckpointError(
            f"{config['class_path']}: its config asks for {n:,} parameters and buffers "
            f"(more than {MAX_NETWORK_ELEMENTS:,}); refusing to allocate it"
        )
    return net


def build(config: Mapping) -> nn.Module:
    """Instantiate ``{"class_path", "init_args"}`` (nested configs recursively) after validating all of it.

    Only :class:`Configurable` network classes of the ``lvmm`` package are built, at every level; the
    size is checked on the meta device first. Raises :class:`CheckpointError` otherwise.
    """
    build_meta(config)
    try:
        return _construct(config)
    except Exception as e:
        raise CheckpointError(f"{config['class_path']}: cannot build from its config ({type(e).__name__}: {e})") from e


def save_networks(path: str | Path, networks: Mapping[str, nn.Module], extra: Mapping | None = None) -> Path:
    """Write the networks' weights and configs to one ``.safetensors`` file (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {
        f"{name}.{k}": v.detach().cpu().contiguous()
        for name, net in networks.items()
        for k, v in net.state_dict().items()
    }
    meta = {
        "lvmm_networks": json.dumps({n: net.config for n, net in networks.items()}),
        "lvmm_extra": json.dumps(dict(extra or {})),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the networks it describes."""


def _json_field(path: Path, meta: Mapping, name: str, default: str | None = None) -> dict:
    text = meta.get(name, default)
    if text is None:
        raise CheckpointError(f"{path}: not an LVMM network file (no {name!r} metadata)")
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata {name!r} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: metadata {name!r} must be a JSON object, not {type(value).__name__}")
    return value


def load_checkpoint_dict(path: str | Path) -> dict:
    """A Lightning ``.ckpt`` (or any ``torch.save`` dict) read safely: ``torch.load(weights_only=True)`` on the CPU.

    Raises :class:`CheckpointError` naming the file for a truncated or foreign file, one that would need
    unpickling code, or one that holds something other than a dict."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file, or one that needs unpickling code
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e)[:300]})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint dict (holds a {type(ckpt).__name__})")
    return ckpt


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """Return ``(network configs, flat state dict, extra)`` from a ``.safetensors`` or ``.ckpt`` file.

    Raises :class:`CheckpointError` naming the file for anything malformed: a truncated or foreign file,
    bad JSON metadata, a missing ``state_dict`` or entries of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            configs = _json_field(path, meta, "lvmm_networks")
            extra = _json_field(path, meta, "lvmm_extra", "{}")
            state = load_file(str(path))
        except CheckpointError:
            raise
        except Exception as e:  # SafetensorError, OSError: truncated or not a safetensors file
            raise CheckpointError(f"{path}: cannot read safetensors file ({type(e).__name__}: {e})") from None
    else:
        ckpt = load_checkpoint_dict(path)
        if "lvmm_networks" not in ckpt:
            raise CheckpointError(f"{path}: no 'lvmm_networks' entry; was it written by an LVMM stage module?")
        if "state_dict" not in ckpt:
            raise CheckpointError(f"{path}: no 'state_dict' entry")
        configs, state, extra = ckpt["lvmm_networks"], ckpt["state_dict"], ckpt.get("lvmm_extra", {})
    if not isinstance(configs, dict) or not isinstance(extra, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'lvmm_networks', 'lvmm_extra' and 'state_dict' must be dicts")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries that are not tensors, first: {bad[:5]}")
    return configs, state, extra


def check_hyperparameters(path: str | Path) -> None:
    """Refuse a Lightning checkpoint whose hyper-parameters name classes outside the project.

    Lightning's CLI (``fit --ckpt_path``) imports the classes named in a checkpoint's
    ``hyper_parameters``; this runs first and imports nothing outside ``lvmm``: every ``class_path``
    (and ``_class_path``) at any depth must be an LVMM ``LightningModule`` or network class.
    """
    import pytorch_lightning as pl

    path = Path(path)
    ckpt = load_checkpoint_dict(path)

    def check(value, depth=0):
        if depth > 4 * MAX_NESTING:
            raise CheckpointError(f"{path}: hyper-parameters nested too deeply")
        if isinstance(value, Mapping):
            for k, v in value.items():
                if k in ("class_path", "_class_path"):
                    if not isinstance(v, str) or not _CLASS_PATH.fullmatch(v):
                        raise CheckpointError(f"{path}: hyper-parameters name {v!r}; only LVMM classes are allowed")
                    module_name, _, name = v.rpartition(".")
                    try:
                        cls = vars(importlib.import_module(module_name)).get(name)
                    except ImportError:
                        cls = None
                    allowed = (
                        isinstance(cls, type)
                        and cls.__module__ == module_name
                        and (
                            issubclass(cls, pl.LightningModule)
                            or (issubclass(cls, Configurable) and issubclass(cls, nn.Module))
                        )
                    )
                    if not allowed:
                        raise CheckpointError(
                            f"{path}: hyper-parameters name {v!r}, which is not an LVMM module or network class"
                        )
                else:
                    check(v, depth + 1)
        elif isinstance(value, (list, tuple)):
            for v in value:
                check(v, depth + 1)

    check(ckpt.get("hyper_parameters", {}))


def load_networks(
    path: str | Path, names: list[str] | None = None, prefix: str = "", map_location="cpu"
) -> dict[str, nn.Module]:
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
        where = f"{path} [{name}]"
        try:
            meta = build_meta(configs[name])
        except CheckpointError as e:
            raise CheckpointError(f"{where}: {e}") from None
        key = f"{prefix}{name}."
        sub = {k[len(key) :]: v for k, v in state.items() if k.startswith(key)}
        check_state_dict(meta, sub, where)  # shapes against the stored tensors before any allocation
        del meta
        net = build(configs[name])
        net.load_state_dict(sub, strict=True)
        nets[name] = net.to(map_location).eval()
    return nets


_HASH_CHUNK_BYTES = 1 << 20
# Containers some training scripts wrap their weights in.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
# Prefix added by nn.DataParallel / DistributedDataParallel.
_PARALLEL_PREFIX = "module."


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, what: str, source: str, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a flat tensor dict of a network's weights from ``.safetensors`` or a ``torch.save`` file, safely.

    The one reader of third-party weight files (the metric networks, ImageBind, VGG). ``what`` names the network
    in errors, ``source`` says where users obtain the file. ``torch.save`` files are read with
    ``weights_only=True``; with ``mmap`` memory-mapped where their format allows (a 4.8 GB file is not copied
    twice). A container (``state_dict``, ``model``, ...) is unwrapped, as is DataParallel's ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} weights not found. {source}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError:
                if not mmap:
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except Exception as e:  # truncated, foreign or pickled-object files
        raise CheckpointError(f"{path}: cannot read {what} weights ({type(e).__name__}: {e})") from e
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: {what} weights are not a flat dict of tensors")
    if state and all(k.startswith(_PARALLEL_PREFIX) for k in state):
        state = {k[len(_PARALLEL_PREFIX) :]: v for k, v in state.items()}
    return dict(state)


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], where: str, show: int = 5) -> None:
    """Raise a :class:`CheckpointError` naming the first missing, unexpected or mis-shaped keys.

    Keys that a submodule renames on loading (a ``rename_legacy_keys(state, prefix)`` method, as
    :class:`lvmm.nets.layers.ResBlock` has for older checkpoints) are compared under their new names."""
    own = module.state_dict()
    state = dict(state)
    for name, sub in module.named_modules():
        if hasattr(sub, "rename_legacy_keys"):
            sub.rename_legacy_keys(state, f"{name}." if name else "")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {missing[:show]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:show]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches, first: {shapes[:show]}")
        raise CheckpointError(f"{where}: state dict does not match the model: " + "; ".join(parts))
