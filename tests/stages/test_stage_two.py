"""Stage two's data, LightningModule, training entry point and checkpoints."""

from __future__ import annotations

import sys

import pytest
import torch

from lvmm.checkpoint import load_networks
from lvmm.datasets.latent import LatentDataModule, SyntheticLatentDataModule
from lvmm.diffusion import load_motion_diffusion
from lvmm.stages.stage_two import StageTwo
from tests.helpers import ROOT
from tests.helpers.stage2 import tiny_unet, unet_inputs, write_latent_shards

pytestmark = pytest.mark.usefixtures("one_thread")


def test_latent_shards_reader(tmp_path):
    shards = write_latent_shards(tmp_path)
    dm = LatentDataModule(shards, val_shards=shards[:1], batch_size=3, num_workers=0, num_frames=6, epoch_length=4)
    batches = list(dm.train_dataloader())
    assert len(batches) == 4  # resampled shards, cut at epoch_length batches
    b = batches[0]
    assert b["z0"].shape == (3, 4, 8, 8) and b["z"].shape == (3, 6, 4, 8, 8) and b["z"].dtype == torch.float32
    assert b["img_emb"].shape == b["txt_emb"].shape == (3, 16)
    assert b["first"].shape == (3, 3, 32, 32) and 0 <= b["first"].min() and b["first"].max() <= 1
    assert b["has_txt"].dtype == torch.bool and b["label"].dtype == torch.long and len(b["key"]) == 3
    assert torch.all(b["txt_emb"][~b["has_txt"]] == 0)
    val = list(dm.val_dataloader())
    assert sum(len(v["key"]) for v in val) == 5  # read whole, last batch partial
    keys = {k for v in val for k in v["key"]}
    no_text = {k for v in val for k, h in zip(v["key"], v["has_txt"]) if not h}
    assert no_text == {k for k in keys if int(k[4:]) % 3 == 0}


def _batch(n: int = 4, frames: int = 4):
    dm = SyntheticLatentDataModule(size=8, num_frames=frames, emb_dim=16, train_length=n, val_length=2, batch_size=n)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def test_token_dropout_and_latent_scale():
    batch = _batch()
    module = StageTwo(tiny_unet(randomise=False), num_frames=4, image_dropout=1.0, text_dropout=0.0, uncond_dropout=0.0)
    x0, cond = module.inputs(batch, drop=True)
    assert not cond["token_mask"][:, 0].any() and cond["token_mask"][:, 1].all()
    # latent_scale estimated once from the first batch: the scaled clips have unit std
    assert abs(x0.std().item() - 1) < 1e-4 and module.extra()["latent_scale"] == module.latent_scale


def test_token_statistics_are_set_once_from_the_first_batch():
    batch = _batch(n=8)
    batch["txt_emb"] = batch["txt_emb"] + 5.0  # a large direction every caption shares
    batch["has_txt"][:2] = False
    module = StageTwo(tiny_unet(randomise=False), num_frames=4)
    module.inputs(batch, drop=False)
    unet, present = module.unet, batch["has_txt"]
    unit = lambda e: torch.nn.functional.normalize(e, dim=-1)
    torch.testing.assert_close(unet.token_mean[0], unit(batch["img_emb"]).mean(0))
    torch.testing.assert_close(unet.token_mean[1], unit(batch["txt_emb"][present]).mean(0))  # absent captions left out
    tokens = unet.condition_tokens(torch.stack([unit(batch["img_emb"]), unit(batch["txt_emb"])], 1), None, 8)
    text = tokens[present, 1]
    assert text.mean(0).abs().max() < 0.2 and abs(text.std().item() - 1) < 0.1
    assert module.extra()["token_statistics_set"]
    first = unet.token_mean.clone()
    other = _batch(n=8)
    other["txt_emb"] = other["txt_emb"] - 3.0
    module.inputs(other, drop=False)
    assert torch.equal(unet.token_mean, first)  # estimated once; later batches do not move it

    plain = StageTwo(tiny_unet(randomise=False), num_frames=4, standardize_tokens=False)
    plain.inputs(batch, drop=False)
    assert not plain.unet.token_mean.any() and torch.all(plain.unet.token_scale == 1)


