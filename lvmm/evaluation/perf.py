"""What the performance benches (``tools/bench/``) share: shapes from the named configs, an in-process
Animator, timing and memory.

Shapes are read from the configs users train with (``configs/stage1/*.yaml``, ``configs/stage2/*.yaml``,
``__base__`` chains merged), never typed in: the frame size from stage one's data section, the latent
size from its flow predictor's ``field_downsample`` times its VAE's ``reduction``, the clip length K from
stage two's ``num_frames`` (a generated video is I_0 + K frames).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lvmm.allocator import release_freed_memory
from lvmm.configs import merged_config

ROOT = Path(__file__).resolve().parents[2]  # the repository: config names resolve under its configs/


def load_config(stage: str, name: str) -> dict:
    """The config ``configs/<stage>/<name>.yaml`` of the repository (or a path) with its ``__base__`` chain merged."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else ROOT / "configs" / stage / f"{name}.yaml"
    return merged_config(path)


@dataclass
class Shapes:
    """The sizes a pair of stage-one and stage-two configs produce."""

    stage1: str
    stage2: str
    frame: tuple[int, int]  # (H, W) of stage one's training frames
    latent_downsample: int  # frame -> latent reduction
    num_frames: int  # K, generated frames (a video is I_0 + K)
    max_frames: int  # the U-Net's longest clip
    stage1_networks: dict  # flow, vae, renderer configs
    unet: dict  # stage two's U-Net config
    diffusion: dict  # DiffusionConfig fields from stage two's model section

    @property
    def latent(self) -> tuple[int, int]:
        return self.frame[0] // self.latent_downsample, self.frame[1] // self.latent_downsample

    def describe(self) -> str:
        h, w = self.latent
        return (
            f"stage1 {self.stage1} + stage2 {self.stage2}: frames {self.frame[0]}x{self.frame[1]}, "
            f"latents 4x{h}x{w} (/{self.latent_downsample}), K = {self.num_frames} (max {self.max_frames})"
        )


def frame_size(stage1: dict) -> tuple[int, int]:
    """(H, W) of stage one's training frames from its data section (``size`` or ``height``/``width``)."""
    args = stage1["data"]["init_args"]
    if "size" in args:
        size = args["size"]
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return int(args["height"]), int(args["width"])


def shapes(stage1: str = "tiny", stage2: str = "tiny") -> Shapes:
    """Shapes of the named configs (e.g. ``shapes("mug", "mug_128")``: 128 px frames, 8 x 8 latents, K = 39)."""
    s1, s2 = load_config("stage1", stage1), load_config("stage2", stage2)
    nets = {k: s1["model"]["init_args"][k] for k in ("flow", "vae", "renderer")}
    down = int(nets["flow"]["init_args"]["field_downsample"]) * int(nets["vae"]["init_args"]["reduction"])
    model = s2["model"]["init_args"]
    unet = model["unet"]
    diffusion = {k: model[k] for k in ("prediction_type", "beta_schedule", "num_train_timesteps") if k in model}
    return Shapes(
        stage1,
        stage2,
        frame_size(s1),
        down,
        int(model["num_frames"]),
        int(unet["init_args"]["max_frames"]),
        nets,
        unet,
        diffusion,
    )


def build_animator(s: Shapes, seed: int = 0, max_frames: int | None = None, device: str = "cpu"):
    """An :class:`lvmm.animation.Animator` with random weights of the configs' networks and the tiny ImageBind.

    The U-Net's condition width is set to the tiny ImageBind's (32, as the demo's models are trained);
    ``max_frames`` lengthens its temporal embedding (the same network, longer clips in one window).
    """
    from lvmm.animation import Animator
    from lvmm.checkpoint import build
    from lvmm.diffusion.schedules import DiffusionConfig
    from lvmm.imagebind import ImageBindEncoder
    from lvmm.motion import MotionModel

    torch.manual_seed(seed)
    motion = MotionModel(*(build(s.stage1_networks[k]) for k in ("flow", "vae", "renderer")))
    encoder = ImageBindEncoder(config="tiny")
    unet_cfg = copy.deepcopy(s.unet)
    unet_cfg["init_args"]["cond_dim"] = encoder.dim
    if max_frames:
        unet_cfg["init_args"]["max_frames"] = int(max_frames)
    unet = build(unet_cfg)
    extra = {
        "cond_dim": encoder.dim,
        "num_frames": s.num_frames,
        "max_frames": unet.max_frames,
        "latent_multiple": unet.downsample_factor,
        "latent_scale": 1.0,
        "z0_scale": 1.0,
        "residual_latents": True,
        "frame_size": list(s.frame),
        "latent_size": list(s.latent),
        "appearance_channels": unet.appearance_channels,
    }
    return Animator(motion, unet, DiffusionConfig(**s.diffusion), extra, encoder, device)


def test_photo(height: int, width: int, seed: int = 0):
    """A photo-like uint8 image (smooth shapes plus texture)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(9 * x + 3 * c) * np.cos(7 * y - c) for c in range(3)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: ``5`` to ``/proc/self/clear_refs``); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Peak resident set since the last :func:`reset_peak_rss` (else since the start), bytes."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss() -> int:
    """Resident set now, bytes (the peak where /proc is not available)."""
    rss = _status_kib("VmRSS")
    return rss * 1024 if rss is not None else peak_rss()


class PeakMemory:
    """Peak memory of a block above what was resident at its start.

    GPU: CUDA's allocator peak. CPU: tracemalloc does not see torch's allocations, so the process's
    resident set is read instead, its kernel peak mark reset at entry (Linux), so the figure is the
    block's own peak even after larger earlier ones. Memory freed before the block but kept by the
    allocator (:func:`lvmm.allocator.retain_freed_memory`) is returned to the system first, or the block
    would reuse it unseen. Where the mark cannot be reset it is the rise of the lifetime peak (0 when
    the block stayed under an earlier peak).
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.bytes = 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            release_freed_memory()
            self.start = current_rss() if reset_peak_rss() else peak_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self.bytes = max(0, peak_rss() - self.start)
        return False


def timed(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 1) -> tuple[float, int]:
    """Best-of-``repeats`` seconds of ``fn()`` and the peak memory rise (bytes) of the first run.

    Only the first run is inside :class:`PeakMemory`: on CPU that returns the allocator's freed memory to the
    system first, so the run pays page faults that a user's repeated calls do not (about 0.5 s of 4 s for the
    default animation); the later runs are timed as they come, and the best of all is reported."""
    cuda = torch.device(device).type == "cuda"
    best = float("inf")
    peak = 0
    for i in range(repeats):
        with PeakMemory(device) if i == 0 else contextlib.nullcontext() as mem:
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        if i == 0:
            peak = mem.bytes
    return best, peak


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for the record next to every figure."""
    import os

    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
