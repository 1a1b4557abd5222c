"""One sampling loop for every sampler, with guidance, and one random generator per seed.

The loop, at each step of a diffusers scheduler (DDPM ancestral, DDIM with eta, DPM-Solver++ 2M;
:func:`lvmm.diffusion.schedules.make_scheduler`):

1. :class:`GuidedDenoiser` runs the network (conditional and unconditional passes batched together
   when classifier-free guidance is on), converts its output to eps whatever the prediction type,
   combines the passes, and adds the energy guidance terms' ``weight * sigma_t * grad_{x_t} L``, the
   gradient taken through the network (and any decoder) from the clean-sample estimate x0(x_t);
2. the scheduler, configured with ``prediction_type="epsilon"``, steps on that eps.

Seeds: sample i's initial noise and every stochastic step's noise come from its own
``torch.Generator`` seeded by ``seeds[i]`` (CPU generators, so results do not depend on the device's
RNG either); a seed gives the same sample whatever the batch it is drawn in.

Latent scale: the network works on latents multiplied by ``latent_scale`` (about unit std); guidance
terms and the returned samples are in data units (divided by it again).

Long sequences: the network may be a :class:`~lvmm.diffusion.windows.WindowedDenoiser`, which runs a
network of K frames on overlapping windows of a longer x_t; the loop does not know the difference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from lvmm.diffusion.guidance import ClassifierFreeGuidance, EnergyGuidance, GuidanceTerm, StepSchedule
from lvmm.diffusion.schedules import Diffusion, DiffusionConfig, make_scheduler
from lvmm.imagebind.encoder import condition_embedding

Conditions = Mapping[str, "torch.Tensor | None"]
"""Keyword arguments of the network besides (x_t, t), each batched along dim 0 (or None)."""

Model = Callable[..., torch.Tensor]
"""``model(x_t, t, **conditions) -> raw output`` of the configured prediction type."""


def _cat_conditions(cond: Conditions, uncond: Conditions) -> dict:
    if set(cond) != set(uncond):
        raise ValueError(f"conditional and unconditional inputs differ in keys: {sorted(cond)} vs {sorted(uncond)}")
    out = {}
    for k in cond:
        c, u = cond[k], uncond[k]
        if (c is None) != (u is None):
            raise ValueError(f"condition {k!r} is None in only one of the two passes")
        out[k] = None if c is None else torch.cat([c, u], dim=0)
    return out


class GuidedDenoiser:
    """The guided eps the sampling loop steps on: network passes, conversion to eps, guidance terms.

    Args:
        model: the network, ``model(x_t, t, **cond)``.
        config: the diffusion config the network was trained with (its prediction type matters here).
        cond: the conditional inputs (batch B).
        uncond: the unconditional inputs (batch B), needed with a :class:`ClassifierFreeGuidance` term.
        guidance: guidance terms; at most one classifier-free term, any number of energy terms.
        latent_scale: the network's latents are data latents times this; energy terms see data units.
        offset: added to the unscaled estimate before the energy terms see it (residual latents: z_0).
    """

    def __init__(
        self,
        model: Model,
        config: DiffusionConfig,
        cond: Conditions,
        uncond: Conditions | None = None,
        guidance: Sequence[GuidanceTerm] = (),
        latent_scale: float = 1.0,
        offset: torch.Tensor | None = None,
    ):
        self.model, self.diffusion = model, Diffusion(config, min_snr_gamma=None)
        self.cond, self.uncond, self.latent_scale = dict(cond), uncond, float(latent_scale)
        self.offset = offset
        cfg = [g for g in guidance if isinstance(g, ClassifierFreeGuidance)]
        self.energy = [g for g in guidance if isinstance(g, EnergyGuidance)]
        unknown = [g for g in guidance if not isinstance(g, (ClassifierFreeGuidance, EnergyGuidance))]
        if len(cfg) > 1 or unknown:
            raise ValueError("guidance takes at most one ClassifierFreeGuidance and any EnergyGuidance terms")
        self.cfg = cfg[0] if cfg else None
        if self.cfg is not None and uncond is None:
            raise ValueError("classifier-free guidance needs the unconditional inputs (uncond)")
        self._both = _cat_conditions(self.cond, uncond) if self.cfg is not None else None

    def eps(self, x: torch.Tensor, t: torch.Tensor, step: int, num_steps: int) -> torch.Tensor:
        """Network eps at (x_t, t), with classifier-free guidance when it is on at this step."""
        w = self.cfg.weight_at(step, num_steps) if self.cfg is not None else 0.0
        if w == 0.0:
            return self.diffusion.to_eps_x0(self.model(x, t, **self.cond), x, t)[0]
        x2, t2 = torch.cat([x, x]), torch.cat([t, t])
        eps_cond, eps_uncond = self.diffusion.to_eps_x0(self.model(x2, t2, **self._both), x2, t2)[0].chunk(2)
        return self.cfg.combine(eps_cond, eps_uncond, step, num_steps)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int, num_steps: int) -> torch.Tensor:
        """Guided eps (detached) for x_t (B, C, T, h, w) at timesteps t (B,)."""
        active = [(g, g.weight_at(step, num_steps)) for g in self.energy]
        active = [(g, w) for g, w in active if w != 0.0]
        if not active:
            with torch.no_grad():
                return self.eps(x, t, step, num_steps)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            eps = self.eps(x_in, t, step, num_steps)
            x0 = self.diffusion.eps_to_x0(eps, x_in, t) / self.latent_scale
            if self.offset is not None:
                x0 = x0 + self.offset
            # Sum the per-sample losses: each sample's gradient is then its own, whatever the batch.
            loss = sum(w * g.loss(x0).sum() for g, w in active)
            (grad,) = torch.autograd.grad(loss, x_in)
        _, sigma = self.diffusion.alpha_sigma(t, x)
        return (eps + sigma * grad).detach()


def generators_for(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per seed."""
    return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]


