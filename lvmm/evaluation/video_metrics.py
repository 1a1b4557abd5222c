"""Feature pipelines over sets of videos: FVD, FID on frames, and paired PSNR/SSIM/LPIPS.

Videos enter as ``uint8`` arrays ``(T, H, W, 3)`` (what :func:`lvmm.media.read_video` returns) and are
streamed: a :class:`VideoSetFeatures` buffers at most one batch, so sets of any size fit in memory.
Every feature is computed per video (networks in eval mode) and accumulated in float64, so the batch
size does not change a score beyond float32 convolution rounding.

FVD preprocessing (the common PyTorch FVD protocol): frames resized so the shorter side is 224
(bilinear, no antialiasing, as TF's ``resize_bilinear`` in the original FVD code), centre-cropped to
224 x 224, scaled to [-1, 1]; features are I3D's 400 Kinetics logits averaged over time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lvmm.evaluation.frame_metrics import psnr, ssim
from lvmm.evaluation.frechet import MIN_SAMPLES, FeatureStatistics, frechet_distance
from lvmm.evaluation.i3d import INPUT_SIZE as I3D_INPUT_SIZE
from lvmm.evaluation.inception import FEATURE_DIM as INCEPTION_DIM

UINT8_MAX = 255.0

__all__ = [
    "i3d_input",
    "i3d_features",
    "VideoSetFeatures",
    "fvd",
    "fid",
    "paired_scores",
    "PairedScores",
    "InsufficientVideosError",
]


class InsufficientVideosError(ValueError):
    """Too few videos for a covariance (FVD needs at least two per set)."""


def _frames_to_float(frames: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float ``(..., 3, H, W)`` in [0, 1] on ``device``."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames).to(device)
    return x.movedim(-1, -3).float() / UINT8_MAX


def i3d_input(videos: np.ndarray | torch.Tensor, size: int = I3D_INPUT_SIZE, device="cpu") -> torch.Tensor:
    """uint8 videos ``(B, T, H, W, 3)`` -> I3D input ``(B, 3, T, size, size)`` in [-1, 1].

    The shorter side is resized to ``size`` and the centre cropped, so non-square videos keep
    their aspect ratio.
    """
    x = _frames_to_float(videos, device)  # (B, T, 3, H, W)
    b, t, c, h, w = x.shape
    scale = size / min(h, w)
    target = (size, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), size)
    x = x.reshape(b * t, c, h, w)
    if (h, w) != target:
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    x = x.reshape(b, t, c, size, size).transpose(1, 2)  # (B, 3, T, size, size)
    return x * 2 - 1


def i3d_features(
    model: nn.Module,
    videos: Iterable[np.ndarray],
    batch_size: int = 8,
    device="cpu",
    size: int = I3D_INPUT_SIZE,
    num_frames: int | None = None,
) -> np.ndarray:
    """I3D features ``(N, D)`` float64 of an iterable of uint8 videos ``(T, H, W, 3)``."""
    features = VideoSetFeatures(i3d=model, batch_size=batch_size, device=device, i3d_size=size, fvd_frames=num_frames)
    for video in videos:
        features.add(video)
    return features.finish()["i3d"]


class VideoSetFeatures:
    """Streams one set of videos through I3D (per clip) and Inception (per frame).

    Args:
        i3d: the FVD network (or ``None`` to skip FVD features).
        inception: the FID network (or ``None`` to skip frame statistics).
        batch_size: clips per I3D batch.
        frame_batch_size: frames per Inception batch.
        device: where the networks run.
        i3d_size: I3D input size (224 in the protocol).
        fvd_frames: feed I3D the first ``fvd_frames`` frames of each clip (``None``: all).
    """

    def __init__(
        self,
        i3d: nn.Module | None = None,
        inception: nn.Module | None = None,
        batch_size: int = 8,
        frame_batch_size: int = 64,
        device="cpu",
        i3d_size: int = I3D_INPUT_SIZE,
        fvd_frames: int | None = None,
    ):
        if batch_size < 1 or frame_batch_size < 1:
            raise ValueError(f"batch sizes must be positive, got {batch_size} and {frame_batch_size}")
        self.i3d, self.inception = i3d, inception
        self.batch_size, self.frame_batch_size, self.device = batch_size, frame_batch_size, torch.device(device)
        self.i3d_size, self.fvd_frames = i3d_size, fvd_frames
        self.count = 0
        self._clips: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []
        self._i3d_out: list[np.ndarray] = []
        self.frame_stats = FeatureStatistics(INCEPTION_DIM) if inception is not None else None

    def add(self, video: np.ndarray) -> None:
        """Add one uint8 video ``(T, H, W, 3)``."""
        video = np.asarray(video)
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"expected a uint8 video (T, H, W, 3), got {video.dtype} {video.shape}")
        self.count += 1
        if self.i3d is not None:
            clip = video if self.fvd_frames is None else video[: self.fvd_frames]
            if self.fvd_frames is not None and len(clip) < self.fvd_frames:
                raise ValueError(f"a video has {len(video)} frames, fewer than the {self.fvd_frames} FVD uses")
            if self._clips and self._clips[0].shape != clip.shape:
                self._flush_i3d()  # a batch needs clips of one shape
            self._clips.append(clip)
            if len(self._clips) >= self.batch_size:
                self._flush_i3d()
        if self.inception is not None:
            self._frames.extend(video)
            while len(self._frames) >= self.frame_batch_size:
                self._flush_inception(self.frame_batch_size)

    @torch.inference_mode()
    def _flush_i3d(self) -> None:
        if self._clips:
            x = i3d_input(np.stack(self._clips), self.i3d_size, self.device)  # (B, 3, T, S, S)
            self._i3d_out.append(self.i3d(x).double().cpu().numpy())
            self._clips = []

    @torch.inference_mode()
    def _flush_inception(self, limit: int | None = None) -> None:
        if self._frames:
            batch, self._frames = self._frames[:limit], self._frames[len(self._frames[:limit]) :]
            x = _frames_to_float(np.stack(batch), self.device)  # (N, 3, H, W)
            self.frame_stats.update(self.inception(x).double().cpu())

    def finish(self) -> dict:
        """Flush the buffers; returns ``{"i3d": (N, D) float64 array or None, "frames": FeatureStatistics or None}``."""
        if self.i3d is not None:
            self._flush_i3d()
        if self.inception is not None:
            self._flush_inception()
        i3d = np.concatenate(self._i3d_out) if self._i3d_out else None
        return {"i3d": i3d, "frames": self.frame_stats}


def fvd(generated: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet Video Distance between two ``(N, D)`` sets of I3D features (at least 2 videos each)."""
    for name, feats in (("generated", generated), ("reference", reference)):
        if feats is None or len(feats) < MIN_SAMPLES:
            n = 0 if feats is None else len(feats)
            raise InsufficientVideosError(f"FVD needs at least {MIN_SAMPLES} {name} videos for a covariance, got {n}")
    return frechet_distance(FeatureStatistics.from_features(generated), FeatureStatistics.from_features(reference))


