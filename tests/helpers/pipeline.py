"""Tiny checkpoints of both stages and tiny video shards, for the encode and animation tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lvmm.checkpoint import save_networks
from tests.helpers import ROOT

TINY_IMAGEBIND_DIM = 32  # the tiny ImageBind's embedding size


def make_video_shards(
    out: Path, clips: int = 6, size: int = 64, frames: int = 9, per_shard: int = 3, name: str = "proc"
) -> list[Path]:
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "make_shards.py"),
        "--recipe",
        "procedural",
        "--num-clips",
        str(clips),
        "--size",
        str(size),
        "--clip-len",
        str(frames),
        "--out",
        str(out),
        "--name",
        name,
        "--format",
        "npy",
        "--max-samples",
        str(per_shard),
        "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return sorted(out.glob(f"{name}-*.tar"))


def stage_one_checkpoint(path: Path, seed: int = 0) -> Path:
    from tests.helpers.stage1 import tiny_networks

    return save_networks(path, tiny_networks(seed))


def stage_two_checkpoint(path: Path, stage_one: Path, seed: int = 0, num_frames: int = 4) -> Path:
    from lvmm.stages.stage_two import StageTwo
    from tests.helpers.stage2 import tiny_unet

    unet = tiny_unet(seed, cond_dim=TINY_IMAGEBIND_DIM)
    module = StageTwo(unet, num_frames=num_frames, latent_scale=1.0, motion_checkpoint=str(stage_one))
    return save_networks(path, {"unet": unet}, extra=module.extra())
