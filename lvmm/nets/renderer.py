"""The neural renderer R (after Johnson et al.'s feed-forward image transformation network).

Two down-sampling blocks turn I_0 into a 3-level feature pyramid (full, 1/2, 1/4). To render frame k,
every level is backward-warped by the (resized) displacement and weighted by the (resized) intention
weight w, then six residual blocks and two up-sampling blocks (with the warped levels as skips) render
a frame. The output blends that rendering with the plain warp of I_0:

    out = w * warp(I_0, d) + (1 - w) * rendered

so that with w near 1 (how P starts) the renderer is exactly the warp baseline, and the network only
has to learn what warping cannot do (disocclusions, borders) where w drops (docs/design.md, Rendering as a blend:
without
the blend the measured probe ended 1.6 dB below copying I_0).
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import nn

from lvmm.checkpoint import Configurable
from lvmm.nets.layers import ConvBlock, Down, ResBlock, Up, norm
from lvmm.warp import resize_field, warp


class Renderer(Configurable, nn.Module):
    """R: renders I_k from I_0 and a motion field p = (dx, dy, w) at any resolution.

    Args:
        width: channels of the full-resolution level (x2 at 1/2, x4 at 1/4).
        num_res_blocks: residual blocks at 1/4 resolution (6 in the paper).
        kernel_size: of the first and last convolutions (Johnson et al. use 9; 3 keeps tiny CPU runs fast).
    """

    PYRAMID_LEVELS = 3

    def __init__(self, width: int = 32, num_res_blocks: int = 6, kernel_size: int = 7):
        super().__init__()
        c = [width, 2 * width, 4 * width]
        self.stem = ConvBlock(3, c[0], kernel_size=kernel_size)
        self.down1, self.down2 = Down(c[0], c[1]), Down(c[1], c[2])
        self.body = nn.Sequential(*[ResBlock(c[2]) for _ in range(num_res_blocks)])
        self.up1, self.up2 = Up(c[2], c[1]), Up(c[1], c[0])
        self.fuse1, self.fuse0 = ConvBlock(2 * c[1], c[1], 1), ConvBlock(2 * c[0], c[0], 1)
        self.out = nn.Sequential(norm(c[0]), nn.SiLU(), nn.Conv2d(c[0], 3, kernel_size, padding=kernel_size // 2))
        self.appearance_channels = c[2]

    def encode(self, img0: torch.Tensor) -> list[torch.Tensor]:
        """img0 (B, 3, H, W) -> feature pyramid [(B, c, H, W), (B, 2c, H/2, W/2), (B, 4c, H/4, W/4)]."""
        f0 = self.stem(img0 * 2 - 1)
        f1 = self.down1(f0)
        return [f0, f1, self.down2(f1)]

    def fill(self, pyramid: list[torch.Tensor], field: torch.Tensor) -> torch.Tensor:
        """The network's own rendering (what warping cannot do), before the blend: (B, 3, H, W) in [0, 1]."""
        d, w = field[:, :2], field[:, 2:3]
        warped = [warp(f, d) * resize_field(w, f.shape[-2:]) for f in pyramid]  # occluded features fade out
        x = self.body(warped[2])
        x = self.fuse1(torch.cat([self.up1(x), warped[1]], 1))
        x = self.fuse0(torch.cat([self.up2(x), warped[0]], 1))
        return torch.sigmoid(self.out(x))  # (B, 3, H, W)

    def decode(self, img0: torch.Tensor, pyramid: list[torch.Tensor], field: torch.Tensor) -> torch.Tensor:
        """Render frames from I_0 (B, 3, H, W), its pyramid and fields (B, 3, h, w) -> (B, 3, H, W) in [0, 1]."""
        d, w = field[:, :2], field[:, 2:3]
        rendered = self.fill(pyramid, field)
        w_full = resize_field(w, img0.shape[-2:])
        return w_full * warp(img0, d) + (1 - w_full) * rendered

    def forward(self, img0: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """One frame per field: img0 (B, 3, H, W), field (B, 3, h, w) -> (B, 3, H, W)."""
        return self.decode(img0, self.encode(img0), field)

    def render_clip(self, img0: torch.Tensor, fields: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """img0 (B, 3, H, W), fields (B, T, 3, h, w) -> frames (B, T, 3, H, W).

        I_0 is encoded once; frames are decoded ``chunk_size`` time steps at a time, so memory stays
        bounded by the chunk, not the clip length.
        """
        pyramid = self.encode(img0)
        t_total = fields.shape[1]
        chunks = []
        for start in range(0, t_total, chunk_size):
            f = fields[:, start : start + chunk_size]  # (B, t, 3, h, w)
            t = f.shape[1]
            expand = lambda x, t=t: repeat(x, "b c h w -> (b t) c h w", t=t)
            frames = self.decode(expand(img0), [expand(p) for p in pyramid], f.flatten(0, 1))
            chunks.append(frames.unflatten(0, (-1, t)))
        return torch.cat(chunks, 1)
