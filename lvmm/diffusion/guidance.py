"""Guidance terms: small objects the sampling loop consults at every step.

Two kinds, as in Stability's generative-models guiders:

* :class:`ClassifierFreeGuidance` combines the conditional and unconditional eps (the loop batches
  both passes): ``eps_hat = (1 + w) eps(x_t, y) - w eps(x_t, null)``.
* :class:`EnergyGuidance` terms define a per-sample loss ``L(x0)`` on the current clean-sample estimate;
  the loop adds ``weight * sigma_t * grad_{x_t} L`` to eps, the gradient flowing through the denoiser
  (and through any decoder the term applies). :class:`LoopGuidance` is the loop self-guidance of
  docs/method.md, Loop self-guidance: the last frame's displacement field is pulled towards the first one's.

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
    """A term that lowers a differentiable loss of the clean-sample estimate; subclasses define :meth:`loss`."""

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample loss (B,) of clean latents ``x0`` (B, C, T, h, w) in data units (not scaled)."""
        raise NotImplementedError


def spatial_gradient(fields: torch.Tensor) -> torch.Tensor:
    """Finite-difference x and y gradients of ``(..., C, H, W)`` fields, zero-padded to keep the size:
    (..., 2C, H, W)."""
    return torch.cat(forward_differences(fields), dim=-3)


class LoopGuidance(EnergyGuidance):
    """Loop self-guidance: ``L = |z_K - z_1|_1 + |grad z_K - grad z_1|_1`` on the decoded displacement fields.

    Args:
        weight: mu. Because L is a per-element mean, useful values are large (30-3000 in the CPU probe
            of docs/design.md, Loop guidance strength and schedule).
        decode: maps latents (B, T, C, h, w) in data units to motion fields (B, T, 3, H', W') (e.g.
            ``MotionModel.decode``); only the displacement channels (dx, dy) enter L. None: L acts on the
            latents themselves.
        velocity_weight: weight of the optional velocity term ``|(z_K - z_{K-1}) - (z_2 - z_1)|_1``.
        schedule: when the term acts.
    """

    def __init__(
        self,
        weight: float,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        velocity_weight: float = 0.0,
        schedule: StepSchedule | None = None,
    ):
        super().__init__(weight, schedule)
        self.decode, self.velocity_weight = decode, float(velocity_weight)

    def fields(self, x0: torch.Tensor) -> torch.Tensor:
        """What L compares: (B, T, 2, H', W') displacements, or (B, T, C, h, w) latents without a decoder."""
        z = rearrange(x0, "b c t h w -> b t c h w")
        return z if self.decode is None else self.decode(z)[:, :, :2]

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        f = self.fields(x0)
        first, last = f[:, 0], f[:, -1]  # (B, C, H, W)
        loss = (last - first).abs().flatten(1).mean(1)
        loss = loss + (spatial_gradient(last) - spatial_gradient(first)).abs().flatten(1).mean(1)
        if self.velocity_weight and f.shape[1] >= 3:
            end_velocity, start_velocity = f[:, -1] - f[:, -2], f[:, 1] - f[:, 0]
            loss = loss + self.velocity_weight * (end_velocity - start_velocity).abs().flatten(1).mean(1)
        return loss
