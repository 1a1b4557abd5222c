"""Motion controls on the field (lvmm.controls): strength, motion amount, region brush, drags, long clips."""

import json

import numpy as np
import pytest
import torch

from lvmm import controls
from lvmm.animation import AnimationError, AnimationOptions, Animator
from lvmm.checkpoint import load_networks, save_networks
from lvmm.diffusion import DiffusionConfig, DragGuidance, MaskGuidance, StepSchedule
from lvmm.diffusion.sampling import sample
from lvmm.media import to_float, write_image
from lvmm.rendering import render_photo
from tests.helpers.pipeline import TINY_IMAGEBIND_DIM, stage_one_checkpoint
from tests.helpers.stage1 import tiny_motion_model
from tests.helpers.stage2 import GaussianDenoiser, tiny_unet, unet_inputs

H, W = 64, 96  # photo size of the animation tests (field grid 16 x 24)


def _photo(h=H, w=W, seed=0):
    """Smooth shapes plus fine texture, so that patches can be told apart."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(9 * x + 3 * c) * np.cos(7 * y - c) for c in range(3)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def _stage_two(path, stage_one, **unet_kw):
    from lvmm.stages.stage_two import StageTwo

    randomise = unet_kw.pop("randomise", True)
    unet = tiny_unet(0, randomise=randomise, cond_dim=TINY_IMAGEBIND_DIM, **unet_kw)
    module = StageTwo(unet, num_frames=4, latent_scale=1.0, motion_checkpoint=str(stage_one))
    return save_networks(path, {"unet": unet}, extra=module.extra())


@pytest.fixture(scope="module")
def animators(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    s1 = stage_one_checkpoint(root / "stage1.safetensors")
    plain = Animator.from_checkpoints(_stage_two(root / "plain.safetensors", s1), device="cpu")
    amount = Animator.from_checkpoints(
        _stage_two(root / "amount.safetensors", s1, amplitude_condition=True), device="cpu"
    )
    zero = Animator.from_checkpoints(_stage_two(root / "zero.safetensors", s1, randomise=False), device="cpu")
    return {
        "plain": plain,
        "amount": amount,
        "zero": zero,
        "root": root,
        "stage1": s1,
        "plain_path": root / "plain.safetensors",
    }


def _patch(img, x, y, r=3):
    x, y = int(round(x)), int(round(y))
    return img[y - r : y + r + 1, x - r : x + r + 1].astype(float)


# --- 1. strength and motion amount ----------------------------------------------------------------


def test_motion_scale_zero_is_the_photo_and_scale_multiplies_the_displacement(animators):
    an, photo = animators["plain"], _photo()
    still = an.animate(photo, [0, 1], AnimationOptions(steps=2, motion_scale=0.0))
    for r in still:
        assert np.array_equal(r.frames, np.broadcast_to(photo, r.frames.shape))  # uint8, every frame
    plain = an.animate(photo, [0], AnimationOptions(steps=2))[0]
    assert not np.array_equal(plain.frames[1:], np.broadcast_to(photo, plain.frames[1:].shape))
    double = an.animate(photo, [0], AnimationOptions(steps=2, motion_scale=2.0))[0]
    torch.testing.assert_close(double.fields[:, :2], 2 * plain.fields[:, :2])
    assert double.metrics["magnitude_px"] == pytest.approx(2 * plain.metrics["magnitude_px"], rel=1e-5)
    with pytest.raises(AnimationError, match="scale"):
        an.animate(photo, [0], AnimationOptions(steps=1, motion_scale=-1.0))


def test_amplitude_condition_is_optional_and_survives_the_checkpoint(tmp_path):
    old = tiny_unet(0)
    assert not any("amplitude" in k for k in old.state_dict())  # default off: old checkpoints' keys
    with pytest.raises(ValueError, match="amplitude_condition"):
        old(**unet_inputs(), amplitude=torch.ones(2))
    net = tiny_unet(0, amplitude_condition=True)
    x = unet_inputs()
    small, large = net(**x, amplitude=torch.full((2,), 0.5)), net(**x, amplitude=torch.full((2,), 4.0))
    assert (small - large).abs().max() > 1e-4  # the amount reaches the output
    dropped = net(**x, amplitude=torch.full((2,), 4.0), amplitude_mask=torch.zeros(2, dtype=torch.bool))
    torch.testing.assert_close(dropped, net(**x))  # a masked amount is the null embedding
    path = save_networks(tmp_path / "unet.safetensors", {"unet": net})
    again = load_networks(path, ["unet"])["unet"].eval()  # rebuilt from the checkpoint's config
    assert again.amplitude_condition
    torch.testing.assert_close(again(**x, amplitude=torch.full((2,), 4.0)), large)


def test_stage_two_measures_the_amount_from_decoded_latents_and_drops_it(animators):
    from lvmm.stages.stage_two import StageTwo

    unet = tiny_unet(0, cond_dim=TINY_IMAGEBIND_DIM, amplitude_condition=True).train()
    module = StageTwo(
        unet, num_frames=4, latent_scale=1.0, motion_checkpoint=str(animators["stage1"]), amplitude_dropout=1.0
    )
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(3, 4, 8, 8, generator=g)
    z = z0[:, None] + torch.randn(3, 4, 4, 8, 8, generator=g) * torch.tensor([0.0, 0.3, 1.0]).view(3, 1, 1, 1, 1)
    batch = {
        "z0": z0,
        "z": z,
        "img_emb": torch.randn(3, TINY_IMAGEBIND_DIM, generator=g),
        "txt_emb": torch.randn(3, TINY_IMAGEBIND_DIM, generator=g),
        "has_txt": torch.ones(3, dtype=torch.bool),
    }
    amount = module.amplitude(batch)
    motion = tiny_motion_model()
    torch.testing.assert_close(amount, controls.motion_amount(motion.decode_motion(z, z0)))
    assert amount[0] == pytest.approx(0.0, abs=1e-6) and amount[2] > amount[1] > 0  # z = z0: no motion
    # the amounts latent shards store are used as they are; a nan (shards without them) is measured
    given = torch.tensor([5.0, float("nan"), 7.0])
    expected = torch.stack([given[0], amount[1], given[2]])
    torch.testing.assert_close(module.amplitude(dict(batch, amplitude=given)), expected)
    _, cond = module.inputs(batch, drop=True)
    assert not cond["amplitude_mask"].any()  # amplitude_dropout = 1 drops every amount
    _, cond = module.inputs(batch, drop=False)
    assert cond["amplitude_mask"].all()
    assert torch.isfinite(module.training_step(batch, 0))
    assert module.extra()["amplitude_condition"] is True


def test_motion_amount_at_sampling_and_the_amplitude_response(animators):
    an, photo = animators["amount"], _photo()
    a = an.animate(photo, [0], AnimationOptions(steps=2, motion_amount=0.2))[0]
    b = an.animate(photo, [0], AnimationOptions(steps=2, motion_amount=5.0))[0]
    assert (a.fields - b.fields).abs().max() > 1e-5
    report = controls.amplitude_response(
        an, [photo, _photo(seed=1)], [0.2, 5.0], seeds=[0], options=AnimationOptions(steps=2)
    )
    assert report["requested"] == [0.2, 5.0, 0.2, 5.0] and len(report["generated"]) == 4
    assert -1.0 <= report["pearson"] <= 1.0 and np.isfinite(report["slope"])
    assert controls.pearson([1, 2, 3], [2, 4, 6.5]) > 0.99 and controls.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(
        -1
    )
    with pytest.raises(AnimationError, match="amplitude_condition"):
        animators["plain"].animate(photo, [0], AnimationOptions(steps=1, motion_amount=1.0))


# --- 2. region brush --------------------------------------------------------------------------------


def test_a_black_mask_leaves_the_photo_unchanged_and_a_half_mask_stills_its_half(animators):
    an, photo = animators["plain"], _photo()
    black = an.animate(photo, [0], AnimationOptions(steps=2, region_mask=np.zeros((7, 9))))[0]
    assert np.array_equal(black.frames, np.broadcast_to(photo, black.frames.shape))
    mask = np.zeros((H, W), np.float32)
    mask[:, : W // 2] = 1  # the left half may move
    half = an.animate(photo, [0], AnimationOptions(steps=2, region_mask=mask, mask_guidance=0.0))[0]
    right = slice(W // 2 + 4, None)  # beyond the soft edge (two box blurs of 1 px)
    assert np.array_equal(half.frames[:, :, right], np.broadcast_to(photo[:, right], half.frames[:, :, right].shape))
    assert np.abs(half.frames[1:, :, :40].astype(int) - photo[:, :40]).max() > 0  # the left half moves
    grid = controls.mask_on_grid(controls.prepare_mask(mask, (H, W)), (16, 24))
    assert half.metrics["mask_share"] > 0.95  # the soft edge counts partly outside
    plain = an.animate(photo, [0], AnimationOptions(steps=2))[0]
    ratio = controls.masked_motion_ratio(half.fields[1:], plain.fields[1:], grid)
    assert 0.5 < ratio <= 1.0 + 1e-6  # motion inside is kept (the soft edge loses a little)
    assert controls.mask_energy_share(plain.fields[1:], grid) < 0.9


def test_mask_measures():
    f = torch.zeros(2, 3, 4, 4)
    f[:, 0, :, :2] = 1.0  # motion on the left half only
    left = torch.zeros(4, 4)
    left[:, :2] = 1
    assert controls.mask_energy_share(f, left) == pytest.approx(1.0)
    assert controls.mask_energy_share(f, 1 - left) == pytest.approx(0.0)
    assert controls.masked_motion_ratio(0.5 * f, f, left) == pytest.approx(0.5)
    soft = controls.prepare_mask(np.pad(np.ones((10, 10)), 10), (60, 60))
    assert soft.min() == 0 and soft.max() == 1 and ((soft > 0) & (soft < 1)).any()  # soft edges, exact ends


def _gaussian_sampling(guidance, seeds=(0, 1, 2, 3)):
    config = DiffusionConfig(prediction_type="epsilon")
    denoiser = GaussianDenoiser(config, mean=0.0, std=0.5)
    cond = {"z0": torch.zeros(len(seeds), 4, 8, 8)}
    return sample(denoiser, config, (4, 4, 8, 8), cond, seeds=seeds, steps=10, guidance=guidance)  # (B, C, T, h, w)


def test_mask_guidance_moves_motion_energy_into_the_mask():
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    decode = lambda z: z[:, :, :3]  # latents as fields: (B, T, 3, h, w)
    plain = _gaussian_sampling([]).transpose(1, 2)
    guided = _gaussian_sampling([MaskGuidance(1000.0, mask, decode, StepSchedule())]).transpose(1, 2)
    share_plain = controls.mask_energy_share(plain[:, :, :2], mask)
    share_guided = controls.mask_energy_share(guided[:, :, :2], mask)
    assert share_plain == pytest.approx(0.5, abs=0.1)
    assert share_guided > share_plain + 0.2


# --- 3. drags ---------------------------------------------------------------------------------------


def test_drag_progress_eases_there_and_back_for_loops():
    clip = controls.drag_progress(8, loop=False)
    assert clip[-1] == 1 and (clip[1:] >= clip[:-1]).all() and clip[0] > 0
    assert controls.drag_progress(8, loop=False, frame=4)[3:].eq(1).all()
    loop = controls.drag_progress(9, loop=True)  # plays frames 1..8 (outputs 0..7), frame 9 repeats frame 1
    assert loop[0] == 0 and loop[4] == 1 and loop[-1] == 0 and loop[4 + 2] < 1
    with pytest.raises(ValueError):
        controls.drag_progress(8, loop=True, frame=7)
    assert controls.parse_drag("1,2,3,4") == controls.Drag(1, 2, 3, 4) and controls.parse_drag("1,2,3,4,5").frame == 5
    with pytest.raises(ValueError):
        controls.parse_drag("1,2,3")


def test_a_corrected_field_carries_the_patch_to_the_end_point_backward_warp():
    """Rendered: the patch around (x0, y0) of the photo appears around (x1, y1) at the drag's frame."""
    motion, photo = tiny_motion_model(), _photo()
    work = to_float(photo)[None]
    drag = controls.Drag(30, 32, 50, 28)
    start, path = controls.drag_targets([drag], (H, W), 4, loop=False)
    fields = torch.zeros(1, 4, 3, 16, 24)
    fields[:, :, 2] = 1
    fields = controls.correct_drags(fields, start, path, controls.drag_radius((H, W), 0.3))  # a wide, rigid drag
    assert controls.drag_endpoint_error(fields[0], [drag], (H, W), loop=False)[0] < 1e-3
    frame = render_photo(motion.renderer, photo, work, fields[0, -1:])[0]
    moved = np.abs(_patch(frame, 50, 28, 2) - _patch(photo, 30, 32, 2)).mean()
    unmoved = np.abs(_patch(frame, 50, 28, 2) - _patch(photo, 50, 28, 2)).mean()
    wrong_way = np.abs(_patch(frame, 10, 36, 2) - _patch(photo, 30, 32, 2)).mean()  # dragged the other way
    assert moved < 0.25 * unmoved and moved < 0.25 * wrong_way


