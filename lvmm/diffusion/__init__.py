"""Diffusion over latent motion: schedules, samplers, guidance; separate from the networks.

* :mod:`~lvmm.diffusion.schedules`: :class:`DiffusionConfig` (betas, prediction type), :class:`Diffusion`
  (training targets and loss weights), :func:`make_scheduler` (DDPM, DDIM, DPM-Solver++);
* :mod:`~lvmm.diffusion.guidance`: :class:`ClassifierFreeGuidance`, the energy terms (:class:`LoopGuidance`,
  :class:`MaskGuidance`, :class:`DragGuidance`), :class:`StepSchedule`;
* :mod:`~lvmm.diffusion.sampling`: :func:`sample`, the one sampling loop;
* :mod:`~lvmm.diffusion.windows`: :class:`~lvmm.diffusion.windows.WindowedDenoiser`, a network of K frames
  run on overlapping windows of a longer sequence (long clips).

:func:`load_motion_diffusion` rebuilds, from a stage-two checkpoint alone, the U-Net and everything the
sampler needs.
"""

from __future__ import annotations

from pathlib import Path

from lvmm.diffusion.guidance import (
    ClassifierFreeGuidance,
    DragGuidance,
    EnergyGuidance,
    LoopGuidance,
    MaskGuidance,
    StepSchedule,
)
from lvmm.diffusion.sampling import GuidedDenoiser, sample
from lvmm.diffusion.schedules import SAMPLERS, Diffusion, DiffusionConfig, make_scheduler

__all__ = [
    "ClassifierFreeGuidance",
    "EnergyGuidance",
    "LoopGuidance",
    "MaskGuidance",
    "DragGuidance",
    "StepSchedule",
    "GuidedDenoiser",
    "sample",
    "SAMPLERS",
    "Diffusion",
    "DiffusionConfig",
    "make_scheduler",
    "load_motion_diffusion",
]


def load_motion_diffusion(path: str | Path, map_location="cpu"):
    """``(unet, DiffusionConfig, extra)`` from a stage-two checkpoint (``.ckpt`` or ``.safetensors``).

    ``extra`` is the checkpoint's ``lvmm_extra`` entry: ``latent_scale``, ``num_frames``,
    ``latent_channels``, ``latent_size``, ``cond_dim``, ``token_names``, ``appearance_channels``,
    ``motion_checkpoint`` and ``diffusion`` (the :class:`DiffusionConfig` as a dict).
    """
    from lvmm.checkpoint import CheckpointError, load_networks, read_checkpoint

    _, _, extra = read_checkpoint(path)
    if "diffusion" not in extra:
        raise CheckpointError(f"{path}: no diffusion config in 'lvmm_extra'; is it a stage-two checkpoint?")
    unet = load_networks(path, ["unet"], map_location=map_location)["unet"]
    return unet, DiffusionConfig.from_dict(extra["diffusion"]), extra
