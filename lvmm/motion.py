"""The stage-one inference bundle: P, E/D and R behind the API that stage two and the pipeline use.

Shapes: frames (B, 3, H, W) in [0, 1]; fields p = (dx, dy, w) at (h, w) = (H, W) / ``field_downsample``;
latents z at (hz, wz) = (H, W) / ``latent_downsample``. Methods that take clips accept an extra time axis.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvmm.checkpoint import load_networks
from lvmm.nets.flow_predictor import FlowPredictor
from lvmm.nets.motion_vae import MotionVAE
from lvmm.nets.renderer import Renderer


class MotionModel(nn.Module):
    """P (flow predictor), E/D (motion VAE) and R (renderer) of a trained stage one."""

    def __init__(self, flow: FlowPredictor, vae: MotionVAE, renderer: Renderer):
        super().__init__()
        self.flow, self.vae, self.renderer = flow, vae, renderer

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None) -> MotionModel:
        """Rebuild from a stage-one Lightning ``.ckpt`` or an LVMM ``.safetensors`` file (no training code needed)."""
        nets = load_networks(path, ["flow", "vae", "renderer"])
        model = cls(nets["flow"], nets["vae"], nets["renderer"]).eval()
        return model.to(device) if device is not None else model

    # ------------------------------------------------------------------ sizes
    @property
    def latent_channels(self) -> int:
        return self.vae.latent_channels

    @property
    def field_downsample(self) -> int:
        """Frame-to-field reduction (4)."""
        return self.flow.field_downsample

    @property
    def latent_downsample(self) -> int:
        """Frame-to-latent reduction (field reduction x VAE reduction, e.g. 32 at 512 px, 8 for the tiny config)."""
        return self.flow.field_downsample * self.vae.reduction

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ fields and latents
    def predict_field(self, img0: torch.Tensor, imgk: torch.Tensor) -> torch.Tensor:
        """P(I_0, I_k): img0, imgk (B, 3, H, W) -> p (B, 3, h, w)."""
        return self.flow(img0, imgk).field

    def encode_field(
        self, field: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """E(p): field (B, 3, h, w) -> z (B, C, hz, wz): the posterior mode, or a sample drawn with ``generator``."""
        posterior = self.vae.encode(field)
        if not sample:
            return posterior.mode()
        noise = torch.randn(
            posterior.mean.shape, generator=generator, device=posterior.mean.device, dtype=posterior.mean.dtype
        )
        return posterior.mean + posterior.std * noise

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(z), differentiable: z (..., C, hz, wz) -> field (..., 3, h, w); any leading dims, e.g. (B, T)."""
        lead = z.shape[:-3]
        field = self.vae.decode(z.reshape(-1, *z.shape[-3:]))
        return field.reshape(*lead, *field.shape[-3:])

    def decode_motion(self, z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """D(z_k) relative to the first frame's D(z_0): z (B, K, C, hz, wz), z0 (B, C, hz, wz) -> (B, K, 3, h, w).

        The VAE does not decode z_0 = E(P(I_0, I_0)) to exactly the identity field; its small offset
        (displacement, and w below 1) is in every decoded frame but not in I_0 itself, and showed as a
        jump out of the photo. Subtracting it makes frame 0's field the identity (0, 0, 1) by definition.
        """
        fields, ref = self.decode(z), self.decode(z0[:, None])  # (B, K, 3, h, w), (B, 1, 3, h, w)
        d = fields[:, :, :2] - ref[:, :, :2]
        w = (fields[:, :, 2:3] + (1 - ref[:, :, 2:3])).clamp(0, 1)
        return torch.cat([d, w], dim=2)

    def encode_clip(self, frames: torch.Tensor) -> torch.Tensor:
        """z_k = E(P(I_0, I_k)) for every frame, z_0 included: frames (B, T, 3, H, W) -> z (B, T, C, hz, wz)."""
        b, t = frames.shape[:2]
        img0 = frames[:, :1].expand(-1, t, -1, -1, -1)
        field = self.predict_field(
            rearrange(img0, "b t c h w -> (b t) c h w"), rearrange(frames, "b t c h w -> (b t) c h w")
        )
        return rearrange(self.encode_field(field), "(b t) c h w -> b t c h w", b=b, t=t)

    # ------------------------------------------------------------------ rendering
    def render(self, img0: torch.Tensor, fields: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """R: img0 (B, 3, H, W), fields (B, T, 3, h, w) -> frames (B, T, 3, H, W), ``chunk_size`` frames at a time."""
        return self.renderer.render_clip(img0, fields, chunk_size)

    def appearance(self, img0: torch.Tensor) -> torch.Tensor:
        """R's deepest encoder features of I_0 pooled to the latent size: (B, 3, H, W) -> (B, C_app, hz, wz)."""
        features = self.renderer.encode(img0)[-1]  # (B, C_app, H / 4, W / 4)
        size = (img0.shape[-2] // self.latent_downsample, img0.shape[-1] // self.latent_downsample)
        return F.adaptive_avg_pool2d(features, size)

    @property
    def appearance_channels(self) -> int:
        return self.renderer.appearance_channels
