"""Small building blocks shared by the stage-one networks (no training logic here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_GROUPS = 8
"""GroupNorm groups of the stage-one networks: at most this many, fewer when the width is small or not divisible."""
GROUP_NORM_EPS = 1e-5  # PyTorch's default, kept by the stage-one networks
UNET_NORM_EPS = 1e-6  # as latent-diffusion U-Nets (the stage-two U-Net and its attention blocks)


def group_norm(channels: int, groups: int = MAX_GROUPS, eps: float = GROUP_NORM_EPS) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``, so any width works.

    The one helper of every network: stage one caps the groups at :data:`MAX_GROUPS`, the stage-two U-Net at
    its ``groups`` setting (with ``eps=UNET_NORM_EPS``, as latent-diffusion U-Nets use)."""
    g = next(g for g in range(min(groups, channels), 0, -1) if channels % g == 0)
    return nn.GroupNorm(g, channels, eps=eps)


def norm(channels: int, enabled: bool = True) -> nn.Module:
    """:func:`group_norm` (batch-size independent, unlike BatchNorm) capped at :data:`MAX_GROUPS`; Identity if not
    ``enabled``."""
    return group_norm(channels) if enabled else nn.Identity()


class ConvBlock(nn.Sequential):
    """conv -> GroupNorm -> SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2), norm(out_channels), nn.SiLU()
        )


class ResBlock(nn.Module):
    """Pre-activation residual block; a 1x1 projection when the width changes. ``normalise=False`` drops the
    GroupNorms, for inputs whose overall magnitude is the signal (motion fields: a still clip and a strong
    sway differ mostly in amplitude, which per-sample normalisation would factor out)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, normalise: bool = True):
        super().__init__()
        out_channels = out_channels or in_channels
        self.body = nn.Sequential(
            norm(in_channels, normalise),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            norm(out_channels, normalise),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Down(nn.Module):
    """Halve the resolution with a strided convolution, then a residual block."""

    def __init__(self, in_channels: int, out_channels: int, normalise: bool = True):
        super().__init__()
        self.down = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.res = ResBlock(out_channels, normalise=normalise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.down(x))


class Up(nn.Module):
    """Double the resolution (nearest + conv, which avoids transposed-conv checkerboards), then a residual block."""

    def __init__(self, in_channels: int, out_channels: int, normalise: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.res = ResBlock(out_channels, normalise=normalise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))


def zero_init(module: nn.Conv2d, bias: float = 0.0) -> nn.Conv2d:
    """Zero the weights (and set the bias) so that a head starts from a known output."""
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.constant_(module.bias, bias)
    return module
