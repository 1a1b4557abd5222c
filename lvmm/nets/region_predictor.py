"""MRAA-style region and background motion predictors, the structural part of the flow predictor P.

Regions are soft part heatmaps; each region's position (shift) and shape (covariance) are the first and
second moments of its heatmap over the normalised grid of :mod:`lvmm.warp`, and its affine frame is
MRAA's ``U sqrt(S)`` of the covariance ``U S U^T`` (principal axes scaled by their standard deviations).
A part's motion from I_0 to I_k is the affine map that carries the region's frame in I_k onto its frame
in I_0 (a backward map, like every field in LVMM): ``A_0 A_k^-1``, which is a rotation when the part
turns. (The symmetric square root of the covariance, used before, cannot express a rotation: a part
turned by 30 degrees got a shear-and-stretch Jacobian instead.)

The principal axes are an unoriented pair of lines, so U is fixed by a convention: a proper rotation by
the angle phi in (-90, 90] degrees of the first axis (closed form for 2x2, no SVD sign flips between
frames). A part that turns across the +-90 degree boundary swaps its axes' labels, as it does in MRAA;
the equivariance loss compares symmetric roots (:func:`sqrtm_2x2`), which have no such ambiguity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvmm.checkpoint import Configurable
from lvmm.nets.layers import ConvBlock, Down, ResBlock, zero_init
from lvmm.warp import base_grid

COVARIANCE_EPS = 1e-4
"""Added to region covariances (normalised units squared, ~ (0.6 px at 64 px)^2) so square roots and inverses stay
finite."""


@dataclass
class Regions:
    """Soft regions of one frame: heatmaps (B, K, h, w) summing to 1, shift (B, K, 2), covar and affine (B, K, 2, 2)."""

    heatmap: torch.Tensor
    shift: torch.Tensor
    covar: torch.Tensor
    affine: torch.Tensor


def sqrtm_2x2(m: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of symmetric positive-definite (.., 2, 2) matrices, in closed form."""
    s = torch.sqrt(torch.det(m).clamp_min(1e-12))  # sqrt(det) = product of the roots' eigenvalues
    t = torch.sqrt((m[..., 0, 0] + m[..., 1, 1] + 2 * s).clamp_min(1e-12))  # trace of the root
    eye = torch.eye(2, dtype=m.dtype, device=m.device)
    return (m + s[..., None, None] * eye) / t[..., None, None]


def principal_frame_2x2(m: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """MRAA's frame ``U sqrt(S)`` of symmetric positive-definite (.., 2, 2) matrices ``m = U S U^T``.

    U is the rotation by phi = atan2(2 b, a - c) / 2 (the first principal axis, in (-90, 90] degrees), from
    the half-angle of (cos 2 phi, sin 2 phi) so the gradients stay finite; S = diag(U^T m U), which holds
    the right eigenvalue for each column whatever their order. ``frame @ frame^T == m``.
    """
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 1, 1]
    r = torch.sqrt((a - c) ** 2 + 4 * b**2 + eps)
    cos2, sin2 = (a - c) / r, 2 * b / r
    half = torch.stack([1 + cos2 + eps, sin2], -1)  # (.., 2) along (cos phi, sin phi)
    cos, sin = (half / half.norm(dim=-1, keepdim=True)).unbind(-1)
    u = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (.., 2, 2) rows
    s = torch.diagonal(u.transpose(-1, -2) @ m @ u, dim1=-2, dim2=-1).clamp_min(eps)  # (.., 2)
    return u * s.sqrt()[..., None, :]


def heatmap_moments(heatmap: torch.Tensor) -> Regions:
    """Shift, covariance and affine frame of spatially normalised heatmaps (B, K, h, w)."""
    h, w = heatmap.shape[-2:]
    grid = rearrange(base_grid(h, w, heatmap.device, heatmap.dtype), "1 c h w -> 1 1 (h w) c")  # (1, 1, hw, 2)
    p = rearrange(heatmap, "b k h w -> b k (h w) 1")
    shift = (p * grid).sum(2)  # (B, K, 2)
    centred = grid - shift[:, :, None]  # (B, K, hw, 2)
    covar = torch.einsum("bkn,bkni,bknj->bkij", p[..., 0], centred, centred)
    covar = covar + COVARIANCE_EPS * torch.eye(2, dtype=covar.dtype, device=covar.device)
    return Regions(heatmap, shift, covar, principal_frame_2x2(covar))


