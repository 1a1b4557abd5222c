"""The flow predictor P: I_0, I_k -> p = (dx, dy, w) at 1/4 of the frame size.

MRAA gives the structure: part regions of both frames (:mod:`lvmm.nets.region_predictor`) yield one
affine motion per part plus a background motion, and a dense-motion network blends them into a dense
field. What makes it learn fast (docs/design.md, Differential evidence for the dense-motion network) is what the
dense-motion network sees:
the differential evidence of Lucas-Kanade (I_k - I_0, the spatial gradients of I_0, their products, the
blurred structure tensor and its regularised per-pixel solve) on an image pyramid, instead of the raw
frames, and residual refinement passes that warp I_0 by the current field, recompute the evidence and
predict a correction. Each pass returns its field so the photometric loss can supervise all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from lvmm.checkpoint import Configurable
from lvmm.nets.layers import ConvBlock, ResBlock, zero_init
from lvmm.nets.region_predictor import BackgroundMotionPredictor, RegionPredictor, Regions, region_motions
from lvmm.warp import normalised_to_pixels, pixels_to_normalised, resize_field, warp

FIRST_ORDER_GAIN = 10.0
"""Scales I_k - I_0 and image gradients (typically ~0.05 on [0, 1] images) to order one."""
SECOND_ORDER_GAIN = 100.0
"""Scales products of two first-order terms (~2.5e-3) to order one."""
LK_WINDOW_SIGMA = 1.5
"""Gaussian window (pixels of each pyramid level) over which the structure tensor is summed."""
LK_DAMPING = 1e-4
"""Tikhonov damping of the per-pixel Lucas-Kanade solve: flat regions give ~0 instead of noise."""
LK_MAX_PX = 4.0
"""The per-pixel Lucas-Kanade estimate is clipped to this many pixels of its level and divided by it."""
FIELD_INPUT_PX = 4.0
"""Fields fed back to the network are in pixels of the field grid divided by this."""
INTENTION_INIT_LOGIT = 4.0
"""w starts at sigmoid(4) ~ 0.98: the renderer begins as a plain warp of I_0 (docs/design.md, Rendering as a blend,
starting at the warp)."""
BACKGROUND_MASK_BIAS = 8.0
"""The blending mask starts on the background motion (the identity), so the initial field is zero."""
EVIDENCE_CHANNELS = 22
"""3 (I_k - I_0) + 6 (gradients) + 6 (products) + 5 (structure tensor) + 2 (Lucas-Kanade solve)."""


def differential_evidence(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lucas-Kanade's ingredients for the backward flow that maps ``target`` onto ``source``.

    source, target: (B, 3, H, W) in [0, 1] -> (B, EVIDENCE_CHANNELS, H, W), every channel of order one.
    """
    it = target - source  # (B, 3, H, W)
    grad = kornia.filters.spatial_gradient(source, mode="sobel", normalized=True)  # (B, 3, 2, H, W) per pixel
    ix, iy = grad[:, :, 0], grad[:, :, 1]
    window = 2 * math.ceil(2 * LK_WINDOW_SIGMA) + 1

    def blur(x):
        return kornia.filters.gaussian_blur2d(x, window, (LK_WINDOW_SIGMA, LK_WINDOW_SIGMA))

    tensor = blur(
        torch.stack([(ix * ix).sum(1), (iy * iy).sum(1), (ix * iy).sum(1), (ix * it).sum(1), (iy * it).sum(1)], 1)
    )
    sxx, syy, sxy, sxt, syt = (tensor[:, i] + (LK_DAMPING if i < 2 else 0.0) for i in range(5))
    det = sxx * syy - sxy * sxy
    # I_k(x) = I_0(x + d) ~ I_0 + grad I_0 . d  =>  S d = sum(grad I_0 * (I_k - I_0))
    lk = torch.stack([syy * sxt - sxy * syt, sxx * syt - sxy * sxt], 1) / det[:, None]  # (B, 2, H, W) pixels
    lk = lk.clamp(-LK_MAX_PX, LK_MAX_PX) / LK_MAX_PX
    first = torch.cat([it, ix, iy], 1) * FIRST_ORDER_GAIN
    second = torch.cat([ix * it, iy * it, tensor], 1) * SECOND_ORDER_GAIN
    return torch.cat([first, second, lk], 1)


