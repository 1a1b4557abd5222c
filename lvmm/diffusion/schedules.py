"""Noise schedules, prediction types, training targets and loss weights, over diffusers' schedulers.

One :class:`DiffusionConfig` describes the forward process (``num_train_timesteps``, the beta
schedule, ``"linear"`` or ``"squaredcos_cap_v2"`` for the cosine schedule, and what the network
predicts: ``"epsilon"``, ``"v_prediction"`` or ``"sample"`` (x0)). :class:`Diffusion` builds from it:

* for training, a :class:`diffusers.DDPMScheduler` whose ``add_noise``/``get_velocity`` make x_t and
  the v target, timestep sampling, and optional min-SNR loss weighting (Hang et al., 2023);
* for sampling, the samplers of :mod:`lvmm.diffusion.sampling` (DDPM, DDIM, DPM-Solver++) built
  from the same betas with ``prediction_type="epsilon"``, because the sampling loop converts every
  model output to eps first (guidance terms act on eps);
* the conversion of a model output to (eps, x0) whatever the prediction type.

Numbers are diffusers'; only the bookkeeping around them is written here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "squaredcos_cap_v2": "squaredcos_cap_v2"}
SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
DPM_SOLVER_ORDER = 2


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process and the network's prediction type: everything samplers need to agree on."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # or "linear" (DDPM's betas 1e-4 .. 0.02)
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "v_prediction"  # "epsilon", "v_prediction" or "sample"

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, not {self.beta_schedule!r}")
        object.__setattr__(self, "beta_schedule", BETA_SCHEDULES[self.beta_schedule])
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, not {self.prediction_type!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> DiffusionConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def scheduler_kwargs(self) -> dict:
        """Arguments every diffusers scheduler gets: the betas, and no clipping of x0 (latents are unbounded)."""
        return dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
        )


def make_scheduler(config: DiffusionConfig, sampler: str = "ddim"):
    """A diffusers scheduler for ``sampler`` over ``config``'s betas, stepping on eps predictions.

    Timesteps are spaced ``"trailing"`` for every sampler, so the first step is at the last training
    timestep, where x_T is (close to) pure noise; diffusers' ``"leading"`` default for DDIM would start
    at t = 980 of 1000 with 50 steps, where the cosine schedule still leaves signal the noise lacks.
    """
    common = dict(config.scheduler_kwargs(), prediction_type="epsilon", timestep_spacing="trailing")
    if sampler == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small")
    if sampler == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if sampler == "dpmsolver++":
        return DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=DPM_SOLVER_ORDER, lower_order_final=True
        )
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars (B,) broadcast against a (B, ...) tensor."""
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


class Diffusion:
    """The forward process of a :class:`DiffusionConfig`: noising, targets, loss weights, conversions.

    Args:
        config: the schedule and prediction type.
        min_snr_gamma: clip the SNR at gamma in the loss weight (min-SNR weighting); None for plain
            MSE on the prediction target. With v or x0 prediction this keeps the weight of the noisiest
            steps from vanishing and of the cleanest from exploding (docs/design.md, v-prediction with min-SNR
            weighting).
    """

    def __init__(self, config: DiffusionConfig | None = None, min_snr_gamma: float | None = 5.0):
        self.config = config or DiffusionConfig()
        self.min_snr_gamma = min_snr_gamma
        self.scheduler = DDPMScheduler(
            **self.config.scheduler_kwargs(), prediction_type=self.config.prediction_type, clip_sample=False
        )
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float64)  # (num_train_timesteps,)

    @property
    def num_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t) and sigma_t = sqrt(1 - alpha_bar_t), shaped to broadcast against ``like``."""
        abar = self.alphas_cumprod.to(t.device)[t.long()]
        return _expand(abar.sqrt(), like), _expand((1 - abar).sqrt(), like)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod.to(t.device)[t.long()]
        return (abar / (1 - abar)).float()

    def sample_timesteps(self, batch: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training timesteps, uniform over 0 .. num_train_timesteps - 1: (B,) long."""
        return torch.randint(0, self.num_timesteps, (batch,), generator=generator, device=device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(x0, noise, t)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output at (x0, noise, t)."""
        kind = self.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.scheduler.get_velocity(x0, noise, t)
        return x0

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weights (B,): min-SNR-gamma expressed for the prediction type, or ones."""
        if self.min_snr_gamma is None:
            return torch.ones(t.shape, device=t.device)
        snr = self.snr(t)
        clipped = snr.clamp(max=self.min_snr_gamma)
        kind = self.config.prediction_type
        if kind == "epsilon":
            return clipped / snr
        if kind == "v_prediction":
            return clipped / (snr + 1)
        return clipped

    def training_loss(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x0: torch.Tensor,
        noise: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted denoising loss (a scalar) of ``model(x_t, t)`` on clean samples ``x0``."""
        noise = torch.randn_like(x0) if noise is None else noise
        t = self.sample_timesteps(x0.shape[0], x0.device) if t is None else t
        out = model(self.add_noise(x0, noise, t), t)
        per_sample = (out.float() - self.target(x0, noise, t).float()).pow(2).flatten(1).mean(1)
        return (self.loss_weight(t) * per_sample).mean()

    def to_eps_x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert a model output of the configured prediction type to (eps, x0)."""
        a, s = self.alpha_sigma(t, x_t)
        kind = self.config.prediction_type
        if kind == "epsilon":
            return output, (x_t - s * output) / a
        if kind == "v_prediction":
            return s * x_t + a * output, a * x_t - s * output
        return (x_t - a * output) / s, output

    def eps_to_x0(self, eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        return (x_t - s * eps) / a