def test_token_whitening_gives_the_first_batch_unit_covariance_in_every_direction():
    """With ``token_whitening`` the slot's statistics are a ZCA matrix: a direction in which the captions
    barely vary (the one that tells them apart) counts as much as the common one."""
    batch = _batch(n=64)
    g = torch.Generator().manual_seed(0)
    spread = torch.tensor([3.0] * 4 + [0.3] * 4 + [0.0] * 8)  # eight directions vary (two scales), eight do not
    batch["txt_emb"] = 5.0 + torch.randn(64, 16, generator=g) * spread  # one large shared direction
    batch["has_txt"][:] = True
    module = StageTwo(tiny_unet(randomise=False, token_whitening=True), num_frames=4)
    module.inputs(batch, drop=False)
    unit = torch.nn.functional.normalize(batch["txt_emb"], dim=-1)
    white = (unit - module.unet.token_mean[1]) @ module.unet.token_whiten[1]  # (N, D)
    values = torch.linalg.eigvalsh(torch.cov(white.T))
    varying = values[values > 0.5]
    # unit variance in every direction the data vary in (the eight, and the radial one normalisation adds)
    assert len(varying) >= 8 and torch.allclose(varying, torch.ones_like(varying), atol=1e-3)
    assert values.max() < 1 + 1e-3  # and no direction amplified past it
    plain = StageTwo(tiny_unet(randomise=False), num_frames=4)
    plain.inputs(batch, drop=False)
    scaled = (unit - plain.unet.token_mean[1]) / plain.unet.token_scale[1]
    weak = torch.linalg.eigvalsh(torch.cov(scaled.T))
    assert weak[weak > 1e-6].min() < 0.02 * weak.max()  # one scale leaves the weak directions weak
    with pytest.raises(ValueError, match="expected"):
        module.unet.set_token_statistics(module.unet.token_mean, torch.ones(2))


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_overfitting_a_fixed_batch_lowers_the_loss():
    torch.manual_seed(0)
    batch = _batch()
    module = StageTwo(tiny_unet(randomise=False), num_frames=4, image_dropout=0.0, text_dropout=0.0)
    opt = torch.optim.AdamW(module.unet.parameters(), lr=3e-3)
    x0, cond = module.inputs(batch, drop=False)
    gen = torch.Generator().manual_seed(1)
    probe_noise, probe_t = torch.randn(x0.shape, generator=gen), torch.linspace(100, 900, x0.shape[0]).long()

    def probe() -> float:
        with torch.no_grad():
            return module.diffusion.training_loss(
                lambda x, t: module.unet(x, t, **cond), x0, probe_noise, probe_t
            ).item()

    before = probe()
    module.unet.train()
    for _ in range(60):  # residual latents (z_k - z_0 at unit std) take a little longer than plain z_k
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.unet.eval()
    after = probe()
    assert after < 0.6 * before, (after, before)