def fid(generated: FeatureStatistics, reference: FeatureStatistics) -> float:
    """FID between the frame statistics of two video sets."""
    for name, stats in (("generated", generated), ("reference", reference)):
        if stats.count < MIN_SAMPLES:
            raise InsufficientVideosError(f"FID needs at least {MIN_SAMPLES} {name} frames, got {stats.count}")
    return frechet_distance(generated, reference)


class PairedScores:
    """Running means of per-frame PSNR, SSIM and LPIPS over paired videos (frames weighted equally)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.frames = 0
        self.videos = 0

    def add(self, scores: dict[str, torch.Tensor]) -> None:
        n = None
        for name, values in scores.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(values.double().sum())
            n = len(values)
        self.frames += n or 0
        self.videos += 1

    def means(self) -> dict[str, float]:
        return {name: total / self.frames for name, total in self.sums.items()} if self.frames else {}


@torch.inference_mode()
def paired_scores(
    generated: np.ndarray, reference: np.ndarray, lpips: nn.Module | None = None, first_frame: int = 1, device="cpu"
) -> dict[str, torch.Tensor]:
    """Per-frame PSNR (dB), SSIM and LPIPS between a generated video and its reference.

    Both are uint8 ``(T, H, W, 3)`` of one shape; frames before ``first_frame`` (the conditioning
    frame, by default) are left out. Returns ``{"psnr": (T',), "ssim": (T',), "lpips": (T',)}``.
    """
    if generated.shape != reference.shape:
        raise ValueError(f"paired videos differ in shape: {generated.shape} vs {reference.shape}")
    if first_frame >= len(generated):
        raise ValueError(f"no frames left to compare: {len(generated)} frames, first compared frame {first_frame}")
    x = _frames_to_float(generated[first_frame:], device)  # (T', 3, H, W)
    y = _frames_to_float(reference[first_frame:], device)
    scores = {"psnr": psnr(x, y).cpu(), "ssim": ssim(x, y).cpu()}
    if lpips is not None:
        scores["lpips"] = lpips(x, y).cpu()
    return scores


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def grouped_fvd(generated: np.ndarray, gen_groups: list, reference: np.ndarray, ref_groups: list) -> dict:
    """Conditional FVD: the FVD within each group (a class, a subject) between its generated and its real
    videos, averaged over the groups that have at least two videos on both sides.

    Returns ``{"fvd": mean over groups, "groups": {group: fvd}, "skipped": [groups with too few videos]}``;
    ``fvd`` is None when no group qualifies.
    """
    per, skipped = {}, []
    for g in sorted({*gen_groups, *ref_groups}, key=str):
        gi = [i for i, x in enumerate(gen_groups) if x == g]
        ri = [i for i, x in enumerate(ref_groups) if x == g]
        if min(len(gi), len(ri)) < 2:
            skipped.append(g)
            continue
        per[g] = fvd(generated[gi], reference[ri])
    return {"fvd": float(np.mean(list(per.values()))) if per else None, "groups": per, "skipped": skipped}