def evidence_pyramid(source: torch.Tensor, target: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Evidence at 1, 1/2, ... 1/2^(levels-1) of the frame size; coarse levels see large motions as small."""
    pyramid = []
    for i in range(levels):
        if i:
            source, target = F.avg_pool2d(source, 2), F.avg_pool2d(target, 2)
        pyramid.append(differential_evidence(source, target))
    return pyramid


class MotionPass(nn.Module):
    """One pass of the dense-motion network: a U-Net over the evidence pyramid, read out at the field level.

    Level i works at 1/2^i of the frame and receives the evidence of that level; ``extra_channels`` more
    inputs (the current field, the part motions) join at the field level.
    """

    def __init__(self, widths: list[int], field_level: int, extra_channels: int, out_channels: int, depth: int):
        super().__init__()
        self.field_level = field_level
        e = EVIDENCE_CHANNELS
        # the evidence is already windowed (the structure tensor is blurred), so full resolution needs only a
        # per-pixel mixing; plain strided convolutions then carry it down: full-resolution work dominates the cost
        self.stem = ConvBlock(e, widths[0], kernel_size=1)
        self.downs = nn.ModuleList([ConvBlock(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:])])
        self.merge = nn.ModuleList(
            [
                ConvBlock(w + e + (extra_channels if i + 1 == field_level else 0), w, kernel_size=1)
                for i, w in enumerate(widths[1:])
            ]
        )
        self.ups = nn.ModuleList(
            [
                nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), ConvBlock(widths[i + 1], widths[i]))
                for i in range(field_level, len(widths) - 1)
            ]
        )
        self.fuse = nn.ModuleList(
            [ConvBlock(2 * widths[i], widths[i], kernel_size=1) for i in range(field_level, len(widths) - 1)]
        )
        self.body = nn.Sequential(*[ResBlock(widths[field_level]) for _ in range(depth)])
        self.head = zero_init(nn.Conv2d(widths[field_level], out_channels, 3, padding=1))  # passes start as no-ops

    def forward(self, evidence: list[torch.Tensor], extra: torch.Tensor) -> torch.Tensor:
        x = self.stem(evidence[0])
        skips = [x]
        for i, (down, merge) in enumerate(zip(self.downs, self.merge)):
            parts = [down(x), evidence[i + 1]] + ([extra] if i + 1 == self.field_level else [])
            x = merge(torch.cat(parts, 1))
            skips.append(x)
        for up, fuse, skip in zip(reversed(self.ups), reversed(self.fuse), reversed(skips[self.field_level : -1])):
            x = fuse(torch.cat([up(x), skip], 1))
        return self.head(self.body(x))  # (B, out, H / 2^field_level, W / 2^field_level)


@dataclass
class FlowOutput:
    """field (B, 3, h, w) = (dx, dy, w); passes: each pass's displacement (B, 2, h, w); the regions of both frames."""

    field: torch.Tensor
    passes: list[torch.Tensor]
    regions0: Regions
    regionsk: Regions


class FlowPredictor(Configurable, nn.Module):
    """P: predicts the motion field p = (dx, dy, w) from I_0 to I_k at 1/``field_downsample`` of the frame.

    Args:
        num_regions: MRAA part count K.
        region_width, region_depth: width and depth of the region predictor.
        background_width: width of the background motion predictor.
        widths: dense-motion U-Net widths, one per pyramid level (level i at 1/2^i of the frame); levels
            coarser than the field level see motions larger than a few pixels as small ones.
        depth: residual blocks at the field level in each pass.
        refine_passes: residual refinement passes after the first (2 in the measured probe).
        field_downsample: frame-to-field reduction (4 in the paper), a power of two.
        region_input_downsample: the region predictor sees the frame shrunk by this (MRAA works at 1/4).
    """

    def __init__(
        self,
        num_regions: int = 10,
        region_width: int = 16,
        region_depth: int = 2,
        background_width: int = 16,
        widths: list[int] = (16, 32, 64, 64),
        depth: int = 2,
        refine_passes: int = 2,
        field_downsample: int = 4,
        region_input_downsample: int = 2,
    ):
        super().__init__()
        self.field_level = int(math.log2(field_downsample))
        if 2**self.field_level != field_downsample or len(widths) <= self.field_level:
            raise ValueError(
                f"field_downsample must be a power of two below 2^len(widths); got {field_downsample}, {widths}"
            )
        self.num_regions, self.field_downsample = num_regions, field_downsample
        self.levels = len(widths)
        self.regions = RegionPredictor(
            num_regions,
            region_width,
            region_depth,
            downsample=field_downsample,
            input_downsample=region_input_downsample,
        )
        self.background = BackgroundMotionPredictor(background_width)
        k = num_regions + 1
        # first pass: part motions (2 per part + background), heatmap differences (K); out: mask (K + 1), dx, dy, w
        self.first = MotionPass(list(widths), self.field_level, 2 * k + num_regions, k + 3, depth)
        # refinement passes: the current field (dx, dy, w); out: corrections of dx, dy and w's logit
        self.refine = nn.ModuleList(
            [MotionPass(list(widths), self.field_level, 3, 3, depth) for _ in range(refine_passes)]
        )
        with torch.no_grad():
            self.first.head.bias[0] = BACKGROUND_MASK_BIAS
            self.first.head.bias[k + 2] = INTENTION_INIT_LOGIT

    def field_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.field_downsample, width // self.field_downsample

    def _field_input(self, displacement: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h, wd = displacement.shape[-2:]
        return torch.cat([normalised_to_pixels(displacement, h, wd) / FIELD_INPUT_PX, w], 1)

    def forward(self, img0: torch.Tensor, imgk: torch.Tensor) -> FlowOutput:
        """img0, imgk (B, 3, H, W) in [0, 1] -> :class:`FlowOutput` with p at (H, W) / field_downsample."""
        size = self.field_size(*img0.shape[-2:])
        r0, rk = self.regions(img0), self.regions(imgk)
        motions = region_motions(r0, rk, self.background(img0, imgk), size)  # (B, K + 1, 2, h, w)
        heat0, heatk = (resize_field(r.heatmap, size) for r in (r0, rk))
        heat_diff = (heatk - heat0) / heatk.amax((-2, -1), keepdim=True).clamp_min(1e-6)
        motion_px = normalised_to_pixels(motions, *size).flatten(1, 2) / FIELD_INPUT_PX
        out = self.first(evidence_pyramid(img0, imgk, self.levels), torch.cat([motion_px, heat_diff], 1))
        k = self.num_regions + 1
        mask = torch.softmax(out[:, :k], 1)  # (B, K + 1, h, w)
        displacement = torch.einsum("bkhw,bkchw->bchw", mask, motions) + pixels_to_normalised(out[:, k : k + 2], *size)
        logit = out[:, k + 2 : k + 3]
        passes = [displacement]
        for refine in self.refine:
            # RAFT-style: the evidence after warping is an input, not a path for gradients to earlier passes
            d, w = displacement.detach(), torch.sigmoid(logit.detach())
            evidence = evidence_pyramid(warp(img0, d), imgk, self.levels)
            delta = refine(evidence, self._field_input(d, w))
            displacement = displacement + pixels_to_normalised(delta[:, :2], *size)
            logit = logit + delta[:, 2:3]
            passes.append(displacement)
        field = torch.cat([displacement, torch.sigmoid(logit)], 1)  # (B, 3, h, w)
        return FlowOutput(field, passes, r0, rk)
