"""Animations at the photo's resolution, loops as they play, the working size, prompt modalities, notices."""

import wave

import numpy as np
import pytest
import torch

import lvmm.imagebind.encoder as ib_encoder
import lvmm.rendering as rendering
from lvmm.animation import AnimationOptions, Animator, PaddedDenoiser, close_loop
from lvmm.diffusion.schedules import DiffusionConfig
from lvmm.evaluation.motion_metrics import mean_magnitude, pop_ratio, sharpness, wrap_ratio
from lvmm.media import read_video, to_float, write_image
from lvmm.warp import pixels_to_normalised
from tests.helpers.pipeline import TINY_IMAGEBIND_DIM, stage_one_checkpoint, stage_two_checkpoint
from tests.helpers.stage1 import tiny_motion_model
from tests.helpers.stage2 import tiny_unet


def _photo(h, w, seed=0):
    """A photo-like image: smooth shapes plus fine texture (random noise alone has no motion to speak of)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(9 * x + 3 * c) * np.cos(7 * y - c) for c in range(3)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _working(photo, size):
    return torch.nn.functional.interpolate(
        to_float(photo)[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )


def _identity(t, h, w):
    f = torch.zeros(t, 3, h, w)
    f[:, 2] = 1.0
    return f


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("animation")
    s1 = stage_one_checkpoint(root / "stage1.safetensors")
    return {"stage1": s1, "stage2": stage_two_checkpoint(root / "stage2.safetensors", s1), "root": root}


# --- 1. resolution-independent rendering ------------------------------------------------------------


def test_identity_field_reproduces_the_photo_exactly_at_full_resolution(monkeypatch):
    motion = tiny_motion_model()
    photo = _photo(300, 451)
    work = _working(photo, (64, 96))
    frames = rendering.render_photo(motion.renderer, photo, work, _identity(3, 16, 24), chunk_size=2)
    assert frames.shape == (3, 300, 451, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, np.broadcast_to(photo, frames.shape))  # uint8 equality
    # a small full-resolution budget (several passes per chunk) and other chunk sizes give the same frames
    field = _identity(5, 16, 24)
    field[:, 0] = 0.02 * torch.linspace(-1, 1, 24)  # a smooth horizontal stretch
    one = rendering.render_photo(motion.renderer, photo, work, field, chunk_size=8)
    monkeypatch.setattr(rendering, "FULL_RES_PIXEL_BUDGET", 300 * 451)  # one frame per pass
    assert np.array_equal(rendering.render_photo(motion.renderer, photo, work, field, chunk_size=3), one)


def test_a_known_shift_moves_the_photo_itself():
    motion = tiny_motion_model()
    photo = _photo(256, 384, seed=1)
    work = _working(photo, (64, 96))
    field = _identity(1, 16, 24)
    field[:, :2] = pixels_to_normalised(torch.tensor([3.0, 0.0]).view(2, 1, 1), 256, 384)  # 3 photo pixels along x
    frame = rendering.render_photo(motion.renderer, photo, work, field)[0].astype(int)
    # backward warp: I(x) = photo(x + 3); full intention weight, so no renderer blur anywhere
    assert np.abs(frame[:, 8:-8] - photo[:, 11:-5].astype(int)).max() <= 1
    assert sharpness(frame) >= 0.99 * sharpness(photo)


def test_decoded_motion_is_relative_to_the_first_frame():
    """No pop from the decoder's offset: a latent equal to z_0 decodes to the identity and renders the photo."""
    motion = tiny_motion_model()
    z0 = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        raw = motion.decode(z0)
        fields = motion.decode_motion(z0[:, None].expand(-1, 3, -1, -1, -1).contiguous(), z0)
    assert raw[:, :2].abs().max() > 1e-3 and raw[:, 2].min() < 0.999  # D(z_0) alone is not the identity
    torch.testing.assert_close(fields[:, :, :2], torch.zeros_like(fields[:, :, :2]), atol=1e-6, rtol=0)
    torch.testing.assert_close(fields[:, :, 2], torch.ones_like(fields[:, :, 2]), atol=1e-6, rtol=0)
    photo = _photo(128, 128)
    frames = rendering.render_photo(motion.renderer, photo, _working(photo, (64, 64)), fields[0])
    assert np.array_equal(frames, np.broadcast_to(photo, frames.shape))


def test_animator_renders_a_2048_photo_at_its_own_size(checkpoints):
    animator = Animator.from_checkpoints(checkpoints["stage2"])
    photo = _photo(1152, 2048)
    res = animator.animate(photo, [0], AnimationOptions(steps=1, size=64, chunk_size=2))[0]
    assert res.frames.shape == (5, 1152, 2048, 3) and res.working_size == (64, 128)
    assert np.array_equal(res.frames[0], photo)  # frame 0 is the photo itself


