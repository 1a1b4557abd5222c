"""Tiny stage-one builders shared by the stage-one tests (and usable from other tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lvmm.nets.flow_predictor import FlowPredictor
from lvmm.nets.motion_vae import MotionVAE
from lvmm.nets.renderer import Renderer
from tests.helpers import ROOT

TINY_CONFIG = ROOT / "configs" / "stage1" / "tiny.yaml"
SIZE = 64


def tiny_networks(seed: int = 0) -> dict:
    """Small P, E/D and R for 64x64 frames (p 16x16, z 4x8x8), seeded."""
    torch.manual_seed(seed)
    return {
        "flow": FlowPredictor(
            num_regions=4,
            region_width=4,
            region_depth=1,
            background_width=4,
            widths=[4, 8, 8, 8],
            depth=1,
            refine_passes=2,
            field_downsample=4,
        ),
        "vae": MotionVAE(latent_channels=4, reduction=2, width=8, max_width=16),
        "renderer": Renderer(width=4, num_res_blocks=1, kernel_size=3),
    }


def tiny_motion_model(seed: int = 0):
    from lvmm.motion import MotionModel

    return MotionModel(**tiny_networks(seed)).eval()


def random_pair(batch: int = 2, size: int = SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img0 = torch.rand(batch, 3, size, size, generator=g)
    return img0, (img0 + 0.05 * torch.randn(img0.shape, generator=g)).clamp(0, 1)


def fit_args(root: Path, max_steps: int, ckpt_path: str | Path | None = None) -> list[str]:
    """CLI arguments that fit the tiny YAML for ``max_steps`` steps under ``root``, small and fast:
    one clip of 2 pairs per step, no worker processes, no validation; ``last.ckpt`` is written at the end."""
    args = [
        "fit",
        "--config",
        str(TINY_CONFIG),
        "--trainer.max_steps",
        str(max_steps),
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger.init_args.save_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.log_every_n_steps",
        "1",
        "--data.init_args.batch_size",
        "1",
        "--data.init_args.num_workers",
        "0",
        "--model.init_args.pairs_per_clip",
        "2",
        "--model.init_args.vae_start_step",
        "1",
    ]
    if ckpt_path is not None:
        args += ["--ckpt_path", str(ckpt_path)]
    return args


def run_cli(args: list[str]):
    """``lvmm.cli.train.main(args)`` with a clean ``sys.argv`` (LightningCLI warns about pytest's own arguments)."""
    from unittest import mock

    from lvmm.cli.train import main

    with mock.patch.object(sys, "argv", ["train.py"]):
        return main(args)


STAGE_TWO = [
    "--config",
    str(ROOT / "configs/stage2/tiny.yaml"),
    "--trainer.limit_val_batches",
    "0",
    "--trainer.enable_progress_bar",
    "false",
    "--data.init_args.train_length",
    "12",
    "--data.init_args.batch_size",
    "4",
    "--trainer.log_every_n_steps",
    "1",
]


def stage_two_fit_args(root, steps: int, ckpt=None) -> list[str]:
    """``fit`` arguments of the tiny stage-two config for ``steps`` steps under ``root`` (resuming ``ckpt``)."""
    args = [
        "fit",
        *STAGE_TWO,
        "--trainer.max_steps",
        str(steps),
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger.init_args.save_dir",
        str(root),
    ]
    return args + (["--ckpt_path", str(ckpt)] if ckpt else [])