def test_a_drag_on_a_zero_weight_model_moves_the_point(animators):
    an, photo = animators["zero"], _photo()
    drag = controls.Drag(30, 32, 48, 32)
    clip = an.animate(photo, [0], AnimationOptions(steps=2, drags=[drag]))[0]
    last = clip.frames[-1]
    assert clip.metrics["drag_error_px"] < 0.5
    assert (
        np.abs(_patch(last, 48, 32) - _patch(photo, 30, 32)).mean()
        < 0.3 * np.abs(_patch(last, 48, 32) - _patch(photo, 48, 32)).mean()
    )
    loop = an.animate(photo, [0], AnimationOptions(steps=2, drags=["30,32,48,32,1"], loop_guidance=10.0))[0]
    assert loop.metrics["drag_error_px"] < 0.5  # at output frame 1 of the loop, and back at the wrap
    assert (
        np.abs(_patch(loop.frames[1], 48, 32) - _patch(photo, 30, 32)).mean()
        < np.abs(_patch(loop.frames[0], 48, 32) - _patch(photo, 30, 32)).mean()
    )
    with pytest.raises(AnimationError, match="leaves"):
        an.animate(photo, [0], AnimationOptions(steps=1, drags=["30,32,480,32"]))


def test_drag_guidance_pulls_the_field_at_the_path_points():
    start = torch.tensor([[-0.5, 0.0]])
    path = torch.tensor([[[-0.5, 0.0]], [[-0.3, 0.0]], [[-0.1, 0.0]], [[0.1, 0.0]]])  # (T, J, 2)
    decode = lambda z: z[:, :, :3]
    term = lambda w: DragGuidance(w, start, path, torch.tensor([0.25, 0.25]), decode, StepSchedule())
    plain = _gaussian_sampling([])
    guided = _gaussian_sampling([term(200.0)])
    probe = term(1.0)
    assert probe.loss(guided).mean() < 0.5 * probe.loss(plain).mean()


