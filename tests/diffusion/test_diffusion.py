"""The stage-two U-Net's conditioning, the schedules, the samplers and the guidance terms."""

from __future__ import annotations

import pytest
import torch

from lvmm.diffusion.guidance import ClassifierFreeGuidance, LoopGuidance, StepSchedule
from lvmm.diffusion.sampling import GuidedDenoiser, generators_for, run_sampler, sample, sample_motion
from lvmm.diffusion.schedules import Diffusion, DiffusionConfig, make_scheduler
from tests.helpers.stage2 import GaussianDenoiser, tiny_unet, unet_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

# ----- the network ---------------------------------------------------------------------------------------


def test_unet_shape_and_free_number_of_frames():
    net = tiny_unet()
    for frames in (1, 3, 8):
        inp = unet_inputs(frames=frames)
        assert net(**inp).shape == inp["x"].shape
    with pytest.raises(ValueError, match="at most 8"):
        net(**unet_inputs(frames=9))


def test_unet_text_token_changes_output():
    net, inp = tiny_unet(), unet_inputs()
    other = dict(inp, tokens=inp["tokens"].clone())
    other["tokens"][:, 1] = torch.randn(2, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert not torch.allclose(net(**inp), net(**other), atol=1e-4)


def test_unet_dropped_condition_uses_null_token():
    net, inp = tiny_unet(), unet_inputs()
    mask = torch.tensor([[True, False], [False, False]])
    other = inp["tokens"].clone()  # different values where the mask drops the token
    other[0, 1] = torch.randn_like(other[0, 1])
    other[1] = torch.randn_like(other[1])
    with torch.no_grad():
        seen = net.condition_tokens(inp["tokens"], mask, 2)
        dropped = net(**dict(inp, token_mask=mask))
        dropped_other = net(**dict(inp, tokens=other, token_mask=mask))
        absent = net(**dict(inp, tokens=None, token_mask=None))
        none_kept = net(**dict(inp, token_mask=torch.zeros_like(mask)))
    null = net.null_tokens[None].expand(2, -1, -1)
    assert torch.equal(seen[~mask], null[~mask]) and not torch.equal(seen[mask], null[mask])
    torch.testing.assert_close(dropped, dropped_other)  # a dropped token's value is never seen
    torch.testing.assert_close(absent, none_kept)


def test_unet_appearance_path_and_checkpointing_gradients():
    net = tiny_unet(appearance_channels=3, gradient_checkpointing=True).train()
    inp = unet_inputs()
    out = net(**inp, appearance=torch.randn(2, 3, 8, 8))
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="appearance"):
        net(**inp)


# ----- schedules and samplers on an analytic case ------------------------------------------------------


@pytest.mark.parametrize(
    "sampler,steps,schedule,kind",
    [
        ("ddpm", 1000, "squaredcos_cap_v2", "epsilon"),
        ("ddim", 50, "squaredcos_cap_v2", "v_prediction"),
        ("ddim", 50, "linear", "sample"),
        ("dpmsolver++", 20, "squaredcos_cap_v2", "v_prediction"),
        ("dpmsolver++", 20, "linear", "epsilon"),
    ],
)
def test_sampler_matches_gaussian_data(sampler, steps, schedule, kind):
    """Exact denoiser of N(m, s^2) data plugged into each sampler: samples have mean m and std s.

    s = 1 is the regime of scaled latents. (With s = 0.3, uniformly spaced DDIM-50 steps shrink the std
    by 9 % on the linear schedule, a discretisation error near t = 0 that vanishes with more steps.)
    """
    config = DiffusionConfig(beta_schedule=schedule, prediction_type=kind)
    m, s = 0.5, 1.0
    x = sample(GaussianDenoiser(config, m, s), config, (1, 8, 32, 32), {}, seeds=[0, 1], sampler=sampler, steps=steps)
    n = x.numel()  # 16384 independent elements: the mean's standard error is s / 128
    assert abs(x.mean().item() - m) < 5 * s / n**0.5 + 0.01
    assert abs(x.std().item() - s) / s < 0.05


