"""The built-in procedural motion data: real photographs moved by periodic motion families.

Photographs come from scikit-image's bundled samples (no download). Each clip picks a photograph
(random crop, scale and flip), a motion family, and random amplitude, frequency, phase and region,
and is rendered with its ground-truth displacement field for every frame, in the flow convention of
:mod:`lvmm.warp`: ``I_k(x) = I_0(x + d_k(x))``.

How a clip is made: a photograph crop ``P`` is moved by a periodic field ``u_t``; frame t is
``P(x + u_t(x) - u_0(x))`` so that frame 0 is the photograph itself and the field of frame k is
exactly ``d_k = u_k - u_0``. Frames are rendered at twice the size and box-filtered down, so that
re-warping frame 0 with ``d_k`` reproduces frame k only up to interpolation error, as with real video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lvmm.warp import pixels_to_normalised, warp

FAMILIES = ("still", "sway", "ripple", "zoom", "drift", "rotation")
"""Motion families; a family's label is its index here."""

TRAIN_PHOTOS = (
    "astronaut",
    "chelsea",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "motorcycle",
    "camera",
    "coins",
    "grass",
    "gravel",
    "brick",
    "moon",
    "clock",
    "colorwheel",
)
VAL_PHOTOS = ("coffee", "rocket")
"""Photographs held out of training: validation clips and the demo's animations use only these."""

SUPERSAMPLE = 2  # frames are rendered at this multiple of the size, then box-filtered down
AMPLITUDE_PX_AT_64 = (
    1.5,
    6.0,
)  # motion amplitude range in pixels of a 64-pixel frame (docs/design.md, The built-in data)
FREQUENCY_HZ = (0.3, 1.0)  # cycles per second
DEFAULT_FPS = 8.0
REGION_NAMES = (
    ("upper left", "top", "upper right"),
    ("left", "centre", "right"),
    ("lower left", "bottom", "lower right"),
)


@dataclass
class MotionClip:
    """One procedural clip: frames, ground-truth fields, and the labels of its motion."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    flows: np.ndarray  # (T, 2, H, W) float32, normalised units; flows[0] == 0
    family: str
    label: int
    caption: str
    fps: float
    photo: str
    params: dict = field(default_factory=dict)


@cache
def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as (H, W, 3) uint8 (grey ones are replicated to RGB)."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def photos(split: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_PHOTOS
    if split in ("val", "test"):
        return VAL_PHOTOS
    raise ValueError(f"unknown split {split!r} (use 'train' or 'val')")


def check_size(height: int, width: int) -> None:
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ValueError(f"frame size {height}x{width} must be positive multiples of 32")


def _crop(photo: np.ndarray, height: int, width: int, rng: np.random.Generator) -> torch.Tensor:
    """A random crop of the photograph's aspect-matched window at a random scale, random flip."""
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.5, 1.0)
    ch = min(ph, pw * height / width) * scale
    cw = ch * width / height
    top = rng.uniform(0, ph - ch)
    left = rng.uniform(0, pw - cw)
    crop = photo[int(top) : int(top + ch), int(left) : int(left + cw)]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, h, w)
    size = (height * SUPERSAMPLE, width * SUPERSAMPLE)
    return F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _adverb(fraction: float, low: str, high: str) -> str:
    return low if fraction < 0.5 else high


def sample_params(family: str, rng: np.random.Generator, height: int, width: int) -> dict:
    """Random parameters of one clip of ``family`` at (H, W): amplitude, frequency, phase, centre, ...; see
    :func:`field_px`."""
    amp_lo, amp_hi = AMPLITUDE_PX_AT_64
    amp_frac = rng.random()
    p = {
        "amplitude_px": float((amp_lo + amp_frac * (amp_hi - amp_lo)) * min(height, width) / 64.0),
        "amplitude_fraction": float(amp_frac),
        "frequency_hz": float(rng.uniform(*FREQUENCY_HZ)),
        "phase": float(rng.uniform(0, 2 * math.pi)),
        "centre": [float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.25, 0.75))],  # (x, y) as fractions
        "radius": float(rng.uniform(0.2, 0.35)),  # fraction of the shorter side
        "direction": int(rng.integers(0, 2)),  # sway/drift: 0 horizontal, 1 vertical
        "wavelength": float(rng.uniform(0.3, 0.6)),  # ripple: fraction of the shorter side
    }
    if family == "drift":
        p["angle"] = float(rng.uniform(0, 2 * math.pi))
    return p


