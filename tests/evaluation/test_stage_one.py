"""evaluate_stage_one on a stand-in model whose fields are known: every row and baseline of the table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lvmm.evaluation.frame_metrics import PSNR_MAX_DB
from lvmm.evaluation.stage_one import ROWS, evaluate_stage_one, format_table, procedural_batches
from lvmm.warp import warp


class KnownFieldModel(nn.Module):
    """Predicts the true field it is handed (an oracle P); its VAE decodes every latent to the zero field."""

    def __init__(self):
        super().__init__()
        self.flow = None
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so that .to() and .device behave

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def predict_field(self, img0, imgk):
        return self.flow

    def encode_field(self, field):
        return torch.zeros(len(field), 1, 1, 1)

    def decode(self, z):
        return torch.zeros(len(z), 2, *self.flow.shape[-2:])

    def renderer(self, img0, field):
        return warp(img0, field)


def batches_for(model: KnownFieldModel, clips: int = 4):
    """Procedural pairs, telling the stand-in model each batch's true field as it is read."""
    for batch in procedural_batches(clips, 32, 32, num_frames=3, seed=1, batch_clips=2):
        model.flow = batch["flow"]
        yield batch


def test_rows_baselines_and_headlines_on_a_model_with_known_fields():
    model = KnownFieldModel()
    result = evaluate_stage_one(model, batches_for(model), "cpu")
    assert result["pairs"] == 4 * 2  # every frame k >= 1 with frame 0
    assert list(result["frames"]) == list(ROWS)
    frames = result["frames"]
    # the oracle field renders exactly what warping by the true field renders
    assert frames["predicted"]["psnr"] == pytest.approx(frames["true_warp"]["psnr"], abs=1e-4)
    # a zero field renders I_0 unchanged: the decoded row is the copy baseline
    assert frames["decoded"]["psnr_dataset"] == pytest.approx(frames["copy"]["psnr_dataset"], abs=1e-4)
    assert result["psnr_gain_over_copy_db"] > 0 and result["vae_psnr_loss_db"] > 0
    assert result["psnr"]["predicted"] == frames["predicted"]["psnr_dataset"]
    assert result["epe_px"]["predicted"] == pytest.approx(0.0, abs=1e-6)
    assert (
        result["epe_px"]["zero"] == pytest.approx(result["epe_px"]["decoded"], abs=1e-6)
        and result["epe_px"]["zero"] > 0
    )
    for row in frames.values():
        assert row["psnr"] <= PSNR_MAX_DB and 0 < row["ssim"] <= 1 and row["l1"] >= 0
    table = format_table(result)
    assert "P field" in table and "copy I_0" in table and "end-point error" in table


def test_max_batches_and_an_empty_source():
    model = KnownFieldModel()
    assert evaluate_stage_one(model, batches_for(model, clips=6), "cpu", max_batches=1)["pairs"] == 2 * 2
    with pytest.raises(ValueError, match="no pairs"):
        evaluate_stage_one(model, iter([]), "cpu")
