"""Model packages and the one-call pipeline: ``LVMMPipeline.from_pretrained(folder)(image)``.

A **model package** is a folder that holds everything generation needs and nothing else:

* ``stage_one.safetensors`` (P, E/D, R) and ``stage_two.safetensors`` (the U-Net with its token
  statistics buffers): weights only, the networks' configs in the safetensors metadata, so each file
  also loads on its own (:func:`lvmm.checkpoint.read_checkpoint`);
* ``config.json``: the package format version, the LVMM version that wrote it, the weights' dtype and
  origin (EMA or raw), the networks' configs, the diffusion config, the latent scale, the token
  statistics, the training frame size, the frame counts and the ImageBind model it expects;
* ``README.md``: the model card; ``checksums.sha256``: the sha256 of every other file.

No optimizer state, no pickles, no absolute paths. Loading checks the format version and every file's
checksum first, and refuses a package with a :class:`PackageError` naming the file.

:class:`LVMMPipeline` wraps :class:`lvmm.animation.Animator` in the manner of diffusers' pipelines
(``from_pretrained``, ``save_pretrained``, ``torch_dtype``, ``device``, a per-step ``callback``) and
adds memory controls: seeds in groups of ``batch_size``, bf16 autocast on accelerators, ImageBind
kept off the accelerator except while it embeds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lvmm
from lvmm.animation import (
    DEFAULT_LOOP_GUIDANCE,
    LOOP_GUIDANCE_START,
    Animation,
    AnimationError,
    AnimationOptions,
    Animator,
)
from lvmm.checkpoint import CheckpointError, build, check_state_dict, file_sha256, load_checkpoint_dict
from lvmm.media import atomic_write_bytes

PACKAGE_FORMAT = "lvmm-model-package"
PACKAGE_FORMAT_VERSION = 1
"""Bump when the package layout changes; a package of another format version is refused."""
CONFIG_FILE = "config.json"
CHECKSUM_FILE = "checksums.sha256"
CARD_FILE = "README.md"
STAGE_FILES = {"stage_one": "stage_one.safetensors", "stage_two": "stage_two.safetensors"}
STAGE_NETWORKS = {"stage_one": ("flow", "vae", "renderer"), "stage_two": ("unet",)}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
IMAGEBIND_LICENCE = "CC BY-NC-SA 4.0"
TINY_IMAGEBIND_SEED = 0
"""Seed of the random tiny ImageBind that stands in for the official weights (tests and the demo)."""


class PackageError(CheckpointError):
    """A model package that cannot be used (missing or altered file, other format version); names the file."""


# ---------------------------------------------------------------------------------------------- sources


@dataclass
class StageWeights:
    """The networks of one stage as read from a checkpoint: configs, weights, and where they came from."""

    configs: dict[str, dict]
    state: dict[str, torch.Tensor]  # "<network>.<parameter>" -> tensor
    extra: dict = field(default_factory=dict)
    origin: str = "raw"  # "ema" when the weights are an exponential moving average
    frame_size: list[int] | None = None  # [H, W] of the training frames, when the checkpoint records it
    data: str | None = None  # the training data as the checkpoint records it (file names only)


def _frame_size(value) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return [int(value), int(value)]
    return [int(v) for v in value][:2]


def read_stage(path: str | Path, names: Sequence[str], ema: bool = True) -> StageWeights:
    """Read the named networks of a stage checkpoint (Lightning ``.ckpt`` or LVMM ``.safetensors``).

    A Lightning checkpoint written with ``EMAWeightAveraging`` holds the averaged weights in
    ``state_dict`` and the raw ones in ``current_model_state``: ``ema`` picks the average when it is
    there. Optimizer state and everything else outside the named networks is left behind.
    """
    from lvmm.checkpoint import read_checkpoint

    path = Path(path)
    origin, frame_size, data = "raw", None, None
    if path.suffix == ".safetensors":
        configs, state, extra = read_checkpoint(path)
        origin = extra.get("weights_origin", "raw")
    else:
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        ckpt = load_checkpoint_dict(path)
        if "lvmm_networks" not in ckpt:
            raise CheckpointError(f"{path}: no 'lvmm_networks' entry; was it written by an LVMM stage module?")
        configs, extra = ckpt["lvmm_networks"], ckpt.get("lvmm_extra", {})
        has_ema = "current_model_state" in ckpt
        state = ckpt["state_dict"] if (ema or not has_ema) else ckpt["current_model_state"]
        origin = "ema" if (ema and has_ema) else "raw"
        data_hp = ckpt.get("datamodule_hyper_parameters") or {}
        frame_size = _frame_size(data_hp.get("size"))
        data = _describe_data(data_hp)
    missing = [n for n in names if n not in configs]
    if missing:
        kind = next((k.replace("_", "-") for k, v in STAGE_NETWORKS.items() if tuple(names) == v), "matching")
        raise CheckpointError(
            f"{path}: has no network {missing[0]!r} (it has {sorted(configs)}); is it a {kind} checkpoint?"
        )
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] in names}
    frame_size = frame_size or _frame_size(extra.get("frame_size"))
    return StageWeights({n: configs[n] for n in names}, state, dict(extra), origin, frame_size, data)


def _describe_data(hp: Mapping) -> str | None:
    """``train_shards`` of a data module's hyper-parameters, reduced to file names (no directories)."""
    shards = hp.get("train_shards")
    if not shards:
        return None
    shards = [shards] if isinstance(shards, str) else list(shards)
    return "shards " + ", ".join(Path(str(s)).name for s in shards)