def test_ddim_eta_zero_is_deterministic():
    config = DiffusionConfig(prediction_type="epsilon")
    model = GaussianDenoiser(config, 0.0, 0.5)
    x_T = torch.randn(2, 1, 2, 4, 4)
    denoise = GuidedDenoiser(model, config, {})
    runs = [
        run_sampler(denoise, make_scheduler(config, "ddim"), x_T.clone(), generators_for(seeds), steps=10, eta=0.0)
        for seeds in ([0, 1], [5, 6])
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    noisy = run_sampler(denoise, make_scheduler(config, "ddim"), x_T.clone(), generators_for([0, 1]), steps=10, eta=1.0)
    assert not torch.allclose(noisy, runs[0])


def test_prediction_type_conversions_are_consistent():
    x0, noise, t = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4), torch.tensor([0, 500, 999])
    for kind in ("epsilon", "v_prediction", "sample"):
        d = Diffusion(DiffusionConfig(prediction_type=kind))
        x_t = d.add_noise(x0, noise, t)
        eps, x0_hat = d.to_eps_x0(d.target(x0, noise, t), x_t, t)
        torch.testing.assert_close(
            eps[:2], noise[:2], atol=1e-4, rtol=1e-4
        )  # x0 -> eps is ill-posed at t = 999 for x0-prediction
        torch.testing.assert_close(x0_hat[:2], x0[:2], atol=1e-3, rtol=1e-3)


def test_min_snr_weights():
    t = torch.tensor([0, 999])
    for kind in ("epsilon", "v_prediction", "sample"):
        w = Diffusion(DiffusionConfig(prediction_type=kind), min_snr_gamma=5.0).loss_weight(t)
        assert torch.all(w >= 0) and torch.all(w <= 5.0)
    w_eps = Diffusion(DiffusionConfig(prediction_type="epsilon"), min_snr_gamma=5.0).loss_weight(t)
    assert w_eps[0] < 1e-3 and abs(w_eps[1] - 1) < 1e-6  # clean steps damped; the noisiest ones kept at 1


# ----- guidance ------------------------------------------------------------------------------------------


def test_cfg_arithmetic_and_batched_passes():
    cfg = ClassifierFreeGuidance(2.0)
    c, u = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(cfg.combine(c, u, 0, 10), 3 * c - 2 * u)

    def model(x, t, flag):  # eps = flag: 1 for the conditional pass, 0 for the unconditional one
        return flag.view(-1, 1, 1, 1, 1).expand_as(x).float()

    config = DiffusionConfig(prediction_type="epsilon")
    x, t = torch.randn(2, 1, 2, 4, 4), torch.tensor([10, 10])
    den = GuidedDenoiser(model, config, {"flag": torch.ones(2)}, {"flag": torch.zeros(2)}, [cfg])
    torch.testing.assert_close(den(x, t, 0, 10), torch.full_like(x, 3.0))
    late = GuidedDenoiser(
        model,
        config,
        {"flag": torch.ones(2)},
        {"flag": torch.zeros(2)},
        [ClassifierFreeGuidance(2.0, StepSchedule(stop=0.5))],
    )
    torch.testing.assert_close(late(x, t, 7, 10), torch.ones_like(x))  # switched off in the second half


def test_step_schedule():
    assert [StepSchedule(stop=0.5)(i, 4) for i in range(4)] == [1, 1, 0, 0]
    assert [StepSchedule(ramp="increase")(i, 4) for i in range(4)] == [0, 0.25, 0.5, 0.75]
    assert StepSchedule(start=0.5, ramp="decrease")(2, 4) == 1.0


def _decoder():
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)

    def decode(z):  # (B, T, 4, h, w) -> (B, T, 3, 2h, 2w): any differentiable decoder will do
        b = z.shape[0]
        up = torch.nn.functional.interpolate(conv(z.flatten(0, 1)), scale_factor=2.0, mode="bilinear")
        return up.unflatten(0, (b, -1))

    return decode


@pytest.mark.parametrize("use_decoder", [False, True])
def test_loop_guidance_reduces_loss(use_decoder):
    config = DiffusionConfig(prediction_type="v_prediction")
    net, inp = tiny_unet(), unet_inputs(frames=6)
    cond = {"z0": inp["z0"], "tokens": inp["tokens"], "token_mask": inp["token_mask"]}
    loop = LoopGuidance(weight=5.0, decode=_decoder() if use_decoder else None, velocity_weight=0.5)
    x, t = inp["x"], torch.tensor([500, 500])
    plain = GuidedDenoiser(net, config, cond)(x, t, 0, 10)
    guided = GuidedDenoiser(net, config, cond, guidance=[loop])(x, t, 0, 10)
    d = Diffusion(config)
    with torch.no_grad():
        before, after = loop.loss(d.eps_to_x0(plain, x, t)), loop.loss(d.eps_to_x0(guided, x, t))
    assert torch.all(after < before)


