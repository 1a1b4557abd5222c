"""The animation pipeline: a still image (and an optional prompt) in, animated frames out.

1. The image is brought to the working size: by default the short side the stage-two model was
   trained at (recorded in its checkpoint), aspect kept, both sides multiples of 32 (``--size`` sets
   the short side; ``fit="pad"`` pads instead of stretching to the multiple).
2. Conditions: ImageBind embeddings of the image and of the prompt (a text, an audio file, or another
   image: any ImageBind modality fills the second token), and z_0 = E(P(I_0, I_0)).
3. Latent motion z_1..z_K is sampled by :func:`lvmm.diffusion.sampling.sample_motion` with
   classifier-free guidance and, for loops, loop self-guidance through the motion decoder. When the
   U-Net needs a larger latent multiple than the frame gives, the latents are padded inside
   (:class:`PaddedDenoiser`), never the photo.
4. Fields D(z_k) are optionally interpolated in time (slow motion) and applied to the photo at its
   own resolution (:func:`lvmm.rendering.render_photo`), R filling only where w says warping cannot.

A loop plays frames 1..K-1: loop guidance pulls z_K to z_1, so frame K would repeat frame 1 at the
wrap. What guidance leaves of the mismatch D(z_K) - D(z_1) is then spread over the clip
(:func:`close_loop`), so the wrap K-1 -> 1 is the ordinary step K-1 -> K. Each seed has its own
random generator, so a seed's animation does not depend on the batch.

Motion controls (:mod:`lvmm.controls`, README "Motion controls"): ``motion_scale`` multiplies the
decoded displacement; ``motion_amount`` conditions a U-Net trained with ``amplitude_condition``;
``region_mask`` (the brush) guides sampling (:class:`~lvmm.diffusion.guidance.MaskGuidance`) and
stills the black region of the rendered frames; ``drags`` guide sampling
(:class:`~lvmm.diffusion.guidance.DragGuidance`) and correct the decoded field so each dragged point
arrives exactly; ``total_frames`` makes long clips: loops repeat, other clips are denoised as overlapping
windows of K frames at once (:class:`~lvmm.diffusion.windows.WindowedDenoiser`). Edits apply in the order
scale, drags, mask: the brush has the last word (a drag into the still region stops at its edge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lvmm import controls
from lvmm.allocator import retain_freed_memory
from lvmm.diffusion import DragGuidance, LoopGuidance, MaskGuidance, StepSchedule, load_motion_diffusion
from lvmm.diffusion.sampling import sample_motion
from lvmm.diffusion.windows import WindowedDenoiser, window_starts
from lvmm.evaluation.motion_metrics import mean_magnitude, pop_ratio, wrap_ratio
from lvmm.media import to_float, to_uint8
from lvmm.motion import MotionModel
from lvmm.rendering import render_photo
from lvmm.warp import normalised_to_pixels

SIZE_STEP = 32
"""Frames must be multiples of this (docs/conventions.md, Sizes)."""

DEFAULT_MAX_WORKING_SIDE = 512
"""Working short side for a checkpoint that records no training size (the photo's own, at most this)."""

LOOP_GUIDANCE_START = 0.3
"""Loop guidance acts from this fraction of the steps on. At the first steps of the cosine schedule
alpha_t is near 0, so ``mu * sigma_t * grad`` moves the clean-sample estimate by about
``mu * sigma_t**2 / alpha_t``: with the L1 loss, whose gradient does not shrink near the optimum, that
overshoots (measured on the demo model: mu = 300 from step 0 made the loop worse; from 30 % of the
steps on, mu = 1e4 pulled z_K to z_1)."""


DEFAULT_LOOP_GUIDANCE = 2e4
"""mu of loop self-guidance when a loop is asked for without one (what suits the tiny demo model)."""

DEFAULT_LOOP_RUSH = 0.002
"""Weight of loop guidance's rush term (:class:`~lvmm.diffusion.LoopGuidance`), two-sided: the last step
is pulled to the mean step from above (a jump back) and from below (a hold). On the demo model of
2026-12-04 (8 loops of the 2 held-out photos at seeds the report does not use, DDIM-50, mu = 2e4) the
wrap ratio was 1.23 in the fields (per loop 1.00-1.62) and 0.95 of the motion was kept; the one-sided
term of the same weight held instead (0.36) and without the term the loops jumped (1.27, per loop
0.55-2.53). Weights 0.001-0.004 gave 1.19-1.23 (docs/design.md, A rush term, scale-free)."""

DEFAULT_GUIDANCE_SCALE = 3.0
"""Classifier-free weight w of an animation unless one is asked for. Without guidance the demo model's
samples move 0.63x as far as the held-out clips they start from (DDIM; 0.40x with stochastic DDIM,
0.50x with DDPM): a small model's prediction regresses towards the mean, which shrinks the motion and
more so the more noise the sampler re-injects. Guidance restores it: generated / true was 0.91 at
w = 2, 1.03 at w = 3, 1.09 at w = 4 and 1.23 at w = 5 (24 held-out clips, docs/design.md)."""

DEFAULT_GUIDANCE_INTERVAL = (0.0, 1.0)
"""Fraction of the sampling steps on which classifier-free guidance acts (first step 0.0), after
Kynkäänniemi et al. 2024 (guidance in a limited interval): (0, 1) guides every step."""

CONTROL_GUIDANCE_START = LOOP_GUIDANCE_START
"""Mask and drag guidance act from this fraction of the steps on (their L1 losses overshoot early, as
loop guidance's does)."""

DEFAULT_MASK_GUIDANCE = 1e3
DEFAULT_DRAG_GUIDANCE = 1e2
"""Weights of mask and drag guidance when a mask or drags are given. Chosen on an exact Gaussian
denoiser (tests/test_controls.py: the mask term moved the energy share inside a half mask from 0.46
to 0.96 at 1e3 and overshot at 1e4; the drag term, whose loss is normalised by its window rather than
by the whole field, cut its loss 0.81 -> 0.23 at 200 and overshot at 500). Not tuned on the demo model;
the field edits make both controls exact regardless."""

DEFAULT_WINDOW_STRIDE = 0.5
"""Frames between the starts of a long clip's windows, as a fraction of the window (K = 8: 4 frames apart,
neighbours share 4 frames), all denoised together at every step (:class:`~lvmm.diffusion.windows.WindowedDenoiser`).
Chosen against windows sampled one after another (each window's first frame fixed to the previous one's, 3
more cross-faded) on the demo model of 2026-12-04 (120-frame clips of the 2 held-out photos at a 256-px short
side, seeds 100-101, DPM-Solver++ 20, CFG w = 3; tent weights of 1 at the window ends then): largest step /
median step about the same (3.2 / 4.8 frames / fields vs 2.8 / 4.1 unprompted, 2.0 / 3.1 vs 1.9 / 3.0 with a
swaying prompt), the motion of the last frames no smaller than the first frames' (1.1x and 1.0x vs 0.7x and
0.9x), in a third of the time (one batched call per step instead of one per window). On 48-frame clips,
strides of 2 and 6 frames moved the mean step over the shared frames by at most 0.02."""


class AnimationError(ValueError):
    """A request that cannot be served (size, checkpoint or condition mismatch); the message says why."""


@dataclass
class AnimationOptions:
    """How to sample and render one animation."""

    num_frames: int | None = None  # K generated frames; default: the stage-two training length
    sampler: str = "ddim"  # "ddpm", "ddim" or "dpmsolver++"
    steps: int = 50
    eta: float = 0.0  # DDIM only
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE  # classifier-free weight w (0: conditional only)
    guidance_interval: tuple[float, float] = DEFAULT_GUIDANCE_INTERVAL  # fraction of the steps where w acts
    loop_guidance: float = 0.0  # mu of loop self-guidance (0: off; a seamless loop needs > 0)
    loop_velocity: float = 0.0  # weight of the optional velocity term
    loop_rush: float = DEFAULT_LOOP_RUSH  # weight of the rush term (a last step larger than the mean step)
    loop_schedule: tuple[float, float] = (LOOP_GUIDANCE_START, 1.0)  # fraction of the steps where it acts
    loop_closure: bool = True  # spread the remaining D(z_K) - D(z_1) over the clip (close_loop)
    slow_motion: int = 1  # N: insert N - 1 interpolated fields between neighbours
    chunk_size: int = 8  # frames rendered at once (memory; the result does not depend on it)
    fit: str = "resize"  # "resize" or "pad" to the working size
    size: int | None = None  # working short side; default: the training size
    field_transform: Callable[[torch.Tensor], torch.Tensor] | None = (
        None  # edits decoded fields (B, K, 3, h, w) before rendering
    )
    # motion controls (lvmm.controls)
    motion_scale: float = 1.0  # multiplies the generated displacement exactly (0: the still photo)
    motion_amount: float | None = None  # mean displacement asked for, px of the field grid (amplitude U-Nets)
    region_mask: np.ndarray | None = None  # region brush, any size: white may move, black stays
    mask_feather: float = controls.MASK_FEATHER  # soft edge, fraction of the photo's short side
    mask_guidance: float = DEFAULT_MASK_GUIDANCE  # weight of MaskGuidance while sampling (0: edit only)
    drags: Sequence = ()  # controls.Drag, "X0,Y0,X1,Y1[,FRAME]" or ((x0, y0), (x1, y1)) in photo pixels
    drag_guidance: float = DEFAULT_DRAG_GUIDANCE  # weight of DragGuidance while sampling (0: correction only)
    drag_correction: bool = True  # correct the decoded field so each point arrives exactly
    drag_radius: float = controls.DRAG_RADIUS  # Gaussian neighbourhood, fraction of the short side
    control_schedule: tuple[float, float] = (CONTROL_GUIDANCE_START, 1.0)  # where mask/drag guidance act
    total_frames: int | None = None  # frames as played (long clips); None: one clip or loop
    window_stride: int | None = None  # long clips: frames between window starts (default: DEFAULT_WINDOW_STRIDE x K)


@dataclass
class Animation:
    """One result: frames at the input's size, as they play, the fields that made them, and measures.

    ``metrics``: ``wrap_field``/``wrap_frames`` (:func:`~lvmm.evaluation.motion_metrics.wrap_ratio` of
    the played sequence: 1 = a seamless cycle), ``pop_frames`` (step out of I_0 / median later step;
    clips that start at I_0 only) and ``magnitude_px`` (mean displacement of the generated fields
    z_1..z_K relative to D(z_0), in pixels of the field grid; :func:`lvmm.controls.motion_amount`).
    With controls: ``mask_share`` (share of the motion energy inside the brush), ``drag_error_px``
    (largest end-point error of the drags, photo pixels), ``windows`` and ``join_frames``/``join_fields``
    (long clips: step into each window's first frame / median step).
    """

    seed: int
    frames: np.ndarray  # (T, H, W, 3) uint8, as played
    fields: torch.Tensor  # (T, 3, h, w) float, (dx, dy, w) in normalised units, as played
    loop: bool
    working_size: tuple[int, int] = (0, 0)
    metrics: dict = field(default_factory=dict)


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
    weights = torch.arange(factor, dtype=fields.dtype, device=fields.device) / factor  # (N,)
    w = weights.view(*([1] * (a.dim() - 4)), 1, factor, 1, 1, 1)
    mixed = a.unsqueeze(-4) * (1 - w) + b.unsqueeze(-4) * w  # (..., T-1, N, C, h, w)
    out = mixed.flatten(-5, -4)
    return out if wrap else torch.cat([out, fields[..., -1:, :, :, :]], dim=-4)


def close_loop(fields: torch.Tensor) -> torch.Tensor:
    """Make field K equal field 1 exactly by spreading their difference linearly over the clip.

    ``f'_k = f_k - (k - 1) / (K - 1) * (f_K - f_1)`` for fields f_1..f_K (..., K, C, h, w): f'_1 = f_1,
    f'_K = f_1, and each step k -> k+1 changes by the same (f_K - f_1) / (K - 1). Loop guidance pulls
    f_K to f_1 but stops short of it (the demo model kept a wrap about 1.7x an ordinary step); this
    removes the rest without a hold or a jump: the played wrap K-1 -> 1 becomes the step K-1 -> K.
    It is the linear drift correction of a closed trajectory; it is exact, cheap and, when guidance
    already closed the loop, changes nothing.
    """
    k = fields.shape[-4]
    if k < 2:
        return fields
    ramp = torch.linspace(0.0, 1.0, k, dtype=fields.dtype, device=fields.device).view(k, 1, 1, 1)  # (K, 1, 1, 1)
    return fields - ramp * (fields[..., -1:, :, :, :] - fields[..., :1, :, :, :])


def working_size(height: int, width: int, short_side: int, step: int) -> tuple[int, int]:
    """Resize target: short side ``short_side``, aspect kept, both sides rounded to multiples of ``step``."""
    scale = short_side / min(height, width)
    h = max(step, int(round(height * scale / step)) * step)
    w = max(step, int(round(width * scale / step)) * step)
    return h, w


class PaddedDenoiser:
    """The U-Net behind a latent pad: latents whose size is not a multiple of ``multiple`` are padded
    (replicated borders) before the network and cropped after it, so a frame only needs to be a
    multiple of 32 whatever the U-Net's depth (the 512 configs halve the latent four times)."""

    def __init__(self, unet, multiple: int):
        self.unet, self.multiple = unet, int(multiple)
        self.cond_dim = getattr(unet, "cond_dim", None)

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, z0: torch.Tensor, appearance: torch.Tensor | None = None, **kw
    ) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if not (ph or pw):
            return self.unet(x, t, z0=z0, appearance=appearance, **kw)
        pad = lambda a: None if a is None else F.pad(a, (0, pw, 0, ph), mode="replicate")
        x = F.pad(x, (0, pw, 0, ph, 0, 0), mode="replicate")  # (B, C, T, h + ph, w + pw)
        return self.unet(x, t, z0=pad(z0), appearance=pad(appearance), **kw)[..., :h, :w]


