"""Guidance terms: small objects the sampling loop consults at every step.

Two kinds, as in Stability's generative-models guiders:

* :class:`ClassifierFreeGuidance` combines the conditional and unconditional eps (the loop batches
  both passes): ``eps_hat = (1 + w) eps(x_t, y) - w eps(x_t, null)``.
* :class:`EnergyGuidance` terms define a per-sample loss ``L(x0)`` on the current clean-sample estimate;
  the loop adds ``weight * sigma_t * grad_{x_t} L`` to eps, the gradient flowing through the denoiser
  (and through the motion decoder the term applies, :meth:`EnergyGuidance.fields`). The terms
  (docs/method.md, Loop self-guidance and Motion controls):

  - :class:`LoopGuidance`: the last frame's displacement field is pulled towards the first one's;
  - :class:`MaskGuidance`: displacement outside a region mask is penalised (the region brush);
  - :class:`DragGuidance`: the displacement around each dragged point is pulled to the one that
    carries the point's content along its path (drag arrows).

Every term has a weight and a :class:`StepSchedule` that switches it on for part of the steps or ramps
it; a weight of 0 switches a term off (the loop then skips its passes and gradients altogether).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange

from lvmm.warp import forward_differences

RAMPS = ("constant", "increase", "decrease")

RUSH_EPS = 1e-6
"""Keeps the rush term finite for a still clip (normalised units: 1e-6 is 3e-5 px at 64 px)."""


@dataclass(frozen=True)
class StepSchedule:
    """When a guidance term acts: from fraction ``start`` to ``stop`` of the steps (the first step is 0.0).

    ``ramp`` shapes the factor within that window: ``"constant"`` (1), ``"increase"`` (0 -> 1) or
    ``"decrease"`` (1 -> 0), linear in the step index.
    """

    start: float = 0.0
    stop: float = 1.0
    ramp: str = "constant"

    def __post_init__(self):
        if self.ramp not in RAMPS:
            raise ValueError(f"ramp must be one of {RAMPS}, not {self.ramp!r}")
        if not 0.0 <= self.start <= self.stop <= 1.0:
            raise ValueError(f"need 0 <= start <= stop <= 1, got start={self.start}, stop={self.stop}")

    def __call__(self, step: int, num_steps: int) -> float:
        progress = step / max(num_steps, 1)
        if not self.start <= progress < self.stop:
            return 0.0
        if self.ramp == "constant":
            return 1.0
        within = (progress - self.start) / max(self.stop - self.start, 1e-12)
        return within if self.ramp == "increase" else 1.0 - within


class GuidanceTerm:
    """A guidance term with a weight and a step schedule."""

    def __init__(self, weight: float, schedule: StepSchedule | None = None):
        self.weight = float(weight)
        self.schedule = schedule or StepSchedule()

    def weight_at(self, step: int, num_steps: int) -> float:
        """The effective weight at ``step`` of ``num_steps`` (0 when the term is off)."""
        return self.weight * self.schedule(step, num_steps)


class ClassifierFreeGuidance(GuidanceTerm):
    """``eps_hat = (1 + w) eps(y) - w eps(null)``; w = 0 is plain conditional sampling."""

    def combine(self, eps_cond: torch.Tensor, eps_uncond: torch.Tensor, step: int, num_steps: int) -> torch.Tensor:
        w = self.weight_at(step, num_steps)
        return eps_cond + w * (eps_cond - eps_uncond)


class EnergyGuidance(GuidanceTerm):
    """A term that lowers a differentiable loss of the clean-sample estimate; subclasses define :meth:`loss`.

    Args:
        weight: the term's weight (0: off).
        decode: maps latents (B, T, C, h, w) in data units to motion fields (B, T, 3, H', W') (e.g.
            ``MotionModel.decode`` or, relative to the photo, ``lambda z: motion.decode_motion(z, z0)``);
            only the displacement channels (dx, dy) enter the losses. None: the terms act on the
            latents themselves (``fields`` returns them).
        schedule: when the term acts.
    """

    def __init__(
        self,
        weight: float,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        schedule: StepSchedule | None = None,
    ):
        super().__init__(weight, schedule)
        self.decode = decode

    def fields(self, x0: torch.Tensor) -> torch.Tensor:
        """What the loss sees: (B, T, 2, H', W') displacements, or (B, T, C, h, w) latents without a decoder."""
        z = rearrange(x0, "b c t h w -> b t c h w")
        return z if self.decode is None else self.decode(z)[:, :, :2]

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample loss (B,) of clean latents ``x0`` (B, C, T, h, w) in data units (not scaled)."""
        raise NotImplementedError


def spatial_gradient(fields: torch.Tensor) -> torch.Tensor:
    """Finite-difference x and y gradients of ``(..., C, H, W)`` fields, zero-padded to keep the size:
    (..., 2C, H, W)."""
    return torch.cat(forward_differences(fields), dim=-3)