def test_loop_guidance_is_zero_on_a_looping_clip():
    clip = torch.randint(-8, 8, (2, 4, 5, 8, 8)).float()  # integers: the differences below are exact
    clip[:, :, -1] = clip[:, :, 0]
    clip[:, :, -2] = 2 * clip[:, :, 0] - clip[:, :, 1]  # and matching velocities: z_K - z_{K-1} = z_2 - z_1
    loop = LoopGuidance(weight=1.0, velocity_weight=1.0)
    assert torch.all(loop.loss(clip) == 0)
    # An oracle that predicts this clip as x0 gets no push from the guidance.
    config = DiffusionConfig(prediction_type="sample")
    model = lambda x, t: clip.clone()
    x, t = torch.randn_like(clip), torch.tensor([300, 300])
    torch.testing.assert_close(
        GuidedDenoiser(model, config, {}, guidance=[loop])(x, t, 0, 10), GuidedDenoiser(model, config, {})(x, t, 0, 10)
    )


def _path(steps: list[float]) -> torch.Tensor:
    """A clip (1, 1, K, 2, 2) in latent layout whose frames sit at the cumulative sums of ``steps``."""
    pos = torch.tensor([0.0, *steps]).cumsum(0)  # (K,)
    return pos.view(1, 1, -1, 1, 1).expand(1, 1, -1, 2, 2).clone()


def test_loop_rush_term_penalises_a_jump_back_and_a_hold_and_ignores_scale():
    rush = LoopGuidance(weight=1.0, rush_weight=1.0)
    pull = LoopGuidance(weight=1.0)
    rush_term = lambda clip: rush.loss(clip) - pull.loss(clip)
    # Clips that end where they started: one turns back smoothly, one drifts and jumps back, one
    # returns early and holds (the last step is nearly still).
    smooth, jump = _path([1.0, 1.0, -1.0, -1.0]), _path([0.5, 0.5, 0.5, -1.5])
    hold = _path([1.0, -0.5, -0.25, -0.25])
    assert pull.loss(smooth) == pull.loss(jump) == pull.loss(hold) == 0  # the pull cannot tell them apart
    torch.testing.assert_close(rush_term(smooth), torch.tensor([0.0]), atol=1e-5, rtol=0)  # steps all equal
    torch.testing.assert_close(rush_term(jump), torch.tensor([1.0]), atol=1e-5, rtol=0)  # |1.5 / 0.75 - 1|
    torch.testing.assert_close(rush_term(hold), torch.tensor([0.5]), atol=1e-5, rtol=0)  # |0.25 / 0.5 - 1|
    # Scale-free: shrinking the whole motion does not lower it (the velocity term's weakness).
    for scale in (0.1, 3.0):
        torch.testing.assert_close(rush_term(scale * jump), rush_term(jump), atol=1e-4, rtol=1e-4)
    x = jump.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(rush_term(x).sum(), x)
    assert abs(float((grad * x).sum())) < 1e-4  # no component along a uniform scaling
    assert torch.isfinite(rush_term(torch.zeros_like(jump))).all()  # a still clip stays finite


# ----- one generator per seed ----------------------------------------------------------------------------


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 1.0)])
def test_seed_result_does_not_depend_on_batch(sampler, eta):
    net, config = tiny_unet(), DiffusionConfig()
    inp = unet_inputs(batch=3, frames=4)
    kw = dict(num_frames=4, sampler=sampler, steps=8, eta=eta, guidance_scale=1.5, latent_scale=2.0)
    together = sample_motion(net, config, inp["z0"], inp["tokens"][:, 0], inp["tokens"][:, 1], seeds=[0, 1, 2], **kw)
    alone = sample_motion(net, config, inp["z0"][1:2], inp["tokens"][1:2, 0], inp["tokens"][1:2, 1], seeds=[1], **kw)
    torch.testing.assert_close(together[1:2], alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(together[0], together[1], atol=1e-2)
