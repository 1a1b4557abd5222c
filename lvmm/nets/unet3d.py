"""The conditional 3D U-Net of stage two: the denoiser of latent motion sequences.

After Ho et al.'s video diffusion model: four down- and four up-sampling stages of factorised
space-time layers (a residual block of per-frame convolutions, spatial self-attention,
cross-attention to the condition tokens, temporal self-attention with relative positions). Inputs:

* ``x`` (B, C, T, h, w): the noisy latent motion sequence x_t = z_1..z_T;
* ``t`` (B,): the diffusion timestep, embedded sinusoidally;
* ``z0`` (B, C, h, w): the latent of the first frame's own field, mapped by a small convolution to
  learned per-frame features v_1..v_T (``frame_features`` channels each, one set per frame index up
  to ``max_frames``), concatenated with x_t;
* ``tokens`` (B, S, D) with ``token_mask`` (B, S): the ImageBind tokens of I_0 and of the text;
  given tokens are standardised per slot with statistics the training module sets once from data
  (:meth:`UNet3D.set_token_statistics`, buffers saved with the weights); a masked (False) or absent
  token is replaced by a learned null token, which is what classifier-free guidance trains and
  samples with;
* ``appearance`` (B, Ca, h, w), optional: an appearance map of I_0, broadcast over time and
  concatenated with x_t (only when ``appearance_channels > 0``);
* ``amplitude`` (B,) with ``amplitude_mask`` (B,), optional (only when ``amplitude_condition``): the
  clip's mean displacement in pixels of the field grid (the motion amount, as SVD's motion bucket),
  embedded sinusoidally beside the timestep and added to the timestep embedding; a masked (False) or
  absent amount is replaced by a learned null embedding (classifier-free dropout and guidance).

Which stages halve the spatial size is configuration (``downsample``): the paper's 16 x 16 latents
down-sample in all four stages, the small latents of the benchmarks and of the CPU demo stop at
their size (docs/design.md, Sizes scale with the frame). The number of frames is free at inference up to ``max_frames``.
No diffusion logic lives here: the network maps (x_t, t, conditions) to the raw model output, whose
meaning (eps, v or x0) is the schedule's business (:mod:`lvmm.diffusion`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from lvmm.checkpoint import Configurable
from lvmm.nets.attention import CrossAttention, SpatialAttention, TemporalAttention
from lvmm.nets.layers import UNET_NORM_EPS, ResBlock, group_norm, per_frame

AMPLITUDE_FEATURE_SCALE = 100.0  # log1p(px) -> the sinusoids' "timestep" (0-10 px spans 0-240)
TIME_EMBED_MULT = 4  # width of the timestep embedding relative to model_channels (as in DDPM/ADM)
MAX_PERIOD = 10000.0  # longest period of the sinusoidal timestep features


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    feats = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(feats, (0, dim % 2))


class SpaceTimeLayer(nn.Module):
    """One factorised layer: residual block, [spatial + cross attention], temporal attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        context_dim: int,
        head_dim: int,
        attention: bool,
        max_frames: int,
        dropout: float,
        groups: int,
    ):
        super().__init__()
        heads = max(1, out_channels // head_dim)
        # a residual block modulated (scale and shift) by the embedding, starting as its skip path
        self.res = ResBlock(
            in_channels,
            out_channels,
            emb_dim=emb_dim,
            dropout=dropout,
            groups=groups,
            eps=UNET_NORM_EPS,
            zero_init=True,
        )
        self.spatial = SpatialAttention(out_channels, heads, head_dim, groups) if attention else None
        self.cross = CrossAttention(out_channels, context_dim, heads, head_dim, groups) if attention else None
        self.temporal = TemporalAttention(out_channels, heads, head_dim, max_frames - 1, groups)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        if self.spatial is not None:
            x = self.cross(self.spatial(x), context)
        return self.temporal(x)


class Downsample(nn.Module):
    """Halve the spatial size of every frame with a strided convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self.conv, x)


class Upsample(nn.Module):
    """Double the spatial size of every frame (nearest neighbour, then a convolution)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self.conv, F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class UNet3D(Configurable, nn.Module):
    """Conditional factorised space-time U-Net over latent motion sequences.

    Args:
        in_channels: latent channels C of x_t and z0 (4 for the motion VAE); the output has as many.
        model_channels: width of the first stage; stage i has ``model_channels * channel_mult[i]``.
        channel_mult: one multiplier per stage (four stages after Ho et al.).
        downsample: per stage, whether it halves the spatial size at its end (and its mirror doubles it).
        attention: per stage, whether its layers have spatial self- and cross-attention (temporal
            attention is in every layer: it is cheap over a handful of frames and carries the motion).
        num_res_blocks: layers per stage on the way down (the way up has the same number).
        head_dim: channels per attention head.
        cond_dim: dimension D of the condition tokens (1024 for ImageBind huge).
        num_tokens: number of condition tokens S (image and text).
        token_whitening: standardise each slot by a whitening matrix (D, D) instead of one scale, so
            every direction in which the training tokens vary counts alike (docs/design.md, Token
            whitening); :meth:`set_token_statistics` then takes the matrix.
        tokens_in_embedding: also add the (projected) tokens to the timestep embedding, so a global
            condition modulates every residual block and not only the attention layers (the pooled text
            embedding of SDXL; a CPU probe conditioned through the embedding alone, docs/design.md, Conditioning
            through the timestep embedding too).
        max_frames: the most frames T the network accepts (the number of per-frame features v_k).
        frame_features: channels of each per-frame feature map v_k.
        appearance_channels: channels Ca of the optional appearance map (0: no appearance input).
        amplitude_condition: take the clip's motion amount (mean displacement, pixels of the field grid)
            as a condition embedded beside the timestep (False: no such input; older checkpoints).
        dropout: dropout inside the residual blocks.
        groups: GroupNorm groups (fewer where the width does not divide).
        gradient_checkpointing: recompute each layer's activations in the backward pass during training.
    """

    def __init__(
        self,
        in_channels: int = 4,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4, 4),
        downsample: Sequence[bool] = (True, True, True, True),
        attention: Sequence[bool] = (False, True, True, True),
        num_res_blocks: int = 2,
        head_dim: int = 32,
        cond_dim: int = 1024,
        num_tokens: int = 2,
        tokens_in_embedding: bool = True,
        token_whitening: bool = False,
        max_frames: int = 16,
        frame_features: int = 4,
        appearance_channels: int = 0,
        amplitude_condition: bool = False,
        dropout: float = 0.0,
        groups: int = 32,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        if not (len(channel_mult) == len(downsample) == len(attention)):
            raise ValueError("channel_mult, downsample and attention need one entry per stage")
        self.in_channels, self.max_frames, self.frame_features = in_channels, max_frames, frame_features
        self.appearance_channels, self.num_tokens, self.cond_dim = appearance_channels, num_tokens, cond_dim
        self.downsample_factor = 2 ** sum(bool(d) for d in downsample)
        self.gradient_checkpointing = gradient_checkpointing
        emb_dim = model_channels * TIME_EMBED_MULT
        self.model_channels = model_channels

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.amplitude_condition = bool(amplitude_condition)
        if self.amplitude_condition:  # the motion amount, embedded as the timestep is; a null for "any amount"
            self.amplitude_embed = nn.Sequential(
                nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
            )
            self.null_amplitude = nn.Parameter(torch.zeros(emb_dim))
        # Conditions: learned null tokens stand in for absent or dropped tokens; a slot embedding tells
        # the attention which token is the image and which the text (both live in ImageBind's one space).
        self.null_tokens = nn.Parameter(torch.randn(num_tokens, cond_dim) / math.sqrt(cond_dim))
        # Per-slot standardisation of the given tokens, set from data by the training module (identity
        # until then). ImageBind embeddings of one corpus share a large common direction; what tells two
        # captions apart is a small part of each vector, which centring makes the whole of it.
        self.register_buffer("token_mean", torch.zeros(num_tokens, cond_dim))  # (S, D)
        self.register_buffer("token_scale", torch.ones(num_tokens, 1))  # (S, 1)
        self.token_whitening = bool(token_whitening)
        if self.token_whitening:
            self.register_buffer("token_whiten", torch.eye(cond_dim).repeat(num_tokens, 1, 1))  # (S, D, D)
        self.context_proj = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, emb_dim))
        self.slot_embed = nn.Parameter(torch.zeros(num_tokens, emb_dim))
        self.token_embed = nn.Linear(num_tokens * emb_dim, emb_dim) if tokens_in_embedding else None
        # z0 -> v_1..v_max_frames: one feature map per frame index, computed in one convolution.
        self.frame_embed = nn.Sequential(
            nn.Conv2d(in_channels, model_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(model_channels, frame_features * max_frames, 3, padding=1),
        )

        layer = dict(
            emb_dim=emb_dim,
            context_dim=emb_dim,
            head_dim=head_dim,
            max_frames=max_frames,
            dropout=dropout,
            groups=groups,
        )
        ch = model_channels
        self.conv_in = nn.Conv2d(in_channels + frame_features + appearance_channels, ch, 3, padding=1)
        self.down_layers, self.down_samplers, skip_channels = nn.ModuleList(), nn.ModuleList(), []
        for mult, down, attn in zip(channel_mult, downsample, attention):
            out = model_channels * mult
            stage = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.append(SpaceTimeLayer(ch, out, attention=attn, **layer))
                ch = out
                skip_channels.append(ch)
            self.down_layers.append(stage)
            self.down_samplers.append(Downsample(ch) if down else nn.Identity())

        self.mid = nn.ModuleList(
            [SpaceTimeLayer(ch, ch, attention=True, **layer), SpaceTimeLayer(ch, ch, attention=True, **layer)]
        )

        self.up_samplers, self.up_layers = nn.ModuleList(), nn.ModuleList()
        for mult, down, attn in reversed(list(zip(channel_mult, downsample, attention))):
            out = model_channels * mult
            self.up_samplers.append(Upsample(ch) if down else nn.Identity())
            stage = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.append(SpaceTimeLayer(ch + skip_channels.pop(), out, attention=attn, **layer))
                ch = out
            self.up_layers.append(stage)

        self.norm_out = group_norm(ch, groups, UNET_NORM_EPS)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start from a zero prediction, the mean of every target type
        nn.init.zeros_(self.conv_out.bias)

    @torch.no_grad()
    def set_token_statistics(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Standardise given tokens as ``(token - mean) / scale`` from now on: mean (S, D), scale (S,); with
        ``token_whitening``, as ``(token - mean) @ scale`` with a whitening matrix per slot, scale (S, D, D)."""
        whiten = (self.num_tokens, self.cond_dim, self.cond_dim)
        expected = whiten if self.token_whitening else (self.num_tokens,)
        if mean.shape != self.token_mean.shape or scale.numel() != math.prod(expected):
            raise ValueError(
                f"token statistics of shapes {tuple(mean.shape)}, {tuple(scale.shape)}; "
                f"expected {tuple(self.token_mean.shape)} and {expected}"
            )
        self.token_mean.copy_(mean)
        if self.token_whitening:
            self.token_whiten.copy_(scale.reshape(whiten))
        else:
            self.token_scale.copy_(scale.reshape(self.num_tokens, 1))

    def condition_tokens(
        self, tokens: torch.Tensor | None, token_mask: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        """The tokens the network attends to, standardised, with null tokens where masked or absent: (B, S, D).

        Standardised tokens are brought to length sqrt(D) (the typical length of a standardised token):
        statistics fitted on one modality (captions, whose embeddings lie close together) would
        otherwise blow up an embedding of another modality in the same slot (an audio or image prompt,
        far from the captions' mean) to many times the length the network was trained on."""
        null = self.null_tokens[None].expand(batch, -1, -1)
        if tokens is None:
            return null
        tokens = tokens.to(null.dtype) - self.token_mean  # (B, S, D)
        if self.token_whitening:
            tokens = torch.einsum("bsd,sde->bse", tokens, self.token_whiten)
        else:
            tokens = tokens / self.token_scale
        tokens = tokens * (tokens.shape[-1] ** 0.5 / tokens.norm(dim=-1, keepdim=True).clamp_min(1e-6))
        if token_mask is None:
            return tokens
        return torch.where(token_mask[..., None].bool(), tokens, null)

    def amplitude_embedding(
        self, amplitude: torch.Tensor | None, amplitude_mask: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        """Embedding (B, E) of the motion amount (B,) in pixels; the null embedding where masked or absent."""
        null = self.null_amplitude[None].expand(batch, -1)
        if amplitude is None:
            return null
        a = amplitude.float().reshape(batch).clamp_min(0)
        emb = self.amplitude_embed(timestep_features(torch.log1p(a) * AMPLITUDE_FEATURE_SCALE, self.model_channels))
        if amplitude_mask is None:
            return emb
        return torch.where(amplitude_mask.reshape(batch, 1).bool(), emb, null)

    def _run(self, layer: nn.Module, *args) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        z0: torch.Tensor,
        tokens: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        appearance: torch.Tensor | None = None,
        amplitude: torch.Tensor | None = None,
        amplitude_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoiser output for x_t (B, C, T, h, w) at timesteps t (B,); see the module docs for the conditions."""
        b, _, n_frames, h, w = x.shape
        if n_frames > self.max_frames:
            raise ValueError(f"{n_frames} frames, but the network was built for at most {self.max_frames}")
        if h % self.downsample_factor or w % self.downsample_factor:
            raise ValueError(
                f"latent size {h}x{w} is not divisible by the U-Net's down-sampling {self.downsample_factor}"
            )
        if (appearance is None) != (self.appearance_channels == 0):
            raise ValueError(
                f"appearance map {'missing' if appearance is None else 'given'}, "
                f"but appearance_channels={self.appearance_channels}"
            )

        emb = self.time_embed(timestep_features(t.expand(b) if t.ndim == 0 else t, self.model_channels))  # (B, E)
        context = self.context_proj(self.condition_tokens(tokens, token_mask, b)) + self.slot_embed  # (B, S, E)
        if self.token_embed is not None:
            emb = emb + self.token_embed(context.flatten(1))
        if self.amplitude_condition:
            emb = emb + self.amplitude_embedding(amplitude, amplitude_mask, b).to(emb.dtype)
        elif amplitude is not None:
            raise ValueError("a motion amount was given, but the network was built without amplitude_condition")

        frames = rearrange(self.frame_embed(z0), "b (k c) h w -> b c k h w", k=self.max_frames)[:, :, :n_frames]
        inputs = [x, frames.to(x.dtype)]  # (B, C, T, h, w), (B, F, T, h, w)
        if appearance is not None:
            inputs.append(repeat(appearance.to(x.dtype), "b c h w -> b c t h w", t=n_frames))
        hidden = per_frame(self.conv_in, torch.cat(inputs, dim=1))  # (B, ch, T, h, w)

        skips = []
        for stage, down in zip(self.down_layers, self.down_samplers):
            for layer in stage:
                hidden = self._run(layer, hidden, emb, context)
                skips.append(hidden)
            hidden = down(hidden)
        for layer in self.mid:
            hidden = self._run(layer, hidden, emb, context)
        for up, stage in zip(self.up_samplers, self.up_layers):
            hidden = up(hidden)
            for layer in stage:
                hidden = self._run(layer, torch.cat([hidden, skips.pop()], dim=1), emb, context)
        return per_frame(self.conv_out, F.silu(self.norm_out(hidden)))  # (B, C, T, h, w)
