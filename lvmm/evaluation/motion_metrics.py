"""Measures of generated motion: the loop seam, and which motion family a field sequence shows.

* :func:`seam_metric`: the difference between the last and the first frame of a clip relative to
  the mean difference between neighbouring frames. A clip that loops without a seam scores near 0;
  one whose wrap-around is as large as an ordinary step scores 1.
* :class:`FamilyClassifier`: a small, transparent classifier (hand-made kinematic features of the
  displacement fields and a multinomial logistic regression) fit on motion fields of the procedural
  families; it labels generated motion to measure conditioning accuracy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def seam_metric(sequence: torch.Tensor) -> float:
    """Seam of a clip ``(T, C, H, W)`` (fields or rendered frames): |x_T - x_1| / mean_k |x_{k+1} - x_k|."""
    if sequence.shape[0] < 3:
        raise ValueError("the seam metric needs at least 3 frames")
    x = sequence.float()
    steps = (x[1:] - x[:-1]).abs().flatten(1).mean(1)   # (T-1,)
    seam = (x[-1] - x[0]).abs().mean()
    return float(seam / steps.mean().clamp_min(EPS))


def _gradients(field: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Finite-difference d/dx, d/dy of dx and dy; field (N, 2, H, W) -> four (N, H, W)."""
    dx, dy = field[:, 0], field[:, 1]
    gx = lambda a: F.pad(a[:, :, 1:] - a[:, :, :-1], (0, 1))
    gy = lambda a: F.pad(a[:, 1:, :] - a[:, :-1, :], (0, 0, 0, 1))
    return gx(dx), gy(dx), gx(dy), gy(dy)


def motion_features(fields: torch.Tensor) -> torch.Tensor:
    """Kinematic features of field sequences ``(N, T, 2, H, W)`` in pixels -> ``(N, F)``.

    Per frame: magnitude, divergence (mean and absolute: zoom vs ripple), curl (rotation),
    concentration of the motion (regional vs global), anisotropy (horizontal vs vertical) and how
    linearly the motion grows along an axis (sway); then mean and max over time, and how much the
    magnitude oscillates in time.
    """
    n, t, _, h, w = fields.shape
    f = fields.reshape(n * t, 2, h, w).float()
    mag = f.norm(dim=1)                                          # (NT, H, W)
    dxx, dxy, dyx, dyy = _gradients(f)
    div, curl = dxx + dyy, dyx - dxy
    total = mag.flatten(1).sum(1) + EPS
    top = mag.flatten(1).topk(max(1, (h * w) // 8), dim=1).values.sum(1)
    ys = torch.linspace(-1, 1, h).view(1, h, 1).expand_as(mag)
    xs = torch.linspace(-1, 1, w).view(1, 1, w).expand_as(mag)
    corr = lambda a, b: ((a - a.mean((1, 2), True)) * b).mean((1, 2)).abs() / (a.std((1, 2)) + EPS)
    per_frame = torch.stack([
        mag.mean((1, 2)),
        div.mean((1, 2)).abs(), div.abs().mean((1, 2)),
        curl.mean((1, 2)).abs(), curl.abs().mean((1, 2)),
        top / total,
        f[:, 0].abs().mean((1, 2)) / (mag.mean((1, 2)) + EPS),
        corr(f[:, 0], ys) + corr(f[:, 1], xs),
    ], 1).view(n, t, -1)                                         # (N, T, F0)
    m = per_frame[..., 0]
    oscillation = (m[:, 1:] - m[:, :-1]).abs().mean(1, keepdim=True)
    return torch.cat([per_frame.mean(1), per_frame.amax(1), oscillation, torch.log1p(m.mean(1, keepdim=True))], 1)


class FamilyClassifier:
    """Multinomial logistic regression on :func:`motion_features`, fit with L-BFGS."""

    def __init__(self, num_classes: int, weight_decay: float = 1e-3, iterations: int = 200):
        self.num_classes, self.weight_decay, self.iterations = num_classes, weight_decay, iterations

    def fit(self, fields: torch.Tensor, labels: torch.Tensor) -> "FamilyClassifier":
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