# --- 2. no pop, sharpness; 4. loops as they play (the measures) ---------------------------------------


def test_wrap_and_pop_ratios_measure_the_sequence_as_it_plays():
    phase = torch.arange(6) * (2 * np.pi / 6)  # one period, 6 frames, no repeat
    cycle = torch.sin(phase).view(6, 1, 1, 1) * torch.ones(6, 2, 4, 4)
    assert wrap_ratio(cycle) == pytest.approx(1.0, abs=0.3)  # seamless: the wrap is an ordinary step
    held = torch.cat([cycle, cycle[:1]])  # frame 1 repeated at the end: a hold
    assert wrap_ratio(held) < 0.05
    jump = torch.cat([cycle[:3], cycle[:3] + 5])
    assert wrap_ratio(jump) > 2
    ramp = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 2, 2).clone()
    assert pop_ratio(ramp) == pytest.approx(1.0)
    ramp[1:] += 4  # a big first step
    assert pop_ratio(ramp) == pytest.approx(5.0)
    assert mean_magnitude(torch.full((2, 2, 3, 3), 3.0)) == pytest.approx(18**0.5)


def test_loops_play_frames_1_to_k_minus_1_and_slow_loops_cross_the_wrap(checkpoints):
    animator = Animator.from_checkpoints(checkpoints["stage2"])
    photo = _photo(64, 80)
    k = int(animator.extra["num_frames"])
    clip = animator.animate(photo, [0], AnimationOptions(steps=2))[0]
    loop = animator.animate(photo, [0], AnimationOptions(steps=2, loop_guidance=100.0))[0]
    slow = animator.animate(photo, [0], AnimationOptions(steps=2, loop_guidance=100.0, slow_motion=3))[0]
    assert clip.frames.shape[0] == k + 1 and "pop_frames" in clip.metrics
    assert loop.frames.shape[0] == k - 1 and slow.frames.shape[0] == 3 * (k - 1)
    torch.testing.assert_close(slow.fields[::3], loop.fields)  # the played fields, every 3rd
    # the last slow field lies between field K-1 and field 1: the wrap is interpolated, not a repeated frame
    torch.testing.assert_close(slow.fields[-1], loop.fields[-1] + (loop.fields[0] - loop.fields[-1]) * 2 / 3)
    assert loop.metrics["wrap_frames"] == pytest.approx(wrap_ratio(loop.frames))


def test_close_loop_makes_the_wrap_an_ordinary_step():
    g = torch.Generator().manual_seed(0)
    fields = torch.randn(2, 6, 3, 4, 5, generator=g).cumsum(1)  # (B, K, C, h, w): a walk that does not return
    closed = close_loop(fields)
    torch.testing.assert_close(closed[:, -1], closed[:, 0])  # f'_K = f'_1 = f_1
    torch.testing.assert_close(closed[:, 0], fields[:, 0])
    # every step changes by the same share of the mismatch, so played 1..K-1 the wrap K-1 -> 1 is step K-1 -> K
    steps = closed.diff(dim=1) - fields.diff(dim=1)
    torch.testing.assert_close(steps, (fields[:, -1:] - fields[:, :1]).expand_as(steps) / -5)
    already = torch.cat([fields[:, :5], fields[:, :1]], dim=1)
    torch.testing.assert_close(close_loop(already), already)  # a closed loop is left as it is


def test_loop_closure_is_applied_to_loops_only_and_can_be_switched_off(checkpoints):
    animator = Animator.from_checkpoints(checkpoints["stage2"])
    photo = _photo(64, 80)
    closed = animator.animate(photo, [0], AnimationOptions(steps=2, loop_guidance=1.0))[0]
    open_ = animator.animate(photo, [0], AnimationOptions(steps=2, loop_guidance=1.0, loop_closure=False))[0]
    # a weak guidance leaves a mismatch c = f_K - f_1; closure subtracts (k - 1) / (K - 1) * c from field k
    delta = closed.fields - open_.fields  # (K-1, 3, h, w), the played fields 1..K-1
    assert float(delta[1].abs().max()) > 1e-4
    torch.testing.assert_close(delta[0], torch.zeros_like(delta[0]))
    ramp = torch.arange(delta.shape[0], dtype=delta.dtype).view(-1, 1, 1, 1)
    torch.testing.assert_close(delta, ramp * delta[1:2], atol=1e-5, rtol=1e-4)
    clip = animator.animate(photo, [0], AnimationOptions(steps=2))[0]
    clip_again = animator.animate(photo, [0], AnimationOptions(steps=2, loop_closure=False))[0]
    torch.testing.assert_close(clip.fields, clip_again.fields)  # not a loop: nothing to close


