"""Measures of generated motion: loops as they play, pops, motion size, sharpness, and motion families.

Sequence measures take ``(T, C, H, W)`` tensors (decoded fields or rendered frames) *as they play*:

* :func:`wrap_ratio`: |x_last - x_first| / median ordinary step. A loop played as a cycle is seamless
  at 1 (the wrap is an ordinary step); well below 1 the wrap holds a (nearly) repeated frame, above 1 it jumps.
* :func:`pop_ratio`: step(0 -> 1) / median of the later steps: how much larger the step out of the
  first frame (the photo itself) is than the steps between generated frames.
* :func:`mean_magnitude`: mean displacement length in pixels; :func:`motion_kept` is the ratio of two.
* :func:`sharpness`: mean gradient magnitude of frames.
* :class:`FamilyClassifier`: a small, transparent classifier (hand-made kinematic features of the
  displacement fields and a multinomial logistic regression) fit on motion fields of the procedural
  families; it labels generated motion to measure conditioning accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from lvmm.warp import forward_differences

EPS = 1e-8
# Mean displacement (pixels of the field grid) below which motion is not seen: the held-out demo photos
# at 64 px have a mean gradient of 10 levels per pixel (median 2.4), so 0.05 px changes a pixel by half an
# 8-bit level on average. The classifier's scale-free features (how
# concentrated, how anisotropic, how axis-aligned the motion is) divide by the motion itself, so without a
# floor an invisible 0.02-px residue gets a definite "shape" and is labelled sway or drift.
VISIBLE_MOTION_PX = 0.05


def steps(sequence) -> torch.Tensor:
    """Mean absolute difference of each pair of neighbouring frames of ``(T, ...)``: (T - 1,) float64.

    Accepts tensors or uint8 arrays; frames are differenced one pair at a time, so a long
    full-resolution uint8 clip is never converted to float as a whole.
    """
    x = sequence
    out = [
        float((torch.as_tensor(x[k + 1]).double() - torch.as_tensor(x[k]).double()).abs().mean())
        for k in range(len(x) - 1)
    ]
    return torch.tensor(out, dtype=torch.float64)


def wrap_ratio(sequence) -> float:
    """|x_last - x_first| / median_k |x_{k+1} - x_k| of a sequence ``(T, ...)`` as it plays (T >= 3)."""
    if len(sequence) < 3:
        raise ValueError("the wrap ratio needs at least 3 frames")
    wrap = float((torch.as_tensor(sequence[-1]).double() - torch.as_tensor(sequence[0]).double()).abs().mean())
    return wrap / max(float(steps(sequence).median()), EPS)


def pop_ratio(sequence) -> float:
    """step(0 -> 1) / median of the later steps of ``(T, ...)`` (T >= 3): 1 = no pop out of frame 0."""
    if len(sequence) < 3:
        raise ValueError("the pop ratio needs at least 3 frames")
    s = steps(sequence)
    return float(s[0]) / max(float(s[1:].median()), EPS)


def mean_magnitude(fields_px: torch.Tensor) -> float:
    """Mean displacement length of fields ``(..., 2, H, W)`` in pixels."""
    return float(fields_px[..., :2, :, :].float().norm(dim=-3).mean())


def motion_kept(with_px: torch.Tensor, without_px: torch.Tensor) -> float:
    """Mean displacement with loop guidance / without (same seeds and first frames)."""
    return mean_magnitude(with_px) / max(mean_magnitude(without_px), EPS)


def sharpness(frames: Iterable) -> float:
    """Mean gradient magnitude (0-255 scale) of the luminance of uint8 frames ``(T, H, W, 3)`` or one ``(H, W, 3)``."""
    frames = np.asarray(frames)
    frames = frames[None] if frames.ndim == 3 else frames
    values = []
    for f in frames:  # one frame at a time: full-resolution clips stay uint8
        y = f.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        gx, gy = np.diff(y, axis=1)[:-1], np.diff(y, axis=0)[:, :-1]
        values.append(float(np.sqrt(gx**2 + gy**2).mean()))
    return float(np.mean(values))


def _gradients(field: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Finite-difference d/dx, d/dy of dx and dy; field (N, 2, H, W) -> four (N, H, W)."""
    gx, gy = forward_differences(field)
    return gx[:, 0], gy[:, 0], gx[:, 1], gy[:, 1]


