"""Both stages fit a few steps with two gloo processes on CPU; the ranks end with identical weights and statistics."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT

DDP = [
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "2",
    "--trainer.strategy",
    "ddp_find_unused_parameters_true",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.limit_val_batches",
    "0",
    "--trainer.callbacks+=tests.helpers.ddp.DumpRankState",
]
STAGES = {
    # stage one's VAE joins at step 1, so step 0 leaves it unused: find_unused_parameters
    "one": [
        "--config",
        "configs/stage1/tiny.yaml",
        "--trainer.max_steps",
        "2",
        "--data.init_args.batch_size",
        "1",
        "--data.init_args.num_workers",
        "0",
        "--model.init_args.pairs_per_clip",
        "2",
        "--model.init_args.vae_start_step",
        "1",
    ],
    "two": [
        "--config",
        "configs/stage2/tiny.yaml",
        "--trainer.max_steps",
        "3",
        "--data.init_args.train_length",
        "16",
        "--data.init_args.batch_size",
        "2",
    ],
}


@pytest.mark.parametrize("stage", ["one", "two"])
def test_two_rank_fit_ends_with_identical_ranks(stage, tmp_path):
    root = tmp_path / "run"
    cmd = [
        sys.executable,
        "tools/train.py",
        "fit",
        *STAGES[stage],
        *DDP,
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger.init_args.save_dir",
        str(root),
    ]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),  # the callback: tests.helpers.ddp
        OMP_NUM_THREADS="1",
        WANDB_MODE="offline",
    )
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(root / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["extra"]["world_size"] == r1["extra"]["world_size"] == 2
    assert r0["extra"]["global_step"] == r1["extra"]["global_step"] == int(STAGES[stage][3])
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # weights and buffers
    if stage == "two":
        # the latent scale and the token statistics were all-gathered: one value on both ranks, set from data
        assert r0["extra"]["latent_scale"] == r1["extra"]["latent_scale"] and r0["extra"]["latent_scale"] > 0
        assert r0["state"]["unet.token_mean"].abs().sum() > 0
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == r0["extra"]["global_step"]