def _caption(family: str, p: dict) -> str:
    strength = _adverb(p["amplitude_fraction"], "gently", "strongly")
    speed = "slowly" if p["frequency_hz"] < sum(FREQUENCY_HZ) / 2 else "quickly"
    cx, cy = p["centre"]
    region = REGION_NAMES[min(2, int(cy * 3))][min(2, int(cx * 3))]
    if family == "still":
        return "the picture stays still"
    if family == "sway":
        way = "to the left and right" if p["direction"] == 0 else "up and down"
        return f"the scene sways {strength} {way}, {speed}"
    if family == "ripple":
        return f"ripples spread {speed} from the {region}"
    if family == "zoom":
        return f"the picture breathes in and out {strength}, {speed}"
    if family == "drift":
        return f"a patch in the {region} drifts back and forth {strength}"
    if family == "rotation":
        return f"a patch in the {region} turns back and forth {speed}"
    raise ValueError(f"unknown family {family!r}")


def field_px(family: str, p: dict, theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The periodic field u_t in pixels of the (H, W) frame for phases ``theta`` (T,): (T, 2, H, W)."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    short = min(height, width)
    cx, cy = p["centre"][0] * width, p["centre"][1] * height
    rx, ry = xs - cx, ys - cy
    amp = p["amplitude_px"]
    s = torch.sin(theta).view(-1, 1, 1)  # (T, 1, 1)
    zeros = torch.zeros(len(theta), height, width)
    if family == "still":
        return torch.stack([zeros, zeros], 1)
    mask = torch.exp(-(rx**2 + ry**2) / (2 * (p["radius"] * short) ** 2))  # soft region (H, W)
    if family == "sway":
        # anchored at the bottom edge (or the left), growing towards the free end, like a plant
        lever = (1 - ys / height) if p["direction"] == 0 else (1 - xs / width)
        d = amp * s * lever
        return torch.stack([d, zeros], 1) if p["direction"] == 0 else torch.stack([zeros, d], 1)
    if family == "ripple":
        r = torch.sqrt(rx**2 + ry**2) + 1e-6
        k = 2 * math.pi / (p["wavelength"] * short)
        wave = amp * torch.sin(k * r - theta.view(-1, 1, 1)) * (0.3 + 0.7 * torch.exp(-r / short))
        return torch.stack([wave * rx / r, wave * ry / r], 1)
    if family == "zoom":
        scale = amp / (0.5 * short) * s  # relative zoom; the edge at half the short side moves by amp
        return torch.stack([scale * rx, scale * ry], 1)
    if family == "drift":
        ux, uy = math.cos(p["angle"]), math.sin(p["angle"])
        return torch.stack([amp * s * ux * mask, amp * s * uy * mask], 1)
    if family == "rotation":
        beta = (amp / (p["radius"] * short)) * s  # the patch's rim moves by about amp pixels
        cos, sin = torch.cos(beta) - 1, torch.sin(beta)
        return torch.stack([(cos * rx - sin * ry) * mask, (sin * rx + cos * ry) * mask], 1)
    raise ValueError(f"unknown family {family!r}")


def make_clip(
    seed: int,
    index: int = 0,
    *,
    height: int = 64,
    width: int = 64,
    num_frames: int = 9,
    split: str = "train",
    fps: float = DEFAULT_FPS,
    families: tuple[str, ...] = FAMILIES,
    family: str | None = None,
) -> MotionClip:
    """Render clip ``index`` of the corpus ``seed``; the same arguments always give the same clip."""
    check_size(height, width)
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    names = photos(split)
    photo = names[int(rng.integers(0, len(names)))]
    fam = family or families[int(rng.integers(0, len(families)))]
    base = _crop(load_photo(photo), height, width, rng)  # (1, 3, 2H, 2W)
    p = sample_params(fam, rng, height, width)
    t = torch.arange(num_frames, dtype=torch.float64) / fps
    theta = (2 * math.pi * p["frequency_hz"] * t + p["phase"]).float()
    big_h, big_w = height * SUPERSAMPLE, width * SUPERSAMPLE
    u = field_px(fam, p, theta, big_h, big_w)  # (T, 2, 2H, 2W) pixels of the big frame
    d_big = pixels_to_normalised(u - u[:1], big_h, big_w)
    frames_big = warp(base.expand(num_frames, -1, -1, -1), d_big)  # (T, 3, 2H, 2W)
    frames = F.avg_pool2d(frames_big, SUPERSAMPLE)  # (T, 3, H, W)
    flows = F.avg_pool2d(d_big, SUPERSAMPLE)  # normalised units survive resizing
    frames_u8 = (frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return MotionClip(
        frames=frames_u8,
        flows=flows.numpy().astype(np.float32),
        family=fam,
        label=FAMILIES.index(fam),
        caption=_caption(fam, p),
        fps=fps,
        photo=photo,
        params=p,
    )


def clip_to_sample(clip: MotionClip, key: str) -> dict:
    """A clip as the tensors the readers yield: frames (T, 3, H, W) float in [0, 1], flows (T, 2, H, W)."""
    return {
        "key": key,
        "frames": torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255.0,
        "flows": torch.from_numpy(clip.flows),
        "has_flow": True,
        "label": clip.label,
        "caption": clip.caption,
    }


class ProceduralClips(Dataset):
    """Map-style dataset of ``length`` procedural clips: item i is always ``make_clip(seed, i, ...)``."""

    def __init__(
        self,
        length: int = 1000,
        seed: int = 0,
        height: int = 64,
        width: int = 64,
        num_frames: int = 9,
        split: str = "train",
        fps: float = DEFAULT_FPS,
        families: tuple[str, ...] = FAMILIES,
    ):
        check_size(height, width)
        self.length, self.seed, self.split = length, seed, split
        self.kw = dict(
            height=height, width=width, num_frames=num_frames, split=split, fps=fps, families=tuple(families)
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return clip_to_sample(make_clip(self.seed, i, **self.kw), f"procedural-{self.split}-{self.seed}-{i:08d}")


class ProceduralPairs(Dataset):
    """Frame pairs (I_0, I_k) with their true field, k drawn per item from 1..max_interval.

    Items: ``img0``, ``imgk`` (3, H, W) in [0, 1], ``flow`` (2, H, W), ``has_flow`` True, ``k``.
    """

    def __init__(
        self,
        length: int = 10000,
        seed: int = 0,
        height: int = 64,
        width: int = 64,
        max_interval: int = 8,
        split: str = "train",
        fps: float = DEFAULT_FPS,
        families: tuple[str, ...] = FAMILIES,
    ):
        self.clips = ProceduralClips(length, seed, height, width, max_interval + 1, split, fps, families)
        self.max_interval, self.seed = max_interval, seed

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        s = self.clips[i]
        k = int(np.random.default_rng([self.seed, i, 7]).integers(1, self.max_interval + 1))
        return {
            "key": s["key"],
            "img0": s["frames"][0],
            "imgk": s["frames"][k],
            "flow": s["flows"][k],
            "has_flow": True,
            "k": k,
        }


class ProceduralDataModule(pl.LightningDataModule):
    """The built-in data, generated on the fly, for either stage's tests and the demo.

    ``mode="pairs"`` yields :class:`ProceduralPairs` items, ``mode="clips"`` :class:`ProceduralClips`
    items; validation uses the held-out photographs. Items have the same keys as the shard readers'.
    """

    def __init__(
        self,
        mode: str = "pairs",
        height: int = 64,
        width: int = 64,
        num_frames: int = 9,
        max_interval: int = 8,
        train_length: int = 20000,
        val_length: int = 64,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        fps: float = DEFAULT_FPS,
    ):
        super().__init__()
        if mode not in ("pairs", "clips"):
            raise ValueError(f"mode must be 'pairs' or 'clips', not {mode!r}")
        self.mode, self.batch_size, self.num_workers, self.seed = mode, batch_size, num_workers, seed
        common = dict(height=height, width=width, fps=fps)
        if mode == "pairs":
            self.train_set = ProceduralPairs(train_length, seed, max_interval=max_interval, split="train", **common)
            self.val_set = ProceduralPairs(val_length, seed + 1, max_interval=max_interval, split="val", **common)
        else:
            self.train_set = ProceduralClips(train_length, seed, num_frames=num_frames, split="train", **common)
            self.val_set = ProceduralClips(val_length, seed + 1, num_frames=num_frames, split="val", **common)

    def _loader(self, dataset, shuffle: bool):
        from lvmm.datasets.sampling import EpochSampler  # an order per (seed, epoch) that can skip ahead: exact resume

        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(dataset), self.seed, shuffle),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle,
        )

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False)
