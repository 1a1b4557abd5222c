"""The animation pipeline: a still image (and an optional prompt) in, animated frames out.

1. The image is brought to a working size that the networks accept (resized, or padded, to a
   multiple of the model's size step) and restored to its own size at the end.
2. Conditions: ImageBind embeddings of the image and of the prompt (a text, an audio file, or another
   image: any ImageBind modality fills the second token), and z_0 = E(P(I_0, I_0)).
3. Latent motion z_1..z_K is sampled by :func:`lvmm.diffusion.sampling.sample_motion` with
   classifier-free guidance and, for loops, loop self-guidance through the motion decoder.
4. Fields D(z_k) are optionally interpolated in time (slow motion) and rendered from I_0 by R.

Each seed has its own random generator, so a seed's animation does not depend on the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lvmm.diffusion import LoopGuidance, StepSchedule, load_motion_diffusion
from lvmm.diffusion.sampling import sample_motion
from lvmm.evaluation.motion_metrics import seam_metric
from lvmm.media import to_float, to_uint8
from lvmm.motion import MotionModel

SIZE_STEP = 32
"""Frames must be multiples of this (DESIGN.md: any size divisible by 32)."""

LOOP_GUIDANCE_START = 0.3
"""Loop guidance acts from this fraction of the steps on. At the first steps of the cosine schedule
alpha_t is near 0, so ``mu * sigma_t * grad`` moves the clean-sample estimate by about
``mu * sigma_t**2 / alpha_t``: with the L1 loss, whose gradient does not shrink near the optimum, that
overshoots and the seam grows (measured on the demo model: mu = 300 from step 0 raised the seam from
2.4 to 3.2; from 30 % of the steps on, mu = 1e4 lowered it to 0.6 and kept ~70 % of the motion)."""


class AnimationError(ValueError):
    """A request that cannot be served (size, checkpoint or condition mismatch); the message says why."""


@dataclass
class AnimationOptions:
    """How to sample and render one animation."""

    num_frames: int | None = None      # K generated frames; default: the stage-two training length
    sampler: str = "ddim"              # "ddpm", "ddim" or "dpmsolver++"
    steps: int = 50
    eta: float = 0.0                   # DDIM only
    guidance_scale: float = 1.0        # classifier-free weight w (0: conditional only)
    loop_guidance: float = 0.0         # mu of loop self-guidance (0: off; a seamless loop needs > 0)
    loop_velocity: float = 0.0         # weight of the optional velocity term
    loop_schedule: tuple[float, float] = (LOOP_GUIDANCE_START, 1.0)  # fraction of the steps where it acts
    slow_motion: int = 1               # N: insert N - 1 interpolated fields between neighbours
    chunk_size: int = 8                # frames rendered at once
    fit: str = "resize"                # "resize" or "pad" to the working size
    size: int | None = None            # working short side; default: the training size
    field_transform: Callable[[torch.Tensor], torch.Tensor] | None = None  # edits decoded fields (B, K, 3, h, w) before rendering


@dataclass
class Animation:
    """One result: frames at the input's size, decoded fields, and its loop seam."""

    seed: int
    frames: np.ndarray                 # (T, H, W, 3) uint8
    fields: torch.Tensor               # (T, 3, h, w) float, (dx, dy, w) in normalised units
    loop: bool
    seam: dict = field(default_factory=dict)