def test_guidance_interval_limits_classifier_free_guidance_to_part_of_the_steps(checkpoints, tmp_path):
    from lvmm.cli.animate import build_parser, sampling_options

    animator = Animator.from_checkpoints(checkpoints["stage2"])
    photo = _photo(64, 80)
    run = lambda **kw: animator.animate(photo, [0], AnimationOptions(steps=4, **kw), prompt="sway")[0].fields
    unguided, guided = run(guidance_scale=0.0), run(guidance_scale=3.0)
    torch.testing.assert_close(run(guidance_scale=3.0, guidance_interval=(0.0, 0.0)), unguided)
    assert float((guided - unguided).abs().max()) > 1e-3
    late = run(guidance_scale=3.0, guidance_interval=(0.5, 1.0))  # the last two of four steps guided
    assert float((late - unguided).abs().max()) > 1e-4 and float((late - guided).abs().max()) > 1e-4
    args = build_parser().parse_args(["--image", "x.png", "--ckpt", "c", "--guidance-interval", "0.2", "0.8"])
    assert sampling_options(args)["guidance_interval"] == (0.2, 0.8)


# --- 3. working size from the checkpoint; the 512 config's shapes --------------------------------------


def test_working_size_comes_from_the_checkpoint(checkpoints):
    animator = Animator.from_checkpoints(checkpoints["stage2"])
    animator.extra = dict(animator.extra, frame_size=[64, 64])
    photo = _photo(256, 384)
    res = animator.animate(photo, [0], AnimationOptions(steps=1))[0]
    assert res.working_size == (64, 96) and res.frames.shape[1:3] == (256, 384)
    assert animator.animate(photo, [0], AnimationOptions(steps=1, size=128))[0].working_size == (128, 192)
    padded = animator.animate(photo, [0], AnimationOptions(steps=1, fit="pad"))[0]
    assert padded.working_size == (64, 96) and padded.frames.shape[1:3] == (256, 384)


def test_stage_two_records_the_training_frame_size():
    from lvmm.stages.stage_two import StageTwo

    module = StageTwo(tiny_unet(randomise=False), num_frames=4)
    batch = {
        "z0": torch.randn(2, 4, 8, 8),
        "z": torch.randn(2, 4, 4, 8, 8),
        "img_emb": torch.randn(2, 16),
        "txt_emb": torch.randn(2, 16),
        "has_txt": torch.ones(2, dtype=torch.bool),
        "first": torch.rand(2, 3, 64, 48),
    }
    module.inputs(batch, drop=False)
    assert module.extra()["frame_size"] == list(batch["first"].shape[-2:])


def test_a_512_by_768_photo_runs_at_512_by_768_with_the_512_configs_shapes():
    """Stage one reduces 32x (p at 1/4, an 8x VAE) and the U-Net halves the latent 4 times, as in the
    512 configs (narrow widths): the 16 x 24 latent is padded to 16 x 32 inside, the photo is not."""
    from lvmm.motion import MotionModel
    from lvmm.nets.flow_predictor import FlowPredictor
    from lvmm.nets.motion_vae import MotionVAE
    from lvmm.nets.renderer import Renderer

    torch.manual_seed(0)
    motion = MotionModel(
        FlowPredictor(
            num_regions=2,
            region_width=4,
            region_depth=1,
            background_width=4,
            widths=[4, 4, 4, 4, 4, 4],
            depth=1,
            refine_passes=0,
            field_downsample=4,
        ),
        MotionVAE(latent_channels=4, reduction=8, width=4, max_width=8),
        Renderer(width=4, num_res_blocks=1, kernel_size=3),
    )
    unet = tiny_unet(downsample=(True, True, True, True), cond_dim=TINY_IMAGEBIND_DIM)
    seen = []
    unet.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    extra = {
        "cond_dim": TINY_IMAGEBIND_DIM,
        "num_frames": 2,
        "max_frames": 8,
        "latent_multiple": unet.downsample_factor,
        "latent_scale": 1.0,
        "frame_size": [512, 512],
    }
    animator = Animator(
        motion,
        unet,
        DiffusionConfig(prediction_type="v_prediction"),
        extra,
        ib_encoder.ImageBindEncoder(config="tiny"),
        "cpu",
    )
    assert unet.downsample_factor == 16 and animator.step == 32
    res = animator.animate(_photo(512, 768), [0], AnimationOptions(steps=1))[0]
    assert res.working_size == (512, 768) and res.frames.shape == (3, 512, 768, 3)
    assert res.fields.shape[-2:] == (128, 192) and set(seen) == {(16, 32)}  # latent 16 x 24, padded inside
    assert PaddedDenoiser(unet, 16).cond_dim == TINY_IMAGEBIND_DIM


