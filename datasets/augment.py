"""One random crop and flip for all frames of a sample, applied to its displacement fields too.

Fields follow :mod:`lvmm.warp` (normalised units, ``I_k(x) = I_0(x + d_k(x))``), so geometry changes
them as it changes the frames: cropping a box ``ch x cw`` out of ``H x W`` scales dx by ``W / cw``
and dy by ``H / ch`` (a pixel is a larger fraction of the smaller box, whatever the output size),
and a horizontal flip mirrors the field and negates dx. Written here rather than with kornia's
``VideoSequential`` because the field's values, not just its pixels, must follow the transform.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropFlip:
    """A crop box in pixels of the input and whether to mirror; the same for every frame of a sample."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


@dataclass(frozen=True)
class ClipAugment:
    """Random crop (a side fraction in ``scale`` of the largest box with the output's aspect), resize, flip.

    With ``train=False`` the crop is the centred largest box and nothing is flipped, so the same
    transform also brings evaluation data to ``size``.
    """

    size: tuple[int, int]
    scale: tuple[float, float] = (0.8, 1.0)
    hflip: bool = True
    train: bool = True

    def sample(self, height: int, width: int, rng: random.Random) -> CropFlip:
        th, tw = self.size
        fit = min(height / th, width / tw)  # the largest box of the output's aspect ratio inside the frame
        s = rng.uniform(*self.scale) if self.train else 1.0
        ch, cw = max(1, round(th * fit * s)), max(1, round(tw * fit * s))
        ch, cw = min(ch, height), min(cw, width)
        if self.train:
            top, left = rng.randint(0, height - ch), rng.randint(0, width - cw)
        else:
            top, left = (height - ch) // 2, (width - cw) // 2
        return CropFlip(top, left, ch, cw, flip=self.train and self.hflip and rng.random() < 0.5)

    def apply_frames(self, frames: torch.Tensor, p: CropFlip) -> torch.Tensor:
        """``(..., C, H, W)`` images: crop, resize to ``size`` (antialiased), flip."""
        x = frames[..., p.top : p.top + p.height, p.left : p.left + p.width]
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        if tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
        x = x.reshape(*lead, *x.shape[-3:])
        return x.flip(-1) if p.flip else x

    def apply_flows(self, flows: torch.Tensor, p: CropFlip, in_hw: tuple[int, int]) -> torch.Tensor:
        """``(..., 2, H, W)`` normalised fields: the same crop/resize/flip, values rescaled to the new frame."""
        h, w = in_hw
        x = flows[..., p.top : p.top + p.height, p.left : p.left + p.width]
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        if tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        scale = x.new_tensor([w / p.width, h / p.height]).view(1, 2, 1, 1)
        x = (x * scale).reshape(*lead, *x.shape[-3:])
        if p.flip:
            x = x.flip(-1)
            x = torch.cat([-x[..., :1, :, :], x[..., 1:, :, :]], dim=-3)
        return x

    def __call__(self, frames: torch.Tensor, flows: torch.Tensor | None, rng: random.Random):
        """Transform ``frames`` (..., 3, H, W) and optionally ``flows`` (..., 2, H, W) alike."""
        h, w = frames.shape[-2:]
        p = self.sample(h, w, rng)
        out_flows = self.apply_flows(flows, p, (h, w)) if flows is not None else None
        return self.apply_frames(frames, p), out_flows
