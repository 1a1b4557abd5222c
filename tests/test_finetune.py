"""Fine-tuning (--init_from): another run's weights (EMA when present), a fresh optimizer, schedule and step count."""

from __future__ import annotations

import pytest
import torch

from lvmm.finetune import load_initial_weights
from tests.helpers.stage1 import fit_args, run_cli, stage_two_fit_args


@pytest.mark.parametrize("stage", ["one", "two"])
def test_init_from_starts_a_fresh_fit_from_the_weights(stage, tmp_path):
    make = (lambda root, n: fit_args(root, n)) if stage == "one" else stage_two_fit_args
    run_cli(make(tmp_path / "general", 3))
    source = torch.load(tmp_path / "general/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert source["global_step"] == 3
    # lr 0: the fine-tuned weights stay the source's, so the test sees exactly what was loaded
    run_cli(
        make(tmp_path / "facial", 2)
        + ["--init_from", str(tmp_path / "general/checkpoints/last.ckpt"), "--model.init_args.lr", "0.0"]
    )
    tuned = torch.load(tmp_path / "facial/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert tuned["global_step"] == 2  # counted from zero, not stopped at once
    raw = tuned.get("current_model_state", tuned["state_dict"])
    for k, v in source["state_dict"].items():  # the source's EMA weights (stage two)
        if not k.startswith("recon_loss."):
            assert torch.equal(raw[k], v), k
    if stage == "two":
        assert "current_model_state" in source and any(
            not torch.equal(source["current_model_state"][k], source["state_dict"][k]) for k in source["state_dict"]
        )
        assert tuned["lvmm_extra"]["latent_scale"] == source["lvmm_extra"]["latent_scale"]
    steps = [s["step"] for s in tuned["optimizer_states"][0]["state"].values()]
    assert steps and max(float(s) for s in steps) == 2  # a fresh optimizer: 2 steps, not 5
    assert tuned["lr_schedulers"][0]["last_epoch"] == 2 if tuned["lr_schedulers"] else True


def test_init_from_refuses_weights_of_another_model(tmp_path):
    from lvmm.stages.stage_two import StageTwo
    from tests.helpers.stage2 import tiny_unet

    run_cli(fit_args(tmp_path / "s1", 1))
    with pytest.raises(ValueError, match="do not fit"):
        load_initial_weights(StageTwo(tiny_unet(cond_dim=16)), tmp_path / "s1/checkpoints/last.ckpt")
