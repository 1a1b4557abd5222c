"""Stage one's networks, losses and inference bundle at the tiny size (fast, no training)."""

from __future__ import annotations

import pytest
import torch

from lvmm.checkpoint import build
from lvmm.losses import (
    RandomTransform,
    ReconstructionLoss,
    VGG19Features,
    equivariance_loss,
    field_reconstruction_loss,
    photometric_loss,
)
from lvmm.nets.region_predictor import BackgroundMotionPredictor, heatmap_moments, region_motions, sqrtm_2x2
from lvmm.warp import pixels_to_normalised, warp
from tests.helpers.stage1 import random_pair, tiny_motion_model, tiny_networks


def test_flow_predictor_shapes_gradients_and_start():
    flow = tiny_networks()["flow"]
    img0, imgk = random_pair()
    out = flow(img0, imgk)
    assert out.field.shape == (2, 3, 16, 16) and len(out.passes) == 3
    assert out.regions0.heatmap.shape == (2, 4, 16, 16) and out.regions0.affine.shape == (2, 4, 2, 2)
    # starts near the warp baseline: w near 1, and a zero field for identical frames
    assert out.field[:, 2].min() > 0.95
    assert flow(img0, img0).field[:, :2].abs().max() < 1e-2
    out.field.square().sum().backward()
    grads = [p.grad for p in flow.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_motion_vae_shapes_and_gradients():
    vae = tiny_networks()["vae"]
    field = torch.cat([0.05 * torch.randn(2, 2, 16, 16), torch.rand(2, 1, 16, 16)], 1).requires_grad_()
    recon, posterior = vae(field)
    assert recon.shape == field.shape and posterior.mode().shape == (2, 4, 8, 8)
    assert 0 <= recon[:, 2].min() and recon[:, 2].max() <= 1
    l1, grad = field_reconstruction_loss(recon, field, vae.displacement_scale)
    (l1 + grad + 1e-6 * posterior.kl().mean()).backward()
    assert field.grad is not None and all(p.grad is not None for p in vae.parameters())


def test_renderer_shapes_gradients_and_identity():
    renderer = tiny_networks()["renderer"]
    img0, _ = random_pair()
    pyramid = renderer.encode(img0)
    assert [f.shape[-1] for f in pyramid] == [64, 32, 16]
    identity = torch.cat([torch.zeros(2, 2, 16, 16), torch.ones(2, 1, 16, 16)], 1)
    # a zero field and w = 1 give back I_0 (the blend is the warp) and the features unchanged
    assert torch.allclose(renderer(img0, identity), img0, atol=1e-5)
    for f in pyramid:
        assert torch.allclose(warp(f, identity[:, :2]), f, atol=1e-5)
    field = torch.cat([0.05 * torch.randn(2, 2, 16, 16), 0.5 * torch.ones(2, 1, 16, 16)], 1).requires_grad_()
    out = renderer(img0, field)
    assert out.shape == img0.shape
    out.mean().backward()
    assert field.grad.abs().sum() > 0 and all(p.grad is not None for p in renderer.parameters())


def test_render_clip_chunks_match_one_pass():
    renderer = tiny_networks()["renderer"].eval()
    img0, _ = random_pair()
    fields = torch.cat([0.05 * torch.randn(2, 5, 2, 16, 16), torch.rand(2, 5, 1, 16, 16)], 2)
    whole = renderer.render_clip(img0, fields, chunk_size=5)
    assert whole.shape == (2, 5, 3, 64, 64)
    assert torch.allclose(renderer.render_clip(img0, fields, chunk_size=2), whole, atol=1e-5)
    assert torch.allclose(whole[:, 3], renderer(img0, fields[:, 3]), atol=1e-5)


def test_equivariance_loss_zero_for_identity_and_positive_otherwise():
    regions = tiny_networks()["flow"].regions
    img0, _ = random_pair()
    assert equivariance_loss(regions, img0, RandomTransform(2, 0.0, 0.0)).item() < 1e-5
    assert (
        equivariance_loss(
            regions, img0, RandomTransform(2, 0.1, 0.01, generator=torch.Generator().manual_seed(0))
        ).item()
        > 1e-3
    )


def test_region_moments_and_motions():
    m = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    assert torch.allclose(sqrtm_2x2(m) @ sqrtm_2x2(m), m, atol=1e-5)
    heat = torch.softmax(torch.randn(2, 3, 8 * 8), -1).view(2, 3, 8, 8)
    r = heatmap_moments(heat)
    # the same regions in both frames and a still background: no motion
    still = region_motions(r, r, torch.eye(2, 3).expand(2, 2, 3), (8, 8))
    assert still.shape == (2, 4, 2, 8, 8) and still.abs().max() < 1e-5
    bg = BackgroundMotionPredictor(width=4)
    assert torch.allclose(bg(*random_pair()), torch.eye(2, 3).expand(2, 2, 3))


def test_photometric_loss_prefers_the_true_field():
    img0, _ = random_pair(1)
    d = pixels_to_normalised(torch.full((1, 2, 64, 64), 1.5), 64, 64)
    imgk = warp(img0, d)
    assert photometric_loss(img0, imgk, d) < 0.5 * photometric_loss(img0, imgk, torch.zeros_like(d))


def test_reconstruction_loss_with_vgg_weights_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in VGG19Features().state_dict().items()}, path)
    loss = ReconstructionLoss(str(path), scales=(1,))
    a, b = random_pair(1, size=32)
    assert loss(a, a).item() == pytest.approx(0.0, abs=1e-6) and loss(a, b).item() > 0
    torch.save({"0.weight": torch.zeros(1)}, path)
    with pytest.raises(Exception, match="state dict does not match"):
        ReconstructionLoss(str(path))
    fallback = ReconstructionLoss(None)
    assert fallback(a, a).item() == pytest.approx(0.0, abs=1e-5) and fallback(a, b).item() > 0