def build_networks(stage: StageWeights, where: str) -> dict[str, torch.nn.Module]:
    """Rebuild a stage's networks (only ``lvmm.`` classes) and load their weights strictly, as float32."""
    nets = {}
    for name, config in stage.configs.items():
        net = build(config)
        key = f"{name}."
        sub = {k[len(key) :]: v for k, v in stage.state.items() if k.startswith(key)}
        check_state_dict(net, sub, f"{where} [{name}]")
        net.load_state_dict(sub, strict=True)  # copies into the float32 parameters: fp16/bf16 files upcast
        nets[name] = net.eval()
    return nets


def generation_extra(stage_one: StageWeights, stage_two: StageWeights) -> dict:
    """What the Animator needs besides the weights: the stage-two extra without paths, plus the frame size."""
    extra = {k: v for k, v in stage_two.extra.items() if k != "motion_checkpoint"}
    size = extra.get("frame_size") or stage_one.frame_size or stage_two.frame_size
    if size is not None:
        extra["frame_size"] = [int(s) for s in size]
    return extra


def imagebind_spec(cond_dim: int) -> dict:
    """The ImageBind a stage-two model of condition size ``cond_dim`` expects."""
    from lvmm.imagebind.configs import resolve_config

    if cond_dim == resolve_config("tiny").out_embed_dim:
        return {
            "config": "tiny",
            "embedding_dim": cond_dim,
            "weights": None,
            "seed": TINY_IMAGEBIND_SEED,
            "note": (
                "a seeded random tiny ImageBind (no download; stands in for the official weights in tests and the demo)"
            ),
        }
    return {
        "config": "huge",
        "embedding_dim": cond_dim,
        "weights": "imagebind_huge.pth",
        "licence": IMAGEBIND_LICENCE,
        "note": "the official ImageBind huge weights (facebookresearch/ImageBind), downloaded by the user",
    }


# ---------------------------------------------------------------------------------------------- packages


def _write_safetensors(path: Path, stage: StageWeights, dtype: torch.dtype, extra: Mapping) -> None:
    from safetensors.torch import save

    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in stage.state.items()
    }
    meta = {"lvmm_networks": json.dumps(stage.configs), "lvmm_extra": json.dumps(dict(extra))}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _parameter_count(stage: StageWeights, name: str) -> int:
    return sum(v.numel() for k, v in stage.state.items() if k.startswith(f"{name}.") and v.is_floating_point())


