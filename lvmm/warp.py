"""The flow convention of LVMM and the warping helpers everything else uses.

Conventions (docs/conventions.md, Flow convention):

* Images are float tensors in [0, 1], shape ``(B, 3, H, W)``.
* A displacement field ``d`` has shape ``(B, 2, H, W)``; channel 0 is dx, channel 1 is dy, both in
  normalised grid units of :func:`torch.nn.functional.grid_sample` with ``align_corners=False``:
  a shift of one pixel along x is ``2 / W``. Because the units are normalised, a field keeps its
  meaning when it is resized, so fields at 1/4 of the frame size warp full-size frames directly.
* Warping is backward: ``warp(I_0, d_k)(x) = I_0(x + d_k(x))``. The field of frame k is the one that
  re-renders I_k from I_0.
* A motion field ``p`` has 3 channels: (dx, dy, w), with the intention weight w in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def base_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates in normalised units, shape ``(1, 2, H, W)`` (x first, then y)."""
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])[None]


def resize_field(field: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a field (any channels) to ``size``; displacements need no rescaling (normalised units)."""
    if tuple(field.shape[-2:]) == tuple(size):
        return field
    return F.interpolate(field, size=size, mode="bilinear", align_corners=False)


def warp(
    image: torch.Tensor, displacement: torch.Tensor, padding_mode: str = "border", mode: str = "bilinear"
) -> torch.Tensor:
    """Backward-warp ``image`` (B, C, H, W) by ``displacement`` (B, 2, h, w), resized to (H, W).

    ``mode="bicubic"`` keeps more detail at sub-pixel shifts (and may overshoot [0, 1] slightly)."""
    b, _, h, w = image.shape
    d = resize_field(displacement[:, :2].to(image.dtype), (h, w))  # (B, 2, H, W)
    grid = (base_grid(h, w, image.device, image.dtype) + d).permute(0, 2, 3, 1)  # (B, H, W, 2)
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def pixels_to_normalised(displacement_px: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Convert a (.., 2, H, W) displacement in pixels to normalised grid units."""
    scale = displacement_px.new_tensor([2.0 / width, 2.0 / height]).view(2, 1, 1)
    return displacement_px * scale


def normalised_to_pixels(displacement: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Convert a (.., 2, H, W) displacement in normalised grid units to pixels."""
    scale = displacement.new_tensor([width / 2.0, height / 2.0]).view(2, 1, 1)
    return displacement * scale


def end_point_error(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean end-point error in pixels of the frame the fields live on; both (B, 2, H, W) normalised."""
    h, w = true.shape[-2:]
    pred = resize_field(pred[:, :2], (h, w))
    diff = normalised_to_pixels(pred - true[:, :2], h, w)
    return diff.norm(dim=1).mean()


def forward_differences(x: torch.Tensor, pad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite-difference x and y gradients ``x[..., :, 1:] - x[..., :, :-1]`` and ``x[..., 1:, :] - x[..., :-1, :]``
    of ``(..., H, W)``; with ``pad`` zero-padded at the far edge so both keep the size ``(..., H, W)``.

    The one implementation of the project's spatial gradients (loop guidance, smoothness loss, motion features).
    """
    gx, gy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    if pad:
        gx, gy = F.pad(gx, (0, 1)), F.pad(gy, (0, 0, 0, 1))
    return gx, gy