def test_networks_rebuild_from_their_configs():
    for net in tiny_networks().values():
        clone = build(net.config)
        clone.load_state_dict(net.state_dict())
        assert type(clone) is type(net)


def test_motion_model_api():
    model = tiny_motion_model()
    img0, imgk = random_pair()
    frames = torch.stack([img0, imgk, img0], 1)  # (B, T, 3, H, W)
    assert model.field_downsample == 4 and model.latent_downsample == 8 and model.latent_channels == 4
    field = model.predict_field(img0, imgk)
    assert field.shape == (2, 3, 16, 16)
    z = model.encode_field(field)
    assert z.shape == (2, 4, 8, 8) and torch.equal(z, model.encode_field(field))  # the mode by default
    g = torch.Generator().manual_seed(0)
    assert model.encode_field(field, sample=True, generator=g).shape == z.shape
    zc = model.encode_clip(frames)
    assert zc.shape == (2, 3, 4, 8, 8)
    assert torch.allclose(zc[:, 0], model.encode_field(model.predict_field(img0, img0)), atol=1e-5)
    zc = zc.detach().requires_grad_()
    decoded = model.decode(zc)  # extra leading dims
    assert decoded.shape == (2, 3, 3, 16, 16)
    decoded[..., :2, :, :].abs().mean().backward()  # differentiable for guidance
    assert zc.grad is not None and zc.grad.abs().sum() > 0
    video = model.render(img0, decoded.detach(), chunk_size=2)
    assert video.shape == (2, 3, 3, 64, 64)
    assert model.appearance(img0).shape == (2, model.appearance_channels, 8, 8)


def test_schedules_switch_what_trains():
    from lvmm.stages.stage_one import StageOne, pairs_from_clips

    frames = torch.rand(1, 3, 3, 64, 64)
    batch = pairs_from_clips(
        {"frames": frames, "flows": torch.zeros(1, 3, 2, 64, 64), "has_flow": torch.tensor([True])}, 2
    )
    assert batch["img0"].shape == (2, 3, 64, 64) and torch.equal(batch["img0"][0], frames[0, 0])
    for schedule, step, flow_trains, vae_trains in [
        ("sequential", 0, True, False),
        ("sequential", 5, False, True),
        ("joint", 0, True, False),
        ("joint", 5, True, True),
    ]:
        module = StageOne(**tiny_networks(), schedule=schedule, vae_start_step=5, vae_warmup_steps=2)
        loss, logs = module.compute_losses(batch, step)
        loss.backward()
        assert (module.flow.first.head.weight.grad is not None) == flow_trains, (schedule, step)
        assert (module.vae.decoder[-1].weight.grad is not None) == vae_trains, (schedule, step)
        assert module.renderer.out[-1].weight.grad is not None and "epe_px" in logs


def test_lucas_kanade_teacher_follows_the_flow_convention():
    from lvmm.losses import lucas_kanade_teacher, teacher_loss

    img0 = torch.nn.functional.interpolate(
        torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)),
        size=(64, 64),
        mode="bicubic",
        align_corners=False,
    ).clamp(0, 1)
    d = pixels_to_normalised(torch.tensor([1.0, -0.5]).view(1, 2, 1, 1).expand(1, 2, 64, 64), 64, 64)
    imgk = warp(img0, d)
    teacher = lucas_kanade_teacher(img0, imgk)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert teacher_loss(teacher[inner], d[inner]) < 0.25 < teacher_loss(-teacher[inner], d[inner])