# --- 4. long clips ----------------------------------------------------------------------------------


def test_join_ratio_sees_a_jump():
    smooth = torch.arange(12.0).view(12, 1)
    jumpy = smooth.clone()
    jumpy[6:] += 5
    assert controls.join_ratio(smooth, [5]) == pytest.approx(1.0)
    assert controls.join_ratio(jumpy, [5]) == pytest.approx(6.0)
    assert controls.join_ratio(jumpy, [4], span=3) == pytest.approx(8 / 3)  # steps 1, 6, 1: a jump in a span


def test_long_clips_windows_and_repeated_loops(animators):
    an, photo = animators["plain"], _photo()
    long = an.animate(photo, [0], AnimationOptions(steps=2, total_frames=12))[0]
    # K = 4: 11 generated frames in windows 2 frames apart (half the window), the last one ending at frame 11
    assert long.frames.shape == (12, H, W, 3) and long.frames.dtype == np.uint8
    assert np.array_equal(long.frames[0], photo) and long.metrics["windows"] == 5
    assert np.isfinite(long.metrics["join_frames"]) and np.isfinite(long.metrics["join_fields"])
    # all windows are denoised together: the first frames differ from a plain 4-frame clip of the same seed
    # (their windows' neighbours have a say), and a seed's clip does not depend on the batch
    short = an.animate(photo, [0], AnimationOptions(steps=2))[0]
    assert not np.array_equal(long.frames[1:5], short.frames[1:5])
    pair = an.animate(photo, [5, 0], AnimationOptions(steps=2, total_frames=12))
    # float rounding only: BLAS blocks a batch of 2 differently from 1, and the sampler amplifies it
    # (2e-7 to 6e-5 measured on two CPUs); another seed's clip differs by about 0.1
    assert torch.allclose(pair[1].fields, long.fields, atol=2e-4)
    strided = an.animate(photo, [0], AnimationOptions(steps=2, total_frames=12, window_stride=1))[0]
    assert strided.metrics["windows"] == 8
    with pytest.raises(AnimationError, match="stride"):
        an.animate(photo, [0], AnimationOptions(steps=2, total_frames=12, window_stride=0))
    loop = an.animate(photo, [0], AnimationOptions(steps=2, loop_guidance=10.0, total_frames=10))[0]
    assert loop.frames.shape[0] == 10 and np.array_equal(loop.frames[3:6], loop.frames[:3])  # K - 1 = 3 per cycle
    # a drag with a long clip: guidance sees the whole clip's path at once
    dragged = an.animate(photo, [0], AnimationOptions(steps=4, total_frames=12, drags=["30,32,40,32"]))[0]
    assert dragged.frames.shape[0] == 12 and dragged.metrics["drag_error_px"] < 0.5


