"""Stage one through the Lightning CLI: fit from the tiny YAML, checkpoints, resume, reload, evaluation."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests.helpers.stage1 import fit_args, random_pair, run_cli

os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Two fit steps of the tiny YAML through tools/train.py; returns (root, last checkpoint, cli)."""
    root = tmp_path_factory.mktemp("stage1")
    cli = run_cli(fit_args(root, max_steps=2))
    ckpts = sorted(root.rglob("last.ckpt"))
    assert ckpts, f"no last.ckpt under {root}"
    return root, ckpts[0], cli


def test_fit_writes_a_safe_checkpoint_with_network_configs(fitted):
    _, ckpt_path, cli = fitted
    assert cli.trainer.global_step == 2
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # no pickled objects
    assert set(ckpt["lvmm_networks"]) == {"flow", "vae", "renderer"}
    assert ckpt["lvmm_networks"]["flow"]["class_path"] == "lvmm.nets.flow_predictor.FlowPredictor"
    assert all(k.split(".")[0] in {"flow", "vae", "renderer"} for k in ckpt["state_dict"])
    assert ckpt["global_step"] == 2


def test_checkpoint_reloads_with_identical_outputs(fitted):
    from lvmm.motion import MotionModel

    _, ckpt_path, cli = fitted
    module = cli.model.eval()
    model = MotionModel.from_checkpoint(ckpt_path)
    img0, imgk = random_pair()
    with torch.no_grad():
        field = model.predict_field(img0, imgk)
        assert torch.equal(field, module.flow(img0, imgk).field)
        z = model.encode_field(field)
        assert torch.equal(model.decode(z), module.vae.decode(module.vae.encode(field).mode()))
        assert torch.equal(model.render(img0, field[:, None])[:, 0], module.renderer(img0, field))


def test_resume_continues_the_step_count(fitted, tmp_path):
    _, ckpt_path, _ = fitted
    cli = run_cli(fit_args(tmp_path, max_steps=3, ckpt_path=ckpt_path))
    assert cli.trainer.global_step == 3
    resumed = sorted(tmp_path.rglob("last.ckpt"))[0]
    assert torch.load(resumed, map_location="cpu", weights_only=True)["global_step"] == 3


def test_media_panel(fitted):
    from lvmm.datasets.procedural import ProceduralDataModule

    _, _, cli = fitted
    batch = next(iter(ProceduralDataModule(mode="clips", batch_size=1, train_length=1).train_dataloader()))
    panel = cli.model.log_media(batch)["stage1"]
    n = min(2, cli.model.hparams.pairs_per_clip)  # rows: n pairs from the predicted field, n from the decoded one
    assert panel.dtype == np.uint8 and panel.shape == (2 * n * 64, 5 * 64, 3)


def test_eval_tool_reports_baselines(fitted, tmp_path):
    import json

    from lvmm.cli.eval_stage1 import main

    _, ckpt_path, _ = fitted
    out = tmp_path / "eval.json"
    result = main(["--ckpt", str(ckpt_path), "--procedural", "1", "--num-frames", "3", "--out", str(out)])
    assert result["pairs"] == 2 and set(result["frames"]) == {"predicted", "decoded", "copy", "true_warp"}
    assert result["epe_px"]["zero"] > 0 and json.loads(out.read_text())["pairs"] == 2
    # the untrained model starts at the warp baseline: within a few dB of copying I_0
    assert abs(result["frames"]["predicted"]["psnr"] - result["frames"]["copy"]["psnr"]) < 3
