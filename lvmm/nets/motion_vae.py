"""The motion VAE E/D: an LDM-style auto-encoder over motion fields p = (dx, dy, w).

The latent is continuous with ``latent_channels`` channels at 1/``reduction`` of the field's size, and
the posterior is a diagonal Gaussian (diffusers' ``DiagonalGaussianDistribution``). The encoder sees
displacements rescaled to order one and w mapped to [-1, 1]; the decoder returns displacements in the
normalised units of :mod:`lvmm.warp` and w through a sigmoid, so D(z) is a field R can render directly.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn

from lvmm.checkpoint import Configurable
from lvmm.nets.layers import Down, ResBlock, Up, norm


class MotionVAE(Configurable, nn.Module):
    """E and D over fields (B, 3, h, w) <-> latents (B, latent_channels, h / reduction, w / reduction).

    Args:
        latent_channels: channels of z (4 in the paper).
        reduction: field-to-latent reduction, a power of two (8 for 512x512 frames; 2 or 4 for small frames
            so that z keeps at least 8x8, docs/design.md, Sizes scale with the frame).
        width: channels at the field resolution; doubled at each down-sampling, capped at ``max_width``.
        num_res_blocks: residual blocks per resolution.
        displacement_scale: multiplies normalised displacements before encoding (0.1 grid units, 3 px of a
            64 px frame, becomes 1.0) and divides the decoder's output.
        normalise: GroupNorm in the blocks, as in LDM's image VAE. Off by default: per-sample normalisation
            factors out the field's amplitude, the main thing that varies between motions, and the decoded
            fields came out about 20% too small (measured on the tiny config: with GroupNorm the decoded field
            rendered 1.7 dB below P's after 400 VAE steps, without it 0.0 dB).
    """

    def __init__(
        self,
        latent_channels: int = 4,
        reduction: int = 8,
        width: int = 32,
        max_width: int = 128,
        num_res_blocks: int = 1,
        displacement_scale: float = 10.0,
        normalise: bool = False,
    ):
        super().__init__()
        levels = int(math.log2(reduction))
        if 2**levels != reduction:
            raise ValueError(f"reduction must be a power of two, not {reduction}")
        self.latent_channels, self.reduction, self.displacement_scale = latent_channels, reduction, displacement_scale
        widths = [min(width * 2**i, max_width) for i in range(levels + 1)]

        def blocks(c):
            return [ResBlock(c, normalise=normalise) for _ in range(num_res_blocks)]

        enc = [nn.Conv2d(3, widths[0], 3, padding=1), *blocks(widths[0])]
        for a, b in zip(widths[:-1], widths[1:]):
            enc += [Down(a, b, normalise), *blocks(b)[1:]]
        enc += [
            ResBlock(widths[-1], normalise=normalise),
            norm(widths[-1], normalise),
            nn.SiLU(),
            nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1),
        ]
        self.encoder = nn.Sequential(*enc)

        dec = [nn.Conv2d(latent_channels, widths[-1], 3, padding=1), ResBlock(widths[-1], normalise=normalise)]
        for a, b in zip(reversed(widths[1:]), reversed(widths[:-1])):
            dec += [Up(a, b, normalise), *blocks(b)[1:]]
        dec += [*blocks(widths[0]), norm(widths[0], normalise), nn.SiLU(), nn.Conv2d(widths[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, field: torch.Tensor) -> DiagonalGaussianDistribution:
        """field (B, 3, h, w) -> posterior over z (B, latent_channels, h / reduction, w / reduction)."""
        x = torch.cat([field[:, :2] * self.displacement_scale, field[:, 2:3] * 2 - 1], 1)
        return DiagonalGaussianDistribution(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_channels, hz, wz) -> field (B, 3, hz * reduction, wz * reduction); w in [0, 1]."""
        out = self.decoder(z)
        return torch.cat([out[:, :2] / self.displacement_scale, torch.sigmoid(out[:, 2:3])], 1)

    def forward(self, field: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, DiagonalGaussianDistribution]:
        """Auto-encode: (reconstructed field, posterior); the posterior mode when ``sample`` is False."""
        posterior = self.encode(field)
        return self.decode(posterior.sample() if sample else posterior.mode()), posterior