def test_a_clip_of_over_100_frames_in_windows(animators):
    an, photo = animators["plain"], _photo()
    clip = an.animate(photo, [0], AnimationOptions(steps=1, total_frames=101))[0]
    assert clip.frames.shape == (101, H, W, 3) and clip.frames.dtype == np.uint8
    assert np.array_equal(clip.frames[0], photo) and clip.metrics["windows"] == 49
    assert np.isfinite(clip.metrics["join_frames"]) and not np.array_equal(clip.frames[-1], clip.frames[50])


# --- combination through the tool -------------------------------------------------------------------


def test_mask_drag_and_loop_in_one_animate_call(animators, tmp_path):
    from tools.animate import main

    photo = _photo()
    write_image(tmp_path / "photo.png", photo)
    brush = np.zeros((32, 48, 3), np.uint8)
    brush[:, :30] = 255  # the left part of the photo may move (any size: resized to the photo)
    write_image(tmp_path / "brush.png", brush)
    rows = main(
        [
            "--ckpt", str(animators["plain_path"]), "--image", str(tmp_path / "photo.png"),
            "--steps", "2", "--loop-guidance", "10", "--mask", str(tmp_path / "brush.png"),
            "--drag", "20,32,36,32", "--duration", "1.25", "--fps", "8",
            "--format", "frames", "--out", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    (row,) = rows
    assert row["loop"] and row["frames"] == 10 and row["mask_share"] > 0.95 and row["drag_error_px"] < 1.0
    assert json.loads((tmp_path / "out" / "animate.json").read_text())[0]["drag_error_px"] == row["drag_error_px"]
    from lvmm.media import read_image

    frames = [read_image(p) for p in sorted((tmp_path / "out" / "photo_seed0").glob("*.png"))]
    assert len(frames) == 10
    still = slice(70, None)  # well inside the black part of the brush (x >= 60 at the photo's size)
    assert all(np.array_equal(f[:, still], photo[:, still]) for f in frames)
    assert any(np.abs(f[:, :50].astype(int) - photo[:, :50]).max() > 0 for f in frames)


def test_synthetic_latents_carry_their_amount_for_amplitude_training():
    from lvmm.datasets.latent import SyntheticLatentDataModule, synthetic_decode
    from lvmm.stages.stage_two import StageTwo

    dm = SyntheticLatentDataModule(size=8, num_frames=4, emb_dim=16, train_length=6, val_length=2, batch_size=6)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    torch.testing.assert_close(batch["amplitude"], controls.motion_amount(synthetic_decode(batch["z"])))
    assert batch["amplitude"].std() > 0  # the families' amplitudes differ
    module = StageTwo(tiny_unet(0, amplitude_condition=True).train(), num_frames=4)  # no stage one needed
    _, cond = module.inputs(batch, drop=False)
    torch.testing.assert_close(cond["amplitude"], batch["amplitude"])
    assert torch.isfinite(module.training_step(batch, 0))