def run_sampler(
    denoiser: Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor],
    scheduler,
    x: torch.Tensor,
    generators: list[torch.Generator] | None = None,
    steps: int = 50,
    eta: float = 0.0,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run ``scheduler`` for ``steps`` steps from x_T, stepping on ``denoiser(x_t, t, step, num_steps) -> eps``.

    ``callback(step, num_steps)`` is called after each step (step counts from 1), e.g. for a progress bar.
    """
    scheduler.set_timesteps(steps, device=x.device)
    timesteps = scheduler.timesteps
    step_kwargs = {"generator": generators}
    if "eta" in inspect.signature(scheduler.step).parameters:  # DDIM's stochasticity
        step_kwargs["eta"] = eta
    if progress:
        from tqdm.auto import tqdm

        timesteps = tqdm(timesteps, desc="sampling", leave=False)
    n = len(scheduler.timesteps)
    for i, t in enumerate(timesteps):
        t_batch = t.to(x.device).long().expand(x.shape[0])
        eps = denoiser(scheduler.scale_model_input(x, t), t_batch, i, n)
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
        if callback is not None:
            callback(i + 1, n)
    return x


def sample(
    model: Model,
    config: DiffusionConfig,
    shape: Sequence[int],
    cond: Conditions,
    *,
    seeds: Sequence[int],
    uncond: Conditions | None = None,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    guidance: Sequence[GuidanceTerm] = (),
    latent_scale: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    offset: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Draw one sample per seed from the network; returns latents (len(seeds), *shape) in data units.

    Args:
        model: ``model(x_t, t, **cond) -> output`` of ``config.prediction_type``.
        config: the diffusion config the network was trained with.
        shape: one sample's shape (C, T, h, w).
        cond, uncond: the network's conditions for the conditional and the unconditional pass, batched
            as ``seeds``.
        seeds: one per sample; a seed's sample does not depend on the others in the batch.
        sampler: ``"ddpm"`` (ancestral; the paper uses 1000 steps), ``"ddim"`` (``eta`` = 0 is
            deterministic, 1 is DDPM-like) or ``"dpmsolver++"`` (second-order multistep, 10-50 steps).
        steps: number of sampling steps (at most ``config.num_train_timesteps``).
        guidance: :class:`ClassifierFreeGuidance` and energy terms such as :class:`LoopGuidance`.
        latent_scale: the network's latents are data latents times this.
        device, dtype: of the samples (the network's, normally).
        offset: the network diffuses data minus this (broadcast to the samples; residual latents: z_0);
            it is added back for the energy terms and to the result.
        callback: ``callback(step, num_steps)`` after each step.
    """
    if steps > config.num_train_timesteps:
        raise ValueError(f"{steps} steps exceed the {config.num_train_timesteps} training timesteps")
    scheduler = make_scheduler(config, sampler)
    generators = generators_for(seeds)
    device = torch.device(device) if device is not None else torch.device("cpu")
    x = randn_tensor((len(seeds), *shape), generator=generators, device=device, dtype=dtype)
    x = x * scheduler.init_noise_sigma
    denoiser = GuidedDenoiser(model, config, cond, uncond, guidance, latent_scale, offset)
    x = run_sampler(denoiser, scheduler, x, generators, steps=steps, eta=eta, progress=progress, callback=callback)
    return x / latent_scale + (0 if offset is None else offset)