def interpolate_fields(fields: torch.Tensor, factor: int, wrap: bool = False) -> torch.Tensor:
    """Insert ``factor - 1`` linear interpolations between neighbouring fields (..., T, C, h, w).

    ``wrap`` also interpolates from the last field back to the first (for loops), so the result has
    ``T * factor`` fields; otherwise ``(T - 1) * factor + 1``.
    """
    if factor < 1:
        raise AnimationError(f"slow motion factor must be at least 1, got {factor}")
    if factor == 1:
        return fields
    seq = torch.cat([fields, fields[..., :1, :, :, :]], dim=-4) if wrap else fields
    a, b = seq[..., :-1, :, :, :], seq[..., 1:, :, :, :]
    weights = torch.arange(factor, dtype=fields.dtype, device=fields.device) / factor   # (N,)
    w = weights.view(*([1] * (a.dim() - 4)), 1, factor, 1, 1, 1)
    mixed = a.unsqueeze(-4) * (1 - w) + b.unsqueeze(-4) * w                               # (..., T-1, N, C, h, w)
    out = mixed.flatten(-5, -4)
    return out if wrap else torch.cat([out, fields[..., -1:, :, :, :]], dim=-4)


def working_size(height: int, width: int, short_side: int, step: int) -> tuple[int, int]:
    """Resize target: short side ``short_side``, aspect kept, both sides rounded to multiples of ``step``."""
    scale = short_side / min(height, width)
    h = max(step, int(round(height * scale / step)) * step)
    w = max(step, int(round(width * scale / step)) * step)
    return h, w


