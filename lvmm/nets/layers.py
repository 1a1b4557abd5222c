"""Small building blocks shared by the networks of both stages (no training logic here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
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


def per_frame(layer, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D layer to every frame of ``(B, C, T, H, W)``; an image ``(B, C, H, W)`` goes straight in.

    A zero-padded ``nn.Conv2d`` runs as a 3-D convolution with a (1, kh, kw) kernel on the video as it is laid
    out: the same arithmetic without folding time into the batch and back (two copies of the activations,
    a third of the time of the U-Net's convolutions on CPU)."""
    if x.ndim == 4 or isinstance(layer, nn.Identity):
        return layer(x)
    if isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
        return F.conv3d(
            x,
            layer.weight.unsqueeze(2),  # (Co, Ci, 1, kh, kw)
            layer.bias,
            stride=(1, *layer.stride),
            padding=(0, *layer.padding),
            dilation=(1, *layer.dilation),
            groups=layer.groups,
        )
    b = x.shape[0]
    y = layer(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class ConvBlock(nn.Sequential):
    """conv -> GroupNorm -> SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2), norm(out_channels), nn.SiLU()
        )


class ResBlock(nn.Module):
    """Pre-activation residual block of 3x3 convolutions, the one of both stages; a 1x1 projection when the
    width changes.

    Images ``(B, C, H, W)`` or videos ``(B, C, T, H, W)``: on a video the convolutions act on each frame and
    the GroupNorms over the whole clip. With ``emb_dim``, ``forward(x, emb)`` modulates the second norm's
    output by a scale and shift from the embedding ``emb`` (B, emb_dim) (the U-Net's timestep and
    conditions). ``normalise=False`` drops the GroupNorms, for inputs whose overall magnitude is the signal
    (motion fields: a still clip and a strong sway differ mostly in amplitude, which per-sample
    normalisation would factor out). ``zero_init`` zeroes the last convolution so the block starts as its
    skip path.

    Stage-one checkpoints written before the two stages shared this block name its layers ``body.0``,
    ``body.2``, ``body.3`` and ``body.5`` (one ``nn.Sequential``); loading renames them (:data:`LEGACY_KEYS`).
    """

    LEGACY_KEYS = {"body.0.": "norm1.", "body.2.": "conv1.", "body.3.": "norm2.", "body.5.": "conv2."}
    """Old state-dict key prefix -> the current one."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        normalise: bool = True,
        emb_dim: int | None = None,
        dropout: float = 0.0,
        groups: int = MAX_GROUPS,
        eps: float = GROUP_NORM_EPS,
        zero_init: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = group_norm(in_channels, groups, eps) if normalise else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels) if emb_dim else None
        self.norm2 = group_norm(out_channels, groups, eps) if normalise else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm2(per_frame(self.conv1, F.silu(self.norm1(x))))  # (B, Co, [T,] H, W)
        if self.emb is not None:  # (B, 2 Co) -> scale and shift, each (B, Co, [1,] 1, 1)
            scale, shift = self.emb(F.silu(emb)).view(emb.shape[0], 2, -1, *[1] * (x.ndim - 2)).unbind(1)
            h = h * (1 + scale) + shift
        return per_frame(self.skip, x) + per_frame(self.conv2, self.dropout(F.silu(h)))

    @classmethod
    def rename_legacy_keys(cls, state: dict, prefix: str = "") -> None:
        """Rename, in place, the keys of the block at ``prefix`` in ``state`` from their old names."""
        for old, new in cls.LEGACY_KEYS.items():
            for key in [k for k in state if k.startswith(prefix + old)]:
                state[prefix + new + key[len(prefix + old) :]] = state.pop(key)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.rename_legacy_keys(state_dict, prefix)  # torch passes its own copy of the caller's dict
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
