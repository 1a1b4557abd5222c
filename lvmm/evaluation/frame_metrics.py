"""PSNR and SSIM of frame pairs: the one implementation every report, log and benchmark uses.

Images are ``(B, C, H, W)`` floats in [0, 1]; both functions return one value per image, ``(B,)``,
so that callers average over frames and videos as their protocol says.
"""

from __future__ import annotations

import kornia
import torch

DATA_RANGE = 1.0
# SSIM as Wang et al. (2004): an 11 x 11 Gaussian window (sigma 1.5), statistics only where the window
# fits inside the image ("valid"), as their reference code and scikit-image do. The benchmark uses these;
# the stage-one diagnostics on small frames pad instead ("same") and shrink the window to fit.
SSIM_WINDOW = 11
SSIM_PADDING = "valid"
# An exactly reproduced frame (the conditioning frame of an animation, a still clip copied) has infinite
# PSNR; capping it keeps averages over frames finite. 60 dB is an MSE of 1e-6 on the [0, 1] scale, an RMS error
# of a quarter of an 8-bit step: no generated or rendered frame that differs visibly comes near it, so the cap
# only decides what identical frames count as in a mean (stage one's still pairs, the README's tables).
# The benchmark, stage one's training logs and its evaluation all cap here: one cap, so their numbers compare.
PSNR_MAX_DB = 60.0
MIN_MSE = 10 ** (-PSNR_MAX_DB / 10)

__all__ = ["psnr", "psnr_from_mse", "ssim", "fitting_window", "PSNR_MAX_DB", "SSIM_WINDOW"]


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr_from_mse(mse: torch.Tensor | float) -> torch.Tensor:
    """PSNR in dB of mean squared errors on the [0, 1] scale, capped at :data:`PSNR_MAX_DB`."""
    return -10 * torch.log10(torch.as_tensor(mse).clamp_min(MIN_MSE))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image pair, capped at :data:`PSNR_MAX_DB`; ``(B,)``."""
    _check(x, y)
    return psnr_from_mse((x.float() - y.float()).pow(2).flatten(1).mean(1))


def fitting_window(shape: torch.Size | tuple[int, ...], window: int = SSIM_WINDOW) -> int:
    """``window``, or the largest odd window that fits frames of ``shape`` (``(..., H, W)``) when they are smaller."""
    return min(window, min(shape[-2:]) // 2 * 2 - 1)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = SSIM_WINDOW, padding: str = SSIM_PADDING) -> torch.Tensor:
    """Mean structural similarity of each image pair (over channels and positions); ``(B,)``.

    ``padding="valid"`` (the default) keeps only positions where the whole window fits, and refuses frames
    smaller than the window; ``"same"`` pads, for the small frames of the stage-one diagnostics.
    """
    _check(x, y)
    if padding == "valid" and min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window} x {window} pixels, got {tuple(x.shape[-2:])}")
    ssim_map = kornia.metrics.ssim(x.float(), y.float(), window, max_val=DATA_RANGE, padding=padding)
    return ssim_map.flatten(1).mean(1)