class Animator:
    """Stage one + stage two + ImageBind behind one call: :meth:`animate`.

    Build it with :meth:`from_checkpoints`. ``encoder`` is an :class:`lvmm.imagebind.ImageBindEncoder`
    whose embedding size matches the stage-two model's condition size.
    """

    def __init__(self, motion: MotionModel, unet, config, extra: dict, encoder, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.motion, self.unet = motion.to(self.device).eval(), unet.to(self.device).eval()
        self.config, self.extra, self.encoder = config, extra, encoder
        if encoder is not None and encoder.dim != extra["cond_dim"]:
            raise AnimationError(f"ImageBind embeddings have {encoder.dim} dimensions but the stage-two model expects "
                                 f"{extra['cond_dim']}: use the ImageBind weights the latents were made with")
        self.step = max(SIZE_STEP, motion.latent_downsample * int(extra.get("latent_multiple", 1)))

    @classmethod
    def from_checkpoints(cls, stage_two: str | Path, stage_one: str | Path | None = None, imagebind: str | None = None,
                         imagebind_config: str | None = None, device=None) -> "Animator":
        """Load both stages (stage one defaults to the path recorded in the stage-two checkpoint)."""
        from lvmm.imagebind import ImageBindEncoder

        unet, config, extra = load_motion_diffusion(stage_two)
        stage_one = stage_one or extra.get("motion_checkpoint")
        if not stage_one:
            raise AnimationError(f"{stage_two}: records no stage-one checkpoint; pass one explicitly")
        motion = MotionModel.from_checkpoint(stage_one)
        encoder = ImageBindEncoder(weights=imagebind, config=imagebind_config or ("huge" if imagebind else "tiny"), device=device)
        return cls(motion, unet, config, extra, encoder, device)

    # ------------------------------------------------------------------ conditions
    def _prompt_embedding(self, prompt: str | None, audio: str | None, image: str | np.ndarray | None) -> torch.Tensor | None:
        given = [x is not None for x in (prompt, audio, image)]
        if sum(given) > 1:
            raise AnimationError("give at most one of a text prompt, an audio file or a condition image")
        if prompt is not None:
            return self.encoder.embed_texts([prompt])
        if audio is not None:
            return self.encoder.embed_audio([audio])
        if image is not None:
            return self.encoder.embed_images([image])
        return None

    def _prepare(self, image: np.ndarray, options: AnimationOptions) -> torch.Tensor:
        h, w = image.shape[:2]
        x = to_float(image)[None].to(self.device)                                   # (1, 3, H, W)
        if options.fit == "pad":
            ph, pw = -h % self.step, -w % self.step
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        if options.fit != "resize":
            raise AnimationError(f"fit must be 'resize' or 'pad', not {options.fit!r}")
        short = options.size or self.extra.get("frame_size") or min(h, w)
        target = working_size(h, w, int(short), self.step)
        return F.interpolate(x, size=target, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)

    def _restore(self, frames: torch.Tensor, height: int, width: int, options: AnimationOptions) -> torch.Tensor:
        if options.fit == "pad":
            return frames[..., :height, :width]
        t = frames.shape[0]
        return F.interpolate(frames.reshape(t, *frames.shape[-3:]), size=(height, width), mode="bilinear", align_corners=False)

    # ------------------------------------------------------------------ generation
    def animate(self, image: np.ndarray, seeds: Sequence[int], options: AnimationOptions | None = None,
                prompt: str | None = None, audio: str | None = None, cond_image=None, progress: bool = False,
                callback: Callable[[int, int], None] | None = None) -> list[Animation]:
        """Animate one ``(H, W, 3)`` uint8 image once per seed (one batch, one generator per seed).

        ``callback(step, num_steps)`` is called after each sampling step.
        """
        options = options or AnimationOptions()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise AnimationError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if min(height, width) < SIZE_STEP:
            raise AnimationError(f"image of {width}x{height} is too small: both sides must be at least {SIZE_STEP}")
        k = options.num_frames or int(self.extra["num_frames"])
        if k < 2 or k > int(self.extra.get("max_frames", k)):
            raise AnimationError(f"num_frames must be between 2 and {self.extra.get('max_frames')}, got {k}")
        seeds = [int(s) for s in seeds]
        b = len(seeds)
        img0 = self._prepare(image, options)                                        # (1, 3, H', W')
        with torch.no_grad():
            z0 = self.motion.encode_field(self.motion.predict_field(img0, img0))    # (1, C, hz, wz)
            img_emb = self.encoder.embed_images([to_uint8(img0[0])]).to(self.device)
            prompt_emb = self._prompt_embedding(prompt, audio, cond_image)
            appearance = self.motion.appearance(img0) if self.extra.get("appearance_channels") else None
        rep = lambda x: None if x is None else x.expand(b, *x.shape[1:]).to(self.device)
        guidance = []
        loop = options.loop_guidance > 0
        if loop:
            guidance.append(LoopGuidance(options.loop_guidance, decode=self.motion.decode, velocity_weight=options.loop_velocity,
                                         schedule=StepSchedule(*options.loop_schedule)))
        z = sample_motion(self.unet, self.config, rep(z0), rep(img_emb), rep(prompt_emb), num_frames=k, seeds=seeds,
                          latent_scale=float(self.extra.get("latent_scale", 1.0)), appearance=rep(appearance),
                          sampler=options.sampler, steps=options.steps, eta=options.eta,
                          guidance_scale=options.guidance_scale, guidance=guidance, progress=progress,
                          callback=callback)  # (B, K, C, hz, wz)
        results = []
        with torch.no_grad():
            fields = self.motion.decode(z)                                           # (B, K, 3, h, w)
            if options.field_transform is not None:
                fields = options.field_transform(fields)
            base = self.motion.render(img0.expand(b, -1, -1, -1), fields, options.chunk_size)  # (B, K, 3, H', W')
            for i, seed in enumerate(seeds):
                seam = {"field": seam_metric(fields[i][:, :2]), "frames": seam_metric(base[i])}
                f = fields[i]
                if not loop:  # a clip starts at I_0 itself: the identity field with full intention weight
                    identity = torch.zeros_like(f[:1])
                    identity[:, 2] = 1.0
                    f = torch.cat([identity, f])
                if options.slow_motion == 1:
                    frames = base[i] if loop else torch.cat([img0, base[i]])
                    dense = f
                else:
                    dense = interpolate_fields(f, options.slow_motion, wrap=loop)
                    frames = self.motion.render(img0, dense[None], options.chunk_size)[0]  # (T, 3, H', W')
                out = self._restore(frames.clamp(0, 1), height, width, options)
                results.append(Animation(seed=seed, frames=to_uint8(out), fields=dense.cpu(), loop=loop, seam=seam))
        return results