# --- 6. every prompt modality -----------------------------------------------------------------------


def _write_wav(path, seconds=2.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    wave_ = (0.4 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 0.5 * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate), f.writeframes(wave_.tobytes())
    return path


def test_audio_and_image_prompts_through_animate_change_the_motion(checkpoints, tmp_path):
    from lvmm.cli.animate import main

    photo = write_image(tmp_path / "photo.png", _photo(64, 96))
    cond = write_image(tmp_path / "cond.png", _photo(80, 80, seed=5))
    wav = _write_wav(tmp_path / "rain.wav")
    common = [
        "--ckpt",
        str(checkpoints["stage2"]),
        "--image",
        str(photo),
        "--seeds",
        "0",
        "--steps",
        "3",
        "--save-flow",
    ]
    runs = {}
    for name, extra in (("none", []), ("audio", ["--audio", str(wav)]), ("image", ["--cond-image", str(cond)])):
        main([*common, "--out", str(tmp_path / name), *extra])
        runs[name] = np.load(tmp_path / name / "photo_seed0_flow.npy")
        assert read_video(tmp_path / name / "photo_seed0.mp4")[0].shape == (runs[name].shape[0], 64, 96, 3)
    assert np.abs(runs["audio"] - runs["none"]).max() > 1e-4
    assert np.abs(runs["image"] - runs["none"]).max() > 1e-4
    assert np.abs(runs["audio"] - runs["image"]).max() > 1e-4


def test_prompt_tokens_reach_the_unet_at_comparable_scale(checkpoints, tmp_path):
    from lvmm.diffusion.sampling import motion_conditions
    from lvmm.imagebind import ImageBindEncoder

    enc = ImageBindEncoder(config="tiny")
    captions = [
        "the scene sways gently",
        "the water ripples",
        "the scene zooms in slowly",
        "a region drifts to the left",
    ]
    text, image = enc.embed_texts(captions), enc.embed_images([_photo(64, 64, seed=s) for s in range(4)])
    audio = enc.embed_audio([str(_write_wav(tmp_path / "a.wav"))])
    raw = {m: float(e.norm(dim=-1).mean()) for m, e in (("text", text), ("image", image), ("audio", audio))}
    assert max(raw.values()) / min(raw.values()) > 2  # ImageBind's own outputs are at different scales
    unet = tiny_unet(cond_dim=TINY_IMAGEBIND_DIM)
    unit = torch.nn.functional.normalize
    tokens = torch.stack([unit(image, dim=-1), unit(text, dim=-1)], 1)
    mean, var = tokens.mean(0), tokens.var(0).mean(-1)  # standardisation fitted on captions, as in training
    unet.set_token_statistics(mean, var.sqrt())
    norms = {}
    for name, prompt in (("text", text[:1]), ("audio", audio), ("image", enc.embed_images([_photo(48, 48, seed=9)]))):
        cond, _ = motion_conditions(torch.zeros(1, 4, 8, 8), image[:1], prompt)
        with torch.no_grad():
            norms[name] = float(unet.condition_tokens(cond["tokens"], cond["token_mask"], 1)[0, 1].norm())
    assert max(norms.values()) / min(norms.values()) <= 2, norms


# --- 7. no silent substitutes -----------------------------------------------------------------------


def test_the_random_imagebind_is_announced_and_huge_without_weights_is_refused(
    checkpoints, tmp_path, monkeypatch, capsys
):
    from lvmm.cli.animate import main as animate

    photo = write_image(tmp_path / "photo.png", _photo(64, 64))
    monkeypatch.setattr(ib_encoder, "_noticed", False)
    animate(["--ckpt", str(checkpoints["stage2"]), "--image", str(photo), "--steps", "1", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert err.count("random model") == 1 and "--imagebind" in err
    monkeypatch.setattr(ib_encoder, "_noticed", False)
    Animator.from_checkpoints(checkpoints["stage2"])  # the Python API says so too
    assert "--imagebind imagebind_huge.pth" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="huge.*without weights"):
        animate(
            [
                "--ckpt",
                str(checkpoints["stage2"]),
                "--image",
                str(photo),
                "--imagebind-config",
                "huge",
                "--out",
                str(tmp_path / "b"),
            ]
        )
    with pytest.raises(ValueError, match="--imagebind"):
        ib_encoder.ImageBindEncoder(config="huge")