def motion_conditions(
    z0: torch.Tensor,
    img_emb: torch.Tensor | None,
    txt_emb: torch.Tensor | None,
    appearance: torch.Tensor | None = None,
    has_txt: torch.Tensor | None = None,
    cond_dim: int | None = None,
    latent_scale: float = 1.0,
    amplitude: torch.Tensor | None = None,
) -> tuple[dict, dict]:
    """The :class:`~lvmm.nets.unet3d.UNet3D` inputs ``(cond, uncond)`` for one batch of first frames.

    ``z0`` (B, C, h, w) is in data units (scaled here); the tokens are (image, text), a missing one
    (None, or ``has_txt`` False) is masked so the network uses its null token; the unconditional pass
    masks both. ``cond_dim`` is needed only when both embeddings are None. Embeddings are unit-normalised
    (:func:`lvmm.imagebind.condition_embedding`), so text, audio and image prompts arrive at one scale.
    ``amplitude`` (B,): the motion amount in pixels of the field grid (a U-Net with
    ``amplitude_condition``); the unconditional pass masks it too.
    """
    b = z0.shape[0]
    img_emb, txt_emb = (
        None if e is None else condition_embedding(e) for e in (img_emb, txt_emb)
    )  # every modality at unit length
    ref = img_emb if img_emb is not None else txt_emb
    dim = ref.shape[-1] if ref is not None else cond_dim
    if dim is None:
        raise ValueError("cond_dim is needed when neither embedding is given")
    zeros = z0.new_zeros(b, dim)
    tokens = torch.stack([img_emb if img_emb is not None else zeros, txt_emb if txt_emb is not None else zeros], 1)
    keep_txt = torch.full((b,), txt_emb is not None, device=z0.device, dtype=torch.bool)
    if has_txt is not None:
        keep_txt = keep_txt & has_txt.to(z0.device).bool()
    keep = torch.stack([torch.full((b,), img_emb is not None, device=z0.device, dtype=torch.bool), keep_txt], 1)
    common = {"z0": z0 * latent_scale, "appearance": appearance}
    cond = dict(common, tokens=tokens.to(z0.dtype), token_mask=keep)
    uncond = dict(common, tokens=tokens.to(z0.dtype), token_mask=torch.zeros_like(keep))
    if amplitude is not None:
        a = torch.as_tensor(amplitude, dtype=z0.dtype, device=z0.device).reshape(-1).expand(b)
        cond.update(amplitude=a, amplitude_mask=torch.ones(b, dtype=torch.bool, device=z0.device))
        uncond.update(amplitude=a, amplitude_mask=torch.zeros(b, dtype=torch.bool, device=z0.device))
    return cond, uncond


def sample_motion(
    unet: Model,
    config: DiffusionConfig,
    z0: torch.Tensor,
    img_emb: torch.Tensor | None = None,
    txt_emb: torch.Tensor | None = None,
    *,
    num_frames: int,
    seeds: Sequence[int],
    latent_scale: float = 1.0,
    appearance: torch.Tensor | None = None,
    has_txt: torch.Tensor | None = None,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    guidance_scale: float = 0.0,
    guidance_interval: tuple[float, float] = (0.0, 1.0),
    guidance: Sequence[GuidanceTerm] = (),
    progress: bool = False,
    residual: bool = False,
    z0_scale: float | None = None,
    callback: Callable[[int, int], None] | None = None,
    amplitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Latent motion z_1..z_T (B, T, C, h, w), data units, for first-frame latents ``z0`` (B, C, h, w).

    A thin layer over :func:`sample` for :class:`~lvmm.nets.unet3d.UNet3D`: builds the conditions with
    :func:`motion_conditions`, adds :class:`ClassifierFreeGuidance` when ``guidance_scale`` > 0 (acting on
    the fraction ``guidance_interval`` of the steps, a :class:`StepSchedule`), and
    returns frames first (the layout of ``MotionModel.decode``). ``guidance`` adds further terms
    (e.g. :class:`~lvmm.diffusion.guidance.LoopGuidance`). ``residual``: the network was trained on
    z_k - z_0 (stage two's ``residual_latents``), so z_0 is added back; ``z0_scale`` scales the z_0
    condition (default ``latent_scale``). ``amplitude`` (B,) is the requested motion amount
    (:func:`motion_conditions`).
    """
    if len(seeds) != z0.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {z0.shape[0]} first frames")
    cond, uncond = motion_conditions(
        z0,
        img_emb,
        txt_emb,
        appearance,
        has_txt,
        getattr(unet, "cond_dim", None),
        latent_scale if z0_scale is None else z0_scale,
        amplitude,
    )
    terms = list(guidance)
    if guidance_scale:
        terms.append(ClassifierFreeGuidance(guidance_scale, StepSchedule(*guidance_interval)))
    h, w = z0.shape[-2:]
    x = sample(
        unet,
        config,
        (z0.shape[1], num_frames, h, w),
        cond,
        seeds=seeds,
        uncond=uncond,
        sampler=sampler,
        steps=steps,
        eta=eta,
        guidance=terms,
        latent_scale=latent_scale,
        device=z0.device,
        dtype=z0.dtype,
        progress=progress,
        offset=z0[:, :, None] if residual else None,
        callback=callback,
    )
    return x.transpose(1, 2)  # (B, T, C, h, w)