def write_package(
    folder: str | Path,
    stage_one: StageWeights,
    stage_two: StageWeights,
    dtype: str = "fp32",
    imagebind: Mapping | None = None,
    trained_on: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> Path:
    """Write a model package (see the module docstring); returns the folder.

    ``trained_on`` describes each stage's training data for the model card; ``sources`` names the
    checkpoints it came from (file names only: no absolute paths go into a package).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra = generation_extra(stage_one, stage_two)
    if "diffusion" not in extra:
        raise CheckpointError("the stage-two checkpoint has no diffusion config; is it a stage-two checkpoint?")
    imagebind = dict(imagebind or imagebind_spec(int(extra["cond_dim"])))
    trained_on = {
        k: (trained_on or {}).get(k) or stage.data for k, stage in (("stage_one", stage_one), ("stage_two", stage_two))
    }
    stages = {"stage_one": stage_one, "stage_two": stage_two}
    for key, stage in stages.items():
        _write_safetensors(folder / STAGE_FILES[key], stage, DTYPES[dtype], extra if key == "stage_two" else {})
    unet_state = stage_two.state
    tokens = None
    if "unet.token_mean" in unet_state:
        tokens = {
            "set": bool(extra.get("token_statistics_set", False)),
            "names": extra.get("token_names"),
            "mean": unet_state["unet.token_mean"].float().tolist(),
            "scale": unet_state["unet.token_scale"].float().flatten().tolist(),
            "stored_as": ["unet.token_mean", "unet.token_scale"],
        }
        if "unet.token_whiten" in unet_state:  # the whitening matrices replace the scale (token_whitening)
            tokens["stored_as"].append("unet.token_whiten")
    config = {
        "format": PACKAGE_FORMAT,
        "format_version": PACKAGE_FORMAT_VERSION,
        "lvmm_version": lvmm.__version__,
        "dtype": dtype,
        "stages": {
            key: {
                "file": STAGE_FILES[key],
                "weights": stage.origin,
                "networks": stage.configs,
                "parameters": {n: _parameter_count(stage, n) for n in stage.configs},
                "source": (sources or {}).get(key),
            }
            for key, stage in stages.items()
        },
        "diffusion": extra["diffusion"],
        "latent_scale": extra.get("latent_scale"),
        "token_statistics": tokens,
        "training_frame_size": stage_one.frame_size or stage_two.frame_size,
        "num_frames": extra.get("num_frames"),
        "max_frames": extra.get("max_frames"),
        "imagebind": imagebind,
        "generation": extra,
        "trained_on": trained_on,
    }
    absolute = [v for v in _strings(config) if os.path.isabs(v) or (len(v) > 2 and v[1] == ":" and v[2] in "\\/")]
    if absolute:
        raise CheckpointError(f"refusing to write absolute paths into a package: {absolute[:3]}")
    atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(config, indent=1) + "\n").encode())
    atomic_write_bytes(folder / CARD_FILE, model_card(config, folder).encode())
    files = [CONFIG_FILE, CARD_FILE, *STAGE_FILES.values()]
    sums = "".join(f"{file_sha256(folder / f)}  {f}\n" for f in files)
    atomic_write_bytes(folder / CHECKSUM_FILE, sums.encode())
    return folder


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def model_card(config: Mapping, folder: Path) -> str:
    """The package's README.md: what the model is, what it was trained on, its sizes and the ImageBind it needs."""
    st = config["stages"]
    size = config.get("training_frame_size")
    ib = config["imagebind"]
    lines = [
        "# LVMM model package",
        "",
        "A two-stage latent motion-field model that animates a still photo (stage one: flow predictor, motion VAE and "
        "renderer; stage two: a conditional 3D U-Net over latent motion).",
        "",
        "```python",
        "from lvmm.pipeline import LVMMPipeline",
        f'pipe = LVMMPipeline.from_pretrained("{folder.name}")',  # ok: the package's own folder
        'frames = pipe("photo.jpg", seeds=[0]).frames[0]   # (T, H, W, 3) uint8',
        "```",
        "",
        "## Training",
        "",
        f"- stage one: {config.get('trained_on', {}).get('stage_one') or 'not recorded'}",
        f"- stage two: {config.get('trained_on', {}).get('stage_two') or 'not recorded'}",
        f"- training frame size: {f'{size[0]}x{size[1]}' if size else 'not recorded in the checkpoint'}",
        f"- frames per clip K: {config.get('num_frames')} (at most {config.get('max_frames')})",
        "",
        "## Sizes",
        "",
        "| network | parameters | weights |",
        "| --- | --- | --- |",
    ]
    for key in ("stage_one", "stage_two"):
        for name, n in st[key]["parameters"].items():
            lines.append(f"| {key} {name} | {n:,} | {st[key]['weights']}, stored as {config['dtype']} |")
    lines += [
        "",
        "## ImageBind",
        "",
        f"Conditioning uses ImageBind `{ib['config']}` ({ib['embedding_dim']}-d embeddings): {ib['note']}.",
    ]
    if ib.get("weights"):
        lines.append(
            f'Pass `imagebind="PATH/{ib["weights"]}"` to `from_pretrained`. The official ImageBind weights are '
            f"licensed {ib.get('licence', IMAGEBIND_LICENCE)} (non-commercial); this package does not include them."
        )
    lines += [
        "",
        f"Written by LVMM {config['lvmm_version']}, package format {config['format_version']}. "
        f"`{CHECKSUM_FILE}` holds the sha256 of every file; loading checks them.",
        "",
    ]
    return "\n".join(lines)


def verify_package(folder: str | Path) -> dict:
    """Check a package's format version and every file's sha256; return its config.

    Raises :class:`PackageError` naming the file that is missing, altered or of another version.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PackageError(f"{folder}: no such model folder")
    config_path = folder / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise PackageError(
            f"{config_path}: missing; not an LVMM model package (export one with tools/export.py)"
        ) from None
    except (OSError, ValueError) as e:
        raise PackageError(f"{config_path}: unreadable ({e})") from e
    if not isinstance(config, dict) or config.get("format") != PACKAGE_FORMAT:
        raise PackageError(
            f"{config_path}: not an LVMM model package "
            f"(format {config.get('format') if isinstance(config, dict) else None!r})"
        )
    if config.get("format_version") != PACKAGE_FORMAT_VERSION:
        raise PackageError(
            f"{config_path}: package format version {config.get('format_version')} (written by LVMM "
            f"{config.get('lvmm_version')}); this LVMM {lvmm.__version__} reads version {PACKAGE_FORMAT_VERSION}: "
            "export the package again with this version's tools/export.py"
        )
    sums_path = folder / CHECKSUM_FILE
    if not sums_path.is_file():
        raise PackageError(f"{sums_path}: missing; the package's files cannot be checked")
    listed = {}
    for line in sums_path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if not name or Path(name).name != name:
            raise PackageError(f"{sums_path}: malformed line {line!r}")
        listed[name] = digest
    for name in (CONFIG_FILE, *STAGE_FILES.values()):
        if name not in listed:
            raise PackageError(f"{sums_path}: does not list {name}")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise PackageError(f"{path}: missing from the package")
        if file_sha256(path) != digest:
            raise PackageError(f"{path}: altered (its sha256 differs from {CHECKSUM_FILE})")
    return config


def read_package(folder: str | Path) -> tuple[dict, StageWeights, StageWeights]:
    """``(config, stage one, stage two)`` of a verified package."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = verify_package(folder)
    stages = {}
    for key in ("stage_one", "stage_two"):
        path = folder / config["stages"][key]["file"]
        stages[key] = StageWeights(
            config["stages"][key]["networks"],
            load_file(str(path)),
            {},
            config["stages"][key]["weights"],
            config.get("training_frame_size"),
        )
    stages["stage_two"].extra = dict(config["generation"])
    return config, stages["stage_one"], stages["stage_two"]


# ---------------------------------------------------------------------------------------------- ImageBind offload


class OffloadedEncoder:
    """An :class:`~lvmm.imagebind.ImageBindEncoder` that sits on the CPU and visits the accelerator only to embed.

    ImageBind huge is 4.8 GB in float32: once a request's prompts are embedded it leaves the GPU to the
    U-Net. Embeddings are remembered per input, so later seed groups of the same request embed nothing.
    """

    def __init__(self, encoder, device: torch.device, offload: bool = True):
        self.encoder, self.device, self.offload = encoder, torch.device(device), offload
        self._memo: dict[tuple, torch.Tensor] = {}
        self._home = torch.device("cpu") if offload else self.device
        self._place(self._home)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _place(self, device: torch.device) -> None:
        if self.encoder.device != device:
            self.encoder.model.to(device)
            self.encoder.device = device
            if device.type == "cpu" and self.device.type == "cuda":
                torch.cuda.empty_cache()

    @staticmethod
    def _key(item) -> tuple:
        if isinstance(item, str):
            return ("str", item)
        if isinstance(item, os.PathLike):
            st = os.stat(item)
            return ("file", os.fspath(item), st.st_size, st.st_mtime_ns)
        a = np.ascontiguousarray(item.numpy() if isinstance(item, torch.Tensor) else np.asarray(item))
        return ("array", a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())

    def _embed(self, kind: str, items: Sequence) -> torch.Tensor:
        keys = [(kind, self._key(x)) for x in items]
        todo = [i for i, k in enumerate(keys) if k not in self._memo]
        if todo:
            self._place(self.device)
            try:
                out = getattr(self.encoder, kind)([items[i] for i in todo])
            finally:
                self._place(self._home)
            for i, e in zip(todo, out):
                self._memo[keys[i]] = e
        return torch.stack([self._memo[k] for k in keys])

    def embed_images(self, images: Sequence) -> torch.Tensor:
        return self._embed("embed_images", images)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self._embed("embed_texts", texts)

    def embed_audio(self, audio: Sequence) -> torch.Tensor:
        return self._embed("embed_audio", audio)

    def forget(self) -> None:
        """Drop remembered embeddings (the pipeline does this after each call)."""
        self._memo.clear()


# ---------------------------------------------------------------------------------------------- field edits


@dataclass
class FieldEdit:
    """The page's motion controls, checked against the photo, and their edits of decoded fields.

    The work is :mod:`lvmm.controls`'s (one implementation); the pipeline hands these controls to the
    :class:`~lvmm.animation.Animator` as ``motion_scale``, ``region_mask`` and ``drags``, where they also guide
    sampling and render the still region pixel-still. Calling the edit applies the field edits alone:

    * ``strength`` multiplies the displacement (dx, dy) (:func:`lvmm.controls.scale_motion`); 0 stills the picture;
    * ``mask`` (H, W) in [0, 1] at the photo's size keeps the motion where it is 1; where it is 0 the
      displacement is zero and the intention weight 1, so those pixels stay the photo's own;
    * ``drags`` ``((x0, y0), (x1, y1))`` in the photo's pixels: the content at the start point reaches
      the end point by the last frame along an eased path (and back for a ``loop``), the field
      corrected exactly there (:func:`lvmm.controls.correct_drags`, Gaussian radius ``drag_radius``
      times the short side).
    """

    strength: float = 1.0
    mask: np.ndarray | None = None
    drags: Sequence = ()
    image_size: tuple[int, int] = (0, 0)  # (H, W) of the photo
    drag_radius: float = 0.15
    loop: bool = False

    def __post_init__(self):
        from lvmm import controls

        h, w = self.image_size
        if not np.isfinite(self.strength) or self.strength < 0:
            raise AnimationError(f"motion strength must be a finite number >= 0, got {self.strength}")
        if self.mask is not None:
            m = np.asarray(self.mask, dtype=np.float32)
            if m.shape != (h, w):
                raise AnimationError(
                    f"the region mask is {m.shape[1] if m.ndim > 1 else '?'}x{m.shape[0]} but the photo is {w}x{h}"
                )
            if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
                raise AnimationError("the region mask must hold values in [0, 1]")
            if m.max() == 0:
                raise AnimationError("the region mask is empty: paint the region that should move, or clear the mask")
            self.mask = m
        drags = []
        for d in self.drags:
            try:
                drag = controls.as_drag(d)
            except ValueError:
                raise AnimationError(f"a drag is two points ((x0, y0), (x1, y1)), got {d!r}") from None
            try:
                controls.check_drag(drag, (h, w))
            except ValueError:
                raise AnimationError(f"drag {d!r} leaves the {w}x{h} photo") from None
            drags.append(drag)
        self.drags = drags

    @property
    def active(self) -> bool:
        return self.strength != 1.0 or self.mask is not None or bool(self.drags)

    def __call__(self, fields: torch.Tensor) -> torch.Tensor:
        """Edited fields (B, K, 3, h, w): scale, drags, mask (the order of the animator's edits)."""
        from lvmm import controls

        fields = controls.scale_motion(fields, float(self.strength))
        if self.drags:
            start, path = controls.drag_targets(self.drags, self.image_size, fields.shape[1], self.loop)
            radius = controls.drag_radius(self.image_size, self.drag_radius)
            fields = controls.correct_drags(fields, start, path, radius)
        if self.mask is not None:
            grid = controls.mask_on_grid(torch.from_numpy(self.mask), tuple(fields.shape[-2:]))
            fields = controls.apply_mask(fields, grid)
        return fields


# ---------------------------------------------------------------------------------------------- pipeline


@dataclass
class LVMMPipelineOutput:
    """Per seed: frames (T, H, W, 3) uint8, fields (T, 3, h, w) float32 and the full :class:`Animation`."""

    frames: list[np.ndarray]
    fields: list[torch.Tensor]
    animations: list[Animation]
    seeds: list[int]


_OPTION_NAMES = tuple(f.name for f in dataclass_fields(AnimationOptions) if f.name != "field_transform")


def _autocast(fn: Callable, device_type: str, dtype: torch.dtype) -> Callable:
    """``fn`` run under autocast, its tensor output returned as float32 (the sampler's and the caller's dtype)."""

    def wrapped(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = fn(*args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) else out

    return wrapped


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 autocast on accelerators, float32 on the CPU."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


class LVMMPipeline:
    """Photo in, animations out: ``LVMMPipeline.from_pretrained(folder)(image, prompt=..., seeds=[0, 1])``.

    Args:
        animator: the :class:`~lvmm.animation.Animator` that does the work.
        torch_dtype: compute dtype of the networks (autocast); default bfloat16 on accelerators and
            float32 on the CPU. The weights stay float32.
        config: the package config it was loaded from (``None`` when built from checkpoints).
        stages: the weights it was built from, for :meth:`save_pretrained`.
    """

    def __init__(
        self,
        animator: Animator,
        torch_dtype: torch.dtype | None = None,
        config: dict | None = None,
        stages: tuple[StageWeights, StageWeights] | None = None,
    ):
        self.animator = animator
        self.torch_dtype = torch_dtype or default_dtype(animator.device)
        if self.torch_dtype not in DTYPES.values():
            raise ValueError(f"torch_dtype must be one of float32, float16, bfloat16, got {self.torch_dtype}")
        self.config, self._stages = config, stages
        if self.torch_dtype != torch.float32:
            # Only the U-Net and the renderer run in low precision: they hold nearly all the compute, and
            # the flow predictor's 2x2 matrix square roots (torch.det) have no bf16 kernels.
            animator.unet.forward = _autocast(animator.unet.forward, animator.device.type, self.torch_dtype)
            renderer = animator.motion.renderer
            for name in ("encode", "fill"):  # what full-resolution rendering (lvmm.rendering) calls
                setattr(renderer, name, _autocast(getattr(renderer, name), animator.device.type, self.torch_dtype))

    @property
    def device(self) -> torch.device:
        return self.animator.device

    # ------------------------------------------------------------------ building
    @classmethod
    def _build(
        cls,
        stage_one: StageWeights,
        stage_two: StageWeights,
        where: tuple[str, str],
        imagebind,
        imagebind_config,
        device,
        torch_dtype,
        offload_imagebind: bool,
        config: dict | None,
    ) -> LVMMPipeline:
        from lvmm.diffusion import DiffusionConfig
        from lvmm.imagebind import ImageBindEncoder
        from lvmm.motion import MotionModel

        device = (
            torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        nets = build_networks(stage_one, where[0])
        motion = MotionModel(nets["flow"], nets["vae"], nets["renderer"]).eval()
        unet = build_networks(stage_two, where[1])["unet"]
        extra = generation_extra(stage_one, stage_two)
        spec = (config or {}).get("imagebind") or imagebind_spec(int(extra["cond_dim"]))
        if imagebind is None and spec.get("weights") and imagebind_config is None:
            raise AnimationError(
                f"this model expects ImageBind {spec['config']} weights ({spec['weights']}, "
                f"{spec.get('licence', IMAGEBIND_LICENCE)}): pass imagebind='PATH/{spec['weights']}'"
            )
        encoder = ImageBindEncoder(
            weights=imagebind,
            config=imagebind_config or spec["config"],
            device="cpu",
            seed=int(spec.get("seed", TINY_IMAGEBIND_SEED)),
            amp=device.type == "cuda",
        )
        animator = Animator(
            motion,
            unet,
            DiffusionConfig.from_dict(extra["diffusion"]),
            extra,
            OffloadedEncoder(encoder, device, offload_imagebind),
            device,
        )
        return cls(animator, torch_dtype, config, (stage_one, stage_two))

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,  # ok: a local package folder, no hub
        imagebind: str | None = None,
        imagebind_config: str | None = None,
        offload_imagebind: bool = True,
    ) -> LVMMPipeline:
        """Load a model package (checked: format version and every file's sha256).

        ``imagebind`` is the path of the ImageBind weights the package names (none for packages made
        with the random tiny ImageBind); ``offload_imagebind`` keeps ImageBind on the CPU between embeddings.
        """
        folder = Path(folder)
        config, one, two = read_package(folder)
        return cls._build(
            one,
            two,
            (str(folder / STAGE_FILES["stage_one"]), str(folder / STAGE_FILES["stage_two"])),
            imagebind,
            imagebind_config,
            device,
            torch_dtype,
            offload_imagebind,
            config,
        )

    @classmethod
    def from_checkpoints(
        cls,
        stage_two: str | Path,
        stage_one: str | Path | None = None,
        imagebind: str | None = None,
        imagebind_config: str | None = None,
        device=None,
        torch_dtype: torch.dtype | None = None,
        offload_imagebind: bool = True,
        ema: bool = True,
    ) -> LVMMPipeline:
        """Build from the training checkpoints (stage one defaults to the path recorded in stage two)."""
        two = read_stage(stage_two, STAGE_NETWORKS["stage_two"], ema)
        stage_one = stage_one or two.extra.get("motion_checkpoint")
        if not stage_one:
            raise AnimationError(f"{stage_two}: records no stage-one checkpoint; pass one explicitly")
        one = read_stage(stage_one, STAGE_NETWORKS["stage_one"], ema)
        if imagebind_config is None and imagebind is None:
            imagebind_config = "tiny"  # as Animator.from_checkpoints: the random tiny model without weights
        return cls._build(
            one,
            two,
            (str(stage_one), str(stage_two)),
            imagebind,
            imagebind_config,
            device,
            torch_dtype,
            offload_imagebind,
            None,
        )

    def save_pretrained(
        self, folder: str | Path, dtype: str = "fp32", trained_on: Mapping[str, str] | None = None
    ) -> Path:
        """Write this pipeline's networks as a model package (see :func:`write_package`)."""
        if self._stages is None:
            raise AnimationError("this pipeline was not built from checkpoints or a package; nothing to save")
        one, two = self._stages
        config = self.config or {}
        return write_package(
            folder,
            one,
            two,
            dtype,
            imagebind=config.get("imagebind"),
            trained_on=trained_on or config.get("trained_on"),
            sources={k: v.get("source") for k, v in config.get("stages", {}).items()} or None,
        )

    # ------------------------------------------------------------------ generation
    def __call__(
        self,
        image,
        prompt: str | None = None,
        audio: str | None = None,
        cond_image=None,
        *,
        seeds: Sequence[int] = (0,),
        num_frames: int | None = None,
        batch_size: int | None = None,
        loop: bool = False,
        loop_start: float | None = None,
        motion_strength: float = 1.0,
        mask: np.ndarray | None = None,
        drags: Sequence = (),
        callback: Callable[[int, int], None] | None = None,
        progress: bool = False,
        **options: Any,
    ) -> LVMMPipelineOutput:
        """Animate ``image`` (a path, a PIL image or an (H, W, 3) uint8 array) once per seed.

        Conditions: at most one of ``prompt`` (text), ``audio`` (a file) or ``cond_image``. ``options`` are
        :class:`~lvmm.animation.AnimationOptions` (``sampler``, ``steps``, ``eta``, ``guidance_scale``,
        ``loop_guidance``, ``loop_velocity``, ``loop_rush``, ``loop_schedule``, ``slow_motion``, ``chunk_size``,
        ``fit``, ``size``); ``loop=True`` without a ``loop_guidance`` uses :data:`DEFAULT_LOOP_GUIDANCE`, and
        ``loop_start`` sets where it starts. ``guidance_scale`` is LVMM's classifier-free weight w:
        eps = (1 + w) eps(y) - w eps(null), i.e. diffusers' ``guidance_scale`` minus 1.

        ``batch_size`` samples the seeds in groups of that many (default: all at once); each seed has its
        own generator, so its animation does not depend on the grouping. ``callback(step, total)`` is
        called after every sampling step of every group (total = steps x groups).
        ``motion_strength``, ``mask`` and ``drags`` are the motion controls (:class:`FieldEdit`,
        :mod:`lvmm.controls`); the options ``motion_amount``, ``total_frames`` and the guidance weights
        of the mask and the drags (``mask_guidance``, ``drag_guidance``) are the others.
        """
        from lvmm.media import read_image

        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; the options are {list(_OPTION_NAMES)}")
        if loop and not options.get("loop_guidance"):
            options["loop_guidance"] = DEFAULT_LOOP_GUIDANCE
        if loop_start is not None:
            options["loop_schedule"] = (float(loop_start), 1.0)
        opts = AnimationOptions(num_frames=num_frames, **options)
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image)
        elif hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
            image = np.asarray(image.convert("RGB"))
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise AnimationError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
        edit = FieldEdit(motion_strength, mask, drags, image.shape[:2])
        if edit.active:  # handed to the animator, which also guides sampling with the mask and the drags
            if opts.fit != "resize":
                raise AnimationError("motion strength, a region mask or drags need fit='resize'")
            opts.motion_scale = opts.motion_scale * edit.strength
            if edit.mask is not None:
                opts.region_mask = edit.mask
            opts.drags = (*opts.drags, *edit.drags)
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise AnimationError("no seeds given")
        size = batch_size or len(seeds)
        if size < 1:
            raise AnimationError(f"batch_size must be at least 1, got {batch_size}")
        groups = [seeds[i : i + size] for i in range(0, len(seeds), size)]
        total = opts.steps * len(groups)
        results: list[Animation] = []
        try:
            for g, group in enumerate(groups):
                step_cb = None if callback is None else (lambda i, n, g=g: callback(g * n + i, total))
                results += self.animator.animate(
                    image,
                    group,
                    opts,
                    prompt=prompt,
                    audio=audio,
                    cond_image=cond_image,
                    progress=progress,
                    callback=step_cb,
                )
        finally:
            if isinstance(self.animator.encoder, OffloadedEncoder):
                self.animator.encoder.forget()
        for r in results:
            r.fields = r.fields.float()
        return LVMMPipelineOutput([r.frames for r in results], [r.fields for r in results], results, seeds)


__all__ = [
    "LVMMPipeline",
    "LVMMPipelineOutput",
    "PackageError",
    "FieldEdit",
    "write_package",
    "read_package",
    "verify_package",
    "read_stage",
    "LOOP_GUIDANCE_START",
    "DEFAULT_LOOP_GUIDANCE",
]
