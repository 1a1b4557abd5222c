"""Classifier-free training matches sampling: the fully unconditional case is trained with its own probability."""

import pytest
import torch

from lvmm.stages.stage_two import StageTwo
from tests.helpers.stage2 import tiny_unet


def _batch(b: int = 4000, dim: int = 16) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "z": torch.randn(b, 2, 4, 8, 8, generator=g),
        "z0": torch.randn(b, 4, 8, 8, generator=g),
        "img_emb": torch.randn(b, dim, generator=g),
        "txt_emb": torch.randn(b, dim, generator=g),
        "has_txt": torch.ones(b, dtype=torch.bool),
    }


@pytest.mark.parametrize("image, text, uncond", [(0.1, 0.1, 0.1), (0.0, 0.0, 0.1), (0.1, 0.1, 0.0), (0.0, 0.0, 1.0)])
def test_fully_unconditional_fraction(image, text, uncond):
    module = StageTwo(
        tiny_unet(cond_dim=16),
        num_frames=2,
        image_dropout=image,
        text_dropout=text,
        uncond_dropout=uncond,
        latent_scale=1.0,
    )
    torch.manual_seed(1)
    _, cond = module.inputs(_batch(), drop=True)
    mask = cond["token_mask"]  # (B, 2) kept tokens
    none = (~mask).all(1).float().mean().item()
    expected = uncond + (1 - uncond) * image * text  # both dropped: together, or each by chance
    assert none == pytest.approx(expected, abs=0.015)
    only_img = (~mask[:, 0] & mask[:, 1]).float().mean().item()
    assert only_img == pytest.approx((1 - uncond) * image * (1 - text), abs=0.015)
    _, clean = module.inputs(_batch(), drop=False)  # validation and sampling never drop
    assert clean["token_mask"].all()


def test_default_unconditional_probability_is_a_tenth():
    assert StageTwo(tiny_unet(cond_dim=16)).hparams.uncond_dropout == 0.1


def test_a_missing_stage_one_checkpoint_fails_at_setup_not_at_the_first_media_step(tmp_path):
    module = StageTwo(tiny_unet(cond_dim=16), motion_checkpoint=str(tmp_path / "missing.ckpt"))
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        module.setup("fit")