class RegionPredictor(Configurable, nn.Module):
    """Predicts ``num_regions`` soft part heatmaps of a frame at 1/``downsample`` of its size.

    Args:
        num_regions: number of parts K.
        width: channels after the stem; doubled at each down-sampling.
        depth: residual blocks at the heatmap resolution.
        downsample: frame-to-heatmap reduction, a power of two.
        input_downsample: the frame is area-shrunk by this before the network (parts are coarse structures,
            so full resolution mostly costs time); at most ``downsample``.
        temperature: softmax temperature of the heatmaps (lower = sharper parts).
    """

    def __init__(
        self,
        num_regions: int = 10,
        width: int = 16,
        depth: int = 2,
        downsample: int = 4,
        temperature: float = 0.1,
        input_downsample: int = 1,
    ):
        super().__init__()
        levels = int(math.log2(downsample // input_downsample))
        if 2**levels * input_downsample != downsample:
            raise ValueError(
                f"downsample / input_downsample must be a power of two, not {downsample} / {input_downsample}"
            )
        self.num_regions, self.temperature, self.input_downsample = num_regions, temperature, input_downsample
        widths = [width * 2**i for i in range(levels + 1)]
        self.stem = ConvBlock(3, width, kernel_size=7)
        self.down = nn.Sequential(*[Down(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.body = nn.Sequential(*[ResBlock(widths[-1]) for _ in range(depth)])
        self.head = nn.Conv2d(widths[-1], num_regions, 3, padding=1)

    def forward(self, image: torch.Tensor) -> Regions:
        """image (B, 3, H, W) in [0, 1] -> :class:`Regions` at (H, W) / downsample."""
        x = F.avg_pool2d(image, self.input_downsample) if self.input_downsample > 1 else image
        logits = self.head(self.body(self.down(self.stem(x * 2 - 1)))) / self.temperature  # (B, K, h, w)
        h, w = logits.shape[-2:]
        heat = torch.softmax(rearrange(logits, "b k h w -> b k (h w)"), dim=-1)
        return heatmap_moments(rearrange(heat, "b k (h w) -> b k h w", h=h, w=w))


class BackgroundMotionPredictor(Configurable, nn.Module):
    """Predicts a global affine motion (B, 2, 3) from I_0 and I_k, starting at the identity.

    Args:
        width: channels of the first layer, doubled at each of ``levels`` down-samplings.
        levels: strided stages before global pooling.
    """

    def __init__(self, width: int = 16, levels: int = 4):
        super().__init__()
        widths = [width * 2**i for i in range(levels + 1)]
        self.stem = ConvBlock(6, width)
        self.down = nn.Sequential(*[ConvBlock(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:])])
        self.head = zero_init(nn.Conv2d(widths[-1], 6, 1))  # zero: the background starts still

    def forward(self, img0: torch.Tensor, imgk: torch.Tensor) -> torch.Tensor:
        x = self.down(self.stem(torch.cat([img0, imgk], 1) * 2 - 1))
        delta = rearrange(self.head(x.mean((-2, -1), keepdim=True)), "b (i j) 1 1 -> b i j", i=2, j=3)
        identity = torch.eye(2, 3, dtype=delta.dtype, device=delta.device)
        return identity + delta  # (B, 2, 3)


def region_motions(source: Regions, driving: Regions, background: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Backward displacement fields (B, K + 1, 2, h, w) of every part and of the background.

    For a point x of I_k, part j maps it to ``s0_j + A0_j A_k_j^-1 (x - sk_j)`` in I_0; the background
    maps it by its affine. Index 0 is the background.
    """
    h, w = size
    grid = rearrange(base_grid(h, w, background.device, background.dtype), "1 c h w -> 1 1 h w c")  # (1, 1, h, w, 2)
    jac = source.affine @ torch.linalg.inv(driving.affine)  # (B, K, 2, 2)
    rel = grid - driving.shift[:, :, None, None]  # (B, K, h, w, 2)
    parts = torch.einsum("bkij,bkhwj->bkhwi", jac, rel) + source.shift[:, :, None, None] - grid  # (B, K, h, w, 2)
    bg = torch.einsum("bij,bhwj->bhwi", background[:, :, :2], grid[:, 0].expand(len(background), -1, -1, -1))
    bg = bg + background[:, None, None, :, 2] - grid[:, 0]  # (B, h, w, 2)
    return rearrange(torch.cat([bg[:, None], parts], 1), "b k h w c -> b k c h w")