class Animator:
    """Stage one + stage two + ImageBind behind one call: :meth:`animate`.

    Build it with :meth:`from_checkpoints`. ``encoder`` is an :class:`lvmm.imagebind.ImageBindEncoder`
    whose embedding size matches the stage-two model's condition size. On CPU it keeps freed memory in the
    process for reuse (:func:`lvmm.allocator.retain_freed_memory`).
    """

    def __init__(
        self, motion: MotionModel, unet, config, extra: dict, encoder, device: torch.device | str | None = None
    ):
        self.device = (
            torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        if self.device.type == "cpu":
            retain_freed_memory()
        self.motion, self.unet = motion.to(self.device).eval(), unet.to(self.device).eval()
        self.config, self.extra, self.encoder = config, extra, encoder
        if encoder is not None and encoder.dim != extra["cond_dim"]:
            raise AnimationError(
                f"ImageBind embeddings have {encoder.dim} dimensions but the stage-two model expects "
                f"{extra['cond_dim']}: use the ImageBind weights the latents were made with"
            )
        self.step = max(SIZE_STEP, motion.latent_downsample)
        self.denoiser = PaddedDenoiser(self.unet, int(extra.get("latent_multiple", 1)))

    @classmethod
    def from_checkpoints(
        cls,
        stage_two: str | Path,
        stage_one: str | Path | None = None,
        imagebind: str | None = None,
        imagebind_config: str | None = None,
        device=None,
    ) -> Animator:
        """Load both stages (stage one defaults to the path recorded in the stage-two checkpoint)."""
        from lvmm.imagebind import ImageBindEncoder

        unet, config, extra = load_motion_diffusion(stage_two)
        stage_one = stage_one or extra.get("motion_checkpoint")
        if not stage_one:
            raise AnimationError(f"{stage_two}: records no stage-one checkpoint; pass one explicitly")
        motion = MotionModel.from_checkpoint(stage_one)
        try:
            encoder = ImageBindEncoder(
                weights=imagebind, config=imagebind_config or ("huge" if imagebind else "tiny"), device=device
            )
        except ValueError as e:
            raise AnimationError(str(e)) from e
        return cls(motion, unet, config, extra, encoder, device)

    # ------------------------------------------------------------------ conditions
    def _prompt_embedding(
        self, prompt: str | None, audio: str | None, image: str | np.ndarray | None
    ) -> torch.Tensor | None:
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

    def working_short_side(self, height: int, width: int, options: AnimationOptions) -> int:
        """The short side the networks run at: ``options.size``, else the training frames' (recorded in the
        checkpoint), else the latents' times the latent reduction, else the photo's (at most 512)."""
        if options.size:
            return int(options.size)
        if self.extra.get("frame_size"):
            return int(min(self.extra["frame_size"]))
        if self.extra.get("latent_size"):
            return int(min(self.extra["latent_size"])) * self.motion.latent_downsample
        return min(height, width, DEFAULT_MAX_WORKING_SIDE)

    def _prepare(self, image: np.ndarray, options: AnimationOptions) -> tuple[torch.Tensor, tuple[float, float]]:
        """The working image (1, 3, h', w') and the fraction of it the photo covers (1, 1 unless padded)."""
        h, w = image.shape[:2]
        x = to_float(image)[None].to(self.device)  # (1, 3, H, W)
        short = self.working_short_side(h, w, options)
        if options.fit == "pad":
            scale = short / min(h, w)
            th, tw = max(1, round(h * scale)), max(1, round(w * scale))
            x = F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
            ph, pw = -th % self.step, -tw % self.step
            return F.pad(x, (0, pw, 0, ph), mode="replicate"), (th / (th + ph), tw / (tw + pw))
        if options.fit != "resize":
            raise AnimationError(f"fit must be 'resize' or 'pad', not {options.fit!r}")
        target = working_size(h, w, short, self.step)
        return F.interpolate(x, size=target, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1), (
            1.0,
            1.0,
        )

    # ------------------------------------------------------------------ generation
    def animate(
        self,
        image: np.ndarray,
        seeds: Sequence[int],
        options: AnimationOptions | None = None,
        prompt: str | None = None,
        audio: str | None = None,
        cond_image=None,
        progress: bool = False,
        callback: Callable[[int, int], None] | None = None,
    ) -> list[Animation]:
        """Animate one ``(H, W, 3)`` uint8 image once per seed (one batch, one generator per seed).

        Frames come back at the image's own resolution, as they play: ``[I_0, frame 1..K]`` for a clip,
        ``frame 1..K-1`` for a loop (frame K would repeat frame 1), interpolated with ``slow_motion``;
        with ``total_frames``, that many (a loop repeated, a clip denoised as overlapping windows of K frames).
        ``callback(step, num_steps)`` is called after each sampling step.
        """
        options = options or AnimationOptions()
        image = np.asarray(image)
        k, loop = self._check_request(image, options)
        seeds = [int(s) for s in seeds]
        img0, valid = self._prepare(image, options)  # (1, 3, H', W')
        grid = (img0.shape[-2] // self.motion.field_downsample, img0.shape[-1] // self.motion.field_downsample)
        ctl = self._controls(options, image.shape[:2], grid, k, loop)
        cond = self._conditions(img0, prompt, audio, cond_image, len(seeds))
        z = self._sample(cond, seeds, options, ctl, loop, progress, callback)  # (B, N, C, hz, wz)
        with torch.no_grad():
            fields = self._decode(z, cond["z0"], options, ctl, loop)  # (B, N, 3, h, w), relative to the photo
            return [
                self._result(seed, fields[i], image, img0, valid, options, ctl, loop) for i, seed in enumerate(seeds)
            ]

    def _check_request(self, image: np.ndarray, options: AnimationOptions) -> tuple[int, bool]:
        """Refuse an image or a frame count the models cannot serve; the generated frames K, and whether a loop."""
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise AnimationError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if min(height, width) < SIZE_STEP:
            raise AnimationError(f"image of {width}x{height} is too small: both sides must be at least {SIZE_STEP}")
        k = options.num_frames or int(self.extra["num_frames"])
        loop = options.loop_guidance > 0
        if k < 2 or k > int(self.extra.get("max_frames", k)) or (loop and k < 3):
            raise AnimationError(
                f"num_frames must be between {3 if loop else 2} and {self.extra.get('max_frames')}, got {k}"
            )
        return k, loop

    def _conditions(self, img0: torch.Tensor, prompt, audio, cond_image, batch: int) -> dict:
        """What the sampler is conditioned on, one copy per seed: z_0 (B, C, hz, wz), the ImageBind embeddings of
        the image and of the prompt (B, D) (None: no prompt), the appearance map (None unless the U-Net takes one)."""
        with torch.no_grad():
            z0 = self.motion.encode_field(self.motion.predict_field(img0, img0))  # (1, C, hz, wz)
            img_emb = self.encoder.embed_images([to_uint8(img0[0])]).to(self.device)
            prompt_emb = self._prompt_embedding(prompt, audio, cond_image)
            appearance = self.motion.appearance(img0) if self.extra.get("appearance_channels") else None
        rep = lambda x: None if x is None else x.expand(batch, *x.shape[1:]).to(self.device)
        return {
            "z0": rep(z0),
            "image": rep(img_emb),
            "prompt": rep(prompt_emb),
            "appearance": rep(appearance),
            "audio_prompt": audio is not None,
        }

    def _prompt_denoiser(self, cond: dict):
        """The denoiser for this prompt: an audio prompt centred on the training audio tokens' mean, as stage two
        trained them (:mod:`lvmm.conditioning`), when the checkpoint records that mean; the plain one otherwise."""
        mean = self.extra.get("audio_token_mean")
        if not cond.get("audio_prompt") or mean is None or not self.extra.get("token_statistics_set"):
            return self.denoiser
        from lvmm.conditioning import TEXT_SLOT, SlotShift

        slot_mean = self.unet.token_mean[TEXT_SLOT]
        return SlotShift(self.denoiser, slot_mean - torch.tensor(mean, dtype=slot_mean.dtype, device=slot_mean.device))

    def _sample(
        self, cond: dict, seeds: list[int], options: AnimationOptions, ctl: dict, loop: bool, progress: bool, callback
    ) -> torch.Tensor:
        """Latent motion z_1..z_N (B, N, C, hz, wz): one window of K frames, or for a long clip all N frames
        at once, the network run on overlapping windows of K frames (:class:`WindowedDenoiser`)."""
        n_gen, length, starts, stride = ctl["plan"]
        model = self._prompt_denoiser(cond)
        if len(starts) > 1:
            model = WindowedDenoiser(model, length, stride)
        amplitude = None
        if options.motion_amount is not None:
            amplitude = torch.full((len(seeds),), float(options.motion_amount), device=self.device)
        return sample_motion(
            model,
            self.config,
            cond["z0"],
            cond["image"],
            cond["prompt"],
            num_frames=n_gen,
            seeds=seeds,
            latent_scale=float(self.extra.get("latent_scale", 1.0)),
            appearance=cond["appearance"],
            sampler=options.sampler,
            steps=options.steps,
            eta=options.eta,
            guidance_scale=options.guidance_scale,
            guidance_interval=tuple(options.guidance_interval),
            guidance=self._guidance(options, ctl, cond["z0"], loop),
            progress=progress,
            residual=bool(self.extra.get("residual_latents", False)),
            z0_scale=self.extra.get("z0_scale"),
            callback=callback,
            amplitude=amplitude,
        )  # (B, N, C, hz, wz)

    def _decode(
        self, z: torch.Tensor, z0b: torch.Tensor, options: AnimationOptions, ctl: dict, loop: bool
    ) -> torch.Tensor:
        """The edited fields (B, N, 3, h, w) of latents z (B, N, C, hz, wz), decoded a chunk of frames at a time."""
        step = options.chunk_size
        fields = torch.cat([self.motion.decode_motion(z[:, i : i + step], z0b) for i in range(0, z.shape[1], step)], 1)
        if loop and options.loop_closure:
            fields = close_loop(fields)
        if options.field_transform is not None:
            fields = options.field_transform(fields)
        return self._edit(fields, options, ctl)

    def _result(
        self, seed: int, generated: torch.Tensor, image: np.ndarray, img0: torch.Tensor, valid, options, ctl, loop
    ) -> Animation:
        """One seed's animation from its generated fields (N, 3, h, w): fields as played, frames, measures."""
        played = self._played(generated, options, loop)
        frames = render_photo(self.motion.renderer, image, img0, played, options.chunk_size, valid, ctl["photo_mask"])
        metrics = self._metrics(generated, played, frames, image.shape[:2], options, ctl, loop)
        if loop and options.total_frames:  # a loop repeats seamlessly to any length
            frames = controls.tile_loop(frames, options.total_frames)
            played = played[torch.from_numpy(np.arange(options.total_frames) % len(played))]
        return Animation(
            seed=seed,
            frames=frames,
            fields=played.cpu(),
            loop=loop,
            working_size=tuple(img0.shape[-2:]),
            metrics=metrics,
        )

    @staticmethod
    def _played(generated: torch.Tensor, options: AnimationOptions, loop: bool) -> torch.Tensor:
        """The fields (T, 3, h, w) in the order they play, interpolated for slow motion."""
        if loop:  # z_K was pulled to z_1: play 1..K-1 and let the wrap be the step K-1 -> 1
            f = generated[:-1]
        else:  # a clip starts at I_0 itself: the identity field with full intention weight
            identity = torch.zeros_like(generated[:1])
            identity[:, 2] = 1.0
            f = torch.cat([identity, generated])
        played = interpolate_fields(f, options.slow_motion, wrap=loop)
        if options.total_frames and not loop:
            played = played[: options.total_frames]
        return played

    @staticmethod
    def _metrics(generated, played, frames, photo: tuple[int, int], options: AnimationOptions, ctl, loop) -> dict:
        """The measures of one animation (:class:`Animation`, ``metrics``)."""
        px = normalised_to_pixels(generated[:, :2], *generated.shape[-2:])  # generated fields only
        played_px = normalised_to_pixels(played[:, :2], *played.shape[-2:])
        metrics = {
            "wrap_field": wrap_ratio(played_px),
            "wrap_frames": wrap_ratio(frames),
            "magnitude_px": mean_magnitude(px),
        }
        if not loop and len(frames) >= 3:
            metrics["pop_frames"] = pop_ratio(frames)
        if ctl["grid_mask"] is not None:
            metrics["mask_share"] = controls.mask_energy_share(generated, ctl["grid_mask"].to(generated.device))
        if ctl["drags"]:
            metrics["drag_error_px"] = max(controls.drag_endpoint_error(generated.cpu(), ctl["drags"], photo, loop))
        starts = ctl["plan"][2]
        if len(starts) > 1:
            # played frame s + 1 is generated frame s, the first of the window at s: the step into it
            joins = [s0 * options.slow_motion for s0 in starts[1:]]
            span = options.slow_motion
            metrics.update(
                windows=len(starts),
                join_frames=controls.join_ratio(frames, joins, span),
                join_fields=controls.join_ratio(played_px, joins, span),
            )
        return metrics

    # ------------------------------------------------------------------ controls
    def _controls(self, options: AnimationOptions, photo: tuple[int, int], grid: tuple[int, int], k: int, loop: bool):
        """Checked controls: masks at the photo's size and on the field grid, drags, and the window plan."""
        has_mask, drags = options.region_mask is not None, []
        try:
            controls.scale_motion(torch.zeros(1, 3, 1, 1), float(options.motion_scale))  # checks the scale
            drags = [controls.as_drag(d) for d in options.drags]
            for d in drags:
                controls.check_drag(d, photo)
        except ValueError as e:
            raise AnimationError(str(e)) from None
        if (has_mask or drags) and options.fit != "resize":
            raise AnimationError("a region mask or drags need fit='resize'")
        if options.motion_amount is not None:
            if not getattr(self.unet, "amplitude_condition", False):
                raise AnimationError(
                    "this stage-two model was not trained with a motion amount (amplitude_condition); "
                    "use the motion scale instead"
                )
            if not np.isfinite(options.motion_amount) or options.motion_amount < 0:
                raise AnimationError(f"the motion amount must be a finite number >= 0, got {options.motion_amount}")
        photo_mask = grid_mask = None
        if has_mask:
            try:
                photo_mask = controls.prepare_mask(options.region_mask, photo, options.mask_feather)  # (H, W)
            except ValueError as e:
                raise AnimationError(str(e)) from None
            grid_mask = controls.mask_on_grid(photo_mask, grid)  # (h, w)
        # frames to generate, window length, window offsets, window stride
        if options.total_frames is not None and options.total_frames < 3:
            raise AnimationError(f"a clip needs at least 3 frames, got total_frames={options.total_frames}")
        if options.total_frames is None or loop:
            plan = (k, k, [0], k)
        else:
            n_gen = max(2, -(-(options.total_frames - 1) // options.slow_motion))
            length = min(k, n_gen)
            try:
                stride = options.window_stride
                stride = max(1, round(DEFAULT_WINDOW_STRIDE * length)) if stride is None else min(stride, length)
                plan = (n_gen, length, window_starts(n_gen, length, stride), stride)
            except ValueError as e:
                raise AnimationError(str(e)) from None
        n_gen = plan[0]
        start = path = None
        if drags:
            try:
                start, path = controls.drag_targets(drags, photo, n_gen, loop)  # (J, 2), (N, J, 2)
            except ValueError as e:
                raise AnimationError(str(e)) from None
        return {
            "photo_mask": photo_mask,
            "grid_mask": grid_mask,
            "drags": drags,
            "drag_start": start,
            "drag_path": path,
            "drag_radius": controls.drag_radius(photo, options.drag_radius),
            "plan": plan,
        }

    def _guidance(self, options: AnimationOptions, ctl: dict, z0b: torch.Tensor, loop: bool):
        """Energy guidance terms on the generated frames (all of a long clip's at once)."""
        terms = []
        if loop:
            terms.append(
                LoopGuidance(
                    options.loop_guidance,
                    decode=self.motion.decode,
                    velocity_weight=options.loop_velocity,
                    schedule=StepSchedule(*options.loop_schedule),
                    rush_weight=options.loop_rush,
                )
            )
        relative = lambda z: self.motion.decode_motion(z, z0b)  # fields relative to the photo
        schedule = StepSchedule(*options.control_schedule)
        if ctl["grid_mask"] is not None and options.mask_guidance:
            terms.append(MaskGuidance(options.mask_guidance, ctl["grid_mask"], relative, schedule))
        if ctl["drags"] and options.drag_guidance:
            terms.append(
                DragGuidance(
                    options.drag_guidance, ctl["drag_start"], ctl["drag_path"], ctl["drag_radius"], relative, schedule
                )
            )
        return terms

    def _edit(self, fields: torch.Tensor, options: AnimationOptions, ctl: dict) -> torch.Tensor:
        """The field edits on decoded fields (B, N, 3, h, w), in order: scale, drags, mask."""
        fields = controls.scale_motion(fields, float(options.motion_scale))
        if ctl["drags"] and options.drag_correction:
            fields = controls.correct_drags(fields, ctl["drag_start"], ctl["drag_path"], ctl["drag_radius"])
        if ctl["grid_mask"] is not None:
            fields = controls.apply_mask(fields, ctl["grid_mask"])
        return fields
