"""Per-image PSNR and SSIM over kornia's implementations.

Images are ``(B, 3, H, W)`` floats in [0, 1]; both functions return one value per image, ``(B,)``,
so that callers average over frames and videos as their protocol says.
"""

from __future__ import annotations

import kornia
import torch

DATA_RANGE = 1.0
# SSIM as Wang et al. (2004): an 11 x 11 Gaussian window (sigma 1.5), statistics only where the window
# fits inside the image ("valid"), as their reference code and scikit-image do.
SSIM_WINDOW = 11
SSIM_PADDING = "valid"
# An exactly reproduced frame (e.g. the conditioning frame of an animation) has infinite PSNR; capping
# it keeps averages over frames finite. 100 dB is an MSE of 1e-10 on the [0, 1] scale.
PSNR_MAX_DB = 100.0

__all__ = ["psnr", "ssim", "PSNR_MAX_DB"]


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image pair, capped at :data:`PSNR_MAX_DB`; ``(B,)``."""
    _check(x, y)
    # kornia's psnr reduces over everything it is given, hence one call per image.
    values = torch.stack([kornia.metrics.psnr(a, b, DATA_RANGE) for a, b in zip(x.float(), y.float())])
    return values.clamp(max=PSNR_MAX_DB)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of each image pair (over channels and valid positions); ``(B,)``."""
    _check(x, y)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {tuple(x.shape[-2:])}"
        )
    ssim_map = kornia.metrics.ssim(x.float(), y.float(), SSIM_WINDOW, max_val=DATA_RANGE, padding=SSIM_PADDING)
    return ssim_map.mean(dim=(1, 2, 3))