def test_fit_through_cli_and_checkpoint_rebuilds_unet(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    from lvmm.cli.train import main

    out = tmp_path / "run"
    cli = main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/stage2/tiny.yaml"),
            "--trainer.max_steps",
            "3",
            "--trainer.limit_val_batches",
            "0",
            "--trainer.default_root_dir",
            str(out),
            "--trainer.logger.init_args.save_dir",
            str(out),
            "--trainer.enable_progress_bar",
            "false",
            "--data.init_args.train_length",
            "32",
            "--data.init_args.batch_size",
            "4",
            "--model.init_args.media_steps",
            "2",
            "--trainer.callbacks.init_args.every_n_steps",
            "2",
        ]
    )
    ckpts = sorted(out.rglob("last.ckpt"))
    assert ckpts, "no checkpoint written"
    media = sorted(out.rglob("*.mp4"))
    assert media, "no media logged"
    raw = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    extra = raw["lvmm_extra"]
    assert extra["latent_scale"] > 0 and extra["num_frames"] == 8 and extra["diffusion"]["num_train_timesteps"] == 1000
    assert extra["token_statistics_set"] and raw["state_dict"]["unet.token_mean"].abs().sum() > 0

    unet = load_networks(ckpts[0], ["unet"])["unet"]
    unet2, config, extra2 = load_motion_diffusion(ckpts[0])
    assert config.prediction_type == "v_prediction" and extra2 == extra
    inp = unet_inputs(cond_dim=1024)
    state = {k[len("unet.") :]: v for k, v in raw["state_dict"].items() if k.startswith("unet.")}
    reference = cli.model.unet.eval()
    reference.load_state_dict(state)  # the checkpoint holds the EMA weights
    with torch.no_grad():
        expected = reference(**inp)
        torch.testing.assert_close(unet(**inp), expected, rtol=0, atol=0)
        torch.testing.assert_close(unet2(**inp), expected, rtol=0, atol=0)


def test_latent_shards_carry_audio_embeddings(tmp_path):
    shards = write_latent_shards(tmp_path, audio=True)
    dm = LatentDataModule(shards, val_shards=shards, batch_size=10, num_workers=0, epoch_length=1)
    (val,) = list(dm.val_dataloader())
    assert val["aud_emb"].shape == (10, 16) and val["has_aud"].dtype == torch.bool
    assert [int(k[4:]) % 2 == 0 for k in val["key"]] == val["has_aud"].tolist()
    assert torch.all(val["aud_emb"][~val["has_aud"]] == 0) and torch.all(val["aud_emb"][val["has_aud"]] != 0)
    (tmp_path / "p").mkdir()
    old = write_latent_shards(tmp_path / "p")
    (plain,) = list(LatentDataModule(old, val_shards=old, batch_size=10, num_workers=0).val_dataloader())
    assert not plain["has_aud"].any() and not plain["aud_emb"].any()  # shards without audio: zeros, False


def test_audio_probability_one_trains_on_the_audio_token_centred_on_its_own_mean():
    """With ``audio_probability`` 1 every clip with audio conditions on it in the text slot, standardised as
    (audio - audio mean) / text-slot scale, brought to length sqrt(D): what the Animator's shift gives at sampling."""
    dm = SyntheticLatentDataModule(
        size=8, num_frames=4, emb_dim=16, train_length=12, val_length=2, batch_size=12, audio=True
    )
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["has_aud"].all() and batch["aud_emb"].shape == (12, 16)
    kw = dict(num_frames=4, image_dropout=0.0, text_dropout=0.0, uncond_dropout=0.0)
    module = StageTwo(tiny_unet(randomise=False), audio_probability=1.0, **kw)
    x0, cond = module.inputs(batch, drop=True)
    unit = lambda e: torch.nn.functional.normalize(e, dim=-1)
    unet = module.unet
    torch.testing.assert_close(module.audio_token_mean, unit(batch["aud_emb"]).mean(0))
    torch.testing.assert_close(unet.token_mean[1], unit(batch["txt_emb"]).mean(0))  # the captions' statistics
    got = unet.condition_tokens(cond["tokens"], cond["token_mask"], 12)[:, 1]
    want = (unit(batch["aud_emb"]) - module.audio_token_mean) / unet.token_scale[1]
    want = want * 16**0.5 / want.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, unet.condition_tokens(torch.stack([unit(batch["img_emb"])] * 2, 1), None, 12)[:, 1])
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    assert module.extra()["audio_token_mean"] == module.audio_token_mean.tolist()

    text_only = StageTwo(tiny_unet(randomise=False), audio_probability=0.0, **kw)
    _, cond = text_only.inputs(batch, drop=True)
    torch.testing.assert_close(cond["tokens"][:, 1], unit(batch["txt_emb"]))
    _, cond = module.inputs(batch, drop=False)  # validation keeps the captions
    torch.testing.assert_close(cond["tokens"][:, 1], unit(batch["txt_emb"]))