class LoopGuidance(EnergyGuidance):
    """Loop self-guidance: ``L = |z_K - z_1|_1 + |grad z_K - grad z_1|_1`` on the decoded displacement fields,
    plus an optional rush term and an optional velocity term.

    The pull alone closes the loop by rushing: the clip drifts and its last step jumps back to z_1
    (docs/design.md, Loops that rush back). The rush term ``rush_weight * |s_K / mean_k s_k - 1|``, with
    ``s_k = mean |z_{k+1} - z_k|``, penalises a last step larger than the clip's mean step (a jump back)
    and one smaller (a hold: a one-sided version overshot into holds on a retrained model). It is
    scale-free, so unlike the velocity term it cannot be lowered by shrinking the whole motion.

    Args:
        weight: mu. Because L is a per-element mean, useful values are large (30-3000 in the CPU probe
            of docs/design.md, Loop guidance strength and schedule).
        decode: see :class:`EnergyGuidance` (None: L acts on the latents themselves).
        velocity_weight: weight of the optional velocity term ``|(z_K - z_{K-1}) - (z_2 - z_1)|_1``.
        rush_weight: weight of the rush term (relative to the per-element L1 terms, so small: the
            ratio's gradient is the L1 terms' divided by the mean step).
        schedule: when the term acts.
    """

    def __init__(
        self,
        weight: float,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        velocity_weight: float = 0.0,
        schedule: StepSchedule | None = None,
        rush_weight: float = 0.0,
    ):
        super().__init__(weight, decode, schedule)
        self.velocity_weight = float(velocity_weight)
        self.rush_weight = float(rush_weight)

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        f = self.fields(x0)
        first, last = f[:, 0], f[:, -1]  # (B, C, H, W)
        loss = (last - first).abs().flatten(1).mean(1)
        loss = loss + (spatial_gradient(last) - spatial_gradient(first)).abs().flatten(1).mean(1)
        if self.velocity_weight and f.shape[1] >= 3:
            end_velocity, start_velocity = f[:, -1] - f[:, -2], f[:, 1] - f[:, 0]
            loss = loss + self.velocity_weight * (end_velocity - start_velocity).abs().flatten(1).mean(1)
        if self.rush_weight and f.shape[1] >= 3:
            step = (f[:, 1:] - f[:, :-1]).abs().flatten(2).mean(2)  # (B, K-1)
            loss = loss + self.rush_weight * (step[:, -1] / (step.mean(1) + RUSH_EPS) - 1).abs()
        return loss


class MaskGuidance(EnergyGuidance):
    """The region brush as guidance: ``L = mean_{k, x} (1 - m(x)) |d_k(x)|_1`` on the decoded displacements.

    Args:
        weight: the term's weight (a per-element mean, like :class:`LoopGuidance`'s mu).
        mask: (H', W') in [0, 1] on the decoded fields' grid; 1 may move, 0 should stay.
        decode: latents -> fields (:class:`EnergyGuidance`); use one relative to the photo
            (``decode_motion``), so that "no motion" is a zero displacement.
        schedule: when the term acts.
    """

    def __init__(
        self,
        weight: float,
        mask: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        schedule: StepSchedule | None = None,
    ):
        super().__init__(weight, decode, schedule)
        self.mask = torch.as_tensor(mask, dtype=torch.float32)  # (H', W')

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        d = self.fields(x0)  # (B, T, 2, H', W')
        still = 1 - self.mask.to(d)  # (H', W')
        return (still * d.abs().sum(2)).flatten(1).mean(1)


class DragGuidance(EnergyGuidance):
    """Drag arrows as guidance: the displacement near each dragged point's path is pulled to the one that
    carries the point's content there.

    With backward warping (``I_k(x) = I_0(x + d_k(x))``), content that started at p and is at c_k in
    frame k needs ``d_k(x) = p - c_k`` around c_k. With a Gaussian window g_{k,j}(x) of radius
    ``radius`` around c_{k,j} for drag j:

        L = mean_{k, j} sum_x g_{k,j}(x) |d_k(x) - (p_j - c_{k,j})|_1 / sum_x g_{k,j}(x)

    Args:
        weight: the term's weight.
        start: (J, 2) start points p_j in the fields' normalised units (x, y).
        path: (T, J, 2) where each drag's content should be at each generated frame, same units.
        radius: (2,) the Gaussian's standard deviation along x and y in normalised units.
        decode: latents -> fields relative to the photo (:class:`EnergyGuidance`).
        schedule: when the term acts.
    """

    def __init__(
        self,
        weight: float,
        start: torch.Tensor,
        path: torch.Tensor,
        radius: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        schedule: StepSchedule | None = None,
    ):
        super().__init__(weight, decode, schedule)
        self.start = torch.as_tensor(start, dtype=torch.float32)  # (J, 2)
        self.path = torch.as_tensor(path, dtype=torch.float32)  # (T, J, 2)
        self.radius = torch.as_tensor(radius, dtype=torch.float32).reshape(2)

    def windows(self, height: int, width: int) -> torch.Tensor:
        """Gaussian windows (T, J, H', W') around the path points on a grid of ``height`` x ``width``."""
        ys = (torch.arange(height, dtype=torch.float32) * 2 + 1) / height - 1
        xs = (torch.arange(width, dtype=torch.float32) * 2 + 1) / width - 1
        gx = (xs.view(1, 1, 1, -1) - self.path[..., 0, None, None]) / self.radius[0]
        gy = (ys.view(1, 1, -1, 1) - self.path[..., 1, None, None]) / self.radius[1]
        return torch.exp(-0.5 * (gx**2 + gy**2))  # (T, J, H', W')

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        d = self.fields(x0)  # (B, T, 2, H', W')
        if d.shape[1] != self.path.shape[0]:
            raise ValueError(f"drag path has {self.path.shape[0]} frames, the sample {d.shape[1]}")
        g = self.windows(*d.shape[-2:]).to(d)  # (T, J, H', W')
        target = (self.start[None] - self.path).to(d)  # (T, J, 2)
        err = (d[:, :, None] - target[None, :, :, :, None, None]).abs().sum(3)  # (B, T, J, H', W')
        per = (g * err).flatten(-2).sum(-1) / g.flatten(-2).sum(-1).clamp_min(1e-8)  # (B, T, J)
        return per.flatten(1).mean(1)