def motion_features(fields: torch.Tensor, floor: float = VISIBLE_MOTION_PX) -> torch.Tensor:
    """Kinematic features of field sequences ``(N, T, 2, H, W)`` in pixels -> ``(N, F)``.

    Per frame: magnitude, divergence (mean and absolute: zoom vs ripple), curl (rotation),
    concentration of the motion (regional vs global), anisotropy (horizontal vs vertical) and how
    linearly the motion grows along an axis (sway); then mean and max over time, and how much the
    magnitude oscillates in time. The scale-free features divide by the motion plus ``floor`` (pixels of
    mean displacement, :data:`VISIBLE_MOTION_PX`), so they fade to 0 for motion too small to see, as
    they are for a still clip, instead of describing its noise.
    """
    n, t, _, h, w = fields.shape
    f = fields.reshape(n * t, 2, h, w).float()
    mag = f.norm(dim=1)  # (NT, H, W)
    dxx, dxy, dyx, dyy = _gradients(f)
    div, curl = dxx + dyy, dyx - dxy
    floor = max(floor, EPS)
    total = mag.flatten(1).sum(1) + floor * h * w
    top = mag.flatten(1).topk(max(1, (h * w) // 8), dim=1).values.sum(1)
    ys = torch.linspace(-1, 1, h).view(1, h, 1).expand_as(mag)
    xs = torch.linspace(-1, 1, w).view(1, 1, w).expand_as(mag)
    corr = lambda a, b: ((a - a.mean((1, 2), True)) * b).mean((1, 2)).abs() / (a.std((1, 2)) + floor)
    per_frame = torch.stack(
        [
            mag.mean((1, 2)),
            div.mean((1, 2)).abs(),
            div.abs().mean((1, 2)),
            curl.mean((1, 2)).abs(),
            curl.abs().mean((1, 2)),
            top / total,
            f[:, 0].abs().mean((1, 2)) / (mag.mean((1, 2)) + floor),
            corr(f[:, 0], ys) + corr(f[:, 1], xs),
        ],
        1,
    ).view(n, t, -1)  # (N, T, F0)
    m = per_frame[..., 0]
    oscillation = (m[:, 1:] - m[:, :-1]).abs().mean(1, keepdim=True)
    return torch.cat([per_frame.mean(1), per_frame.amax(1), oscillation, torch.log1p(m.mean(1, keepdim=True))], 1)


class FamilyClassifier:
    """Multinomial logistic regression on :func:`motion_features`, fit with L-BFGS."""

    def __init__(self, num_classes: int, weight_decay: float = 1e-3, iterations: int = 200):
        self.num_classes, self.weight_decay, self.iterations = num_classes, weight_decay, iterations

    def fit(self, fields: torch.Tensor, labels: torch.Tensor) -> FamilyClassifier:
        x = motion_features(fields)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        x = (x - self.mean) / self.std
        self.linear = torch.nn.Linear(x.shape[1], self.num_classes)
        opt = torch.optim.LBFGS(self.linear.parameters(), max_iter=self.iterations, line_search_fn="strong_wolfe")
        labels = labels.long()

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(self.linear(x), labels) + self.weight_decay * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    @torch.no_grad()
    def predict(self, fields: torch.Tensor) -> torch.Tensor:
        x = (motion_features(fields) - self.mean) / self.std
        return self.linear(x).argmax(1)

    def accuracy(self, fields: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(fields) == labels.long()).float().mean())
