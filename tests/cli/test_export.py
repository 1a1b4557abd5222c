"""Model packages (tools/export.py, lvmm.pipeline) and the one-call pipeline on tiny checkpoints."""

import json

import numpy as np
import pytest
import torch

from lvmm.animation import AnimationError, AnimationOptions, Animator
from lvmm.checkpoint import file_sha256
from lvmm.pipeline import CHECKSUM_FILE, CONFIG_FILE, FieldEdit, LVMMPipeline, PackageError, read_stage, verify_package
from tests.helpers.pipeline import stage_one_checkpoint, stage_two_checkpoint

STEPS = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from lvmm.cli.export import main

    root = tmp_path_factory.mktemp("export")
    s1 = stage_one_checkpoint(root / "stage1.safetensors")
    s2 = stage_two_checkpoint(root / "stage2.safetensors", s1)
    package = main(["--stage2", str(s2), "--out", str(root / "package")])
    return {"root": root, "stage1": s1, "stage2": s2, "package": package}


def _image(h=64, w=80, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _rewrite_checksums(folder):
    names = [line.split("  ", 1)[1] for line in (folder / CHECKSUM_FILE).read_text().splitlines()]
    (folder / CHECKSUM_FILE).write_text("".join(f"{file_sha256(folder / n)}  {n}\n" for n in names))


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_package_round_trip_is_exact(models):
    image = _image()
    from_ckpt = LVMMPipeline.from_checkpoints(models["stage2"], device="cpu")
    from_pkg = LVMMPipeline.from_pretrained(models["package"], device="cpu")  # ok: a local package folder, no hub
    assert from_pkg.torch_dtype == torch.float32 == from_ckpt.torch_dtype
    a = from_ckpt(image, seeds=[3, 4], steps=STEPS, sampler="ddpm")
    b = from_pkg(image, seeds=[3, 4], steps=STEPS, sampler="ddpm")
    for fa, fb in zip(a.frames, b.frames):
        assert fa.shape == (5, 64, 80, 3) and np.array_equal(fa, fb)  # exact, fp32
    assert all(torch.equal(x, y) for x, y in zip(a.fields, b.fields))
    assert not np.array_equal(a.frames[0], a.frames[1])  # seeds differ
    # the pipeline adds nothing to the Animator: the same frames as Animator.from_checkpoints
    direct = Animator.from_checkpoints(models["stage2"], device="cpu").animate(
        image, [3, 4], AnimationOptions(steps=STEPS, sampler="ddpm")
    )
    assert all(np.array_equal(d.frames, f) for d, f in zip(direct, b.frames))
    # save_pretrained of a loaded package writes the same weights (safetensors' header order may differ)
    from safetensors.torch import load_file

    again = from_pkg.save_pretrained(models["root"] / "again")
    verify_package(again)
    for name in ("stage_one.safetensors", "stage_two.safetensors"):
        x, y = load_file(str(again / name)), load_file(str(models["package"] / name))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_package_contents(models):
    folder = models["package"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "checksums.sha256",
        "config.json",
        "stage_one.safetensors",
        "stage_two.safetensors",
    ]
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["diffusion"]["prediction_type"] and config["latent_scale"] == 1.0
    assert config["token_statistics"]["stored_as"] == ["unet.token_mean", "unet.token_scale"]
    assert config["imagebind"]["config"] == "tiny" and config["num_frames"] == 4
    text = "\n".join(p.read_text() for p in folder.iterdir() if p.suffix in (".json", ".md", ".sha256"))
    assert str(models["root"]) not in text and "motion_checkpoint" not in text  # no absolute paths
    listed = [line.split("  ")[1] for line in (folder / CHECKSUM_FILE).read_text().splitlines()]
    assert sorted(listed) == ["README.md", "config.json", "stage_one.safetensors", "stage_two.safetensors"]
    card = (folder / "README.md").read_text()
    assert "ImageBind" in card and "| stage_two unet |" in card and "from_pretrained" in card


@pytest.mark.parametrize("damage", ["missing", "altered", "version"])
def test_damaged_package_is_refused_naming_the_file(models, tmp_path, damage):
    folder = _copy(models["package"], tmp_path / "pkg")
    if damage == "missing":
        (folder / "stage_one.safetensors").unlink()
        match = r"stage_one\.safetensors: missing"
    elif damage == "altered":
        data = bytearray((folder / "stage_two.safetensors").read_bytes())
        data[-1] ^= 1  # one bit of one weight
        (folder / "stage_two.safetensors").write_bytes(bytes(data))
        match = r"stage_two\.safetensors: altered"
    else:
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["format_version"], config["lvmm_version"] = 99, "9.9.9"
        (folder / CONFIG_FILE).write_text(json.dumps(config))
        _rewrite_checksums(folder)  # consistent checksums: only the version differs
        match = r"config\.json: package format version 99 \(written by LVMM 9\.9\.9\)"
    with pytest.raises(PackageError, match=match):
        LVMMPipeline.from_pretrained(folder)  # ok: a local package folder, no hub


def test_export_picks_ema_weights_drops_optimizer_and_casts(models, tmp_path):
    """A Lightning-layout checkpoint: EMA in state_dict, raw in current_model_state, optimizer state, data hparams."""
    from safetensors.torch import load_file

    from lvmm.checkpoint import read_checkpoint
    from lvmm.cli.export import main

    configs, state, extra = read_checkpoint(models["stage2"])
    ema = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    ckpt = {
        "state_dict": ema,
        "current_model_state": state,
        "lvmm_networks": configs,
        "lvmm_extra": extra,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3)}}}],
        "datamodule_hyper_parameters": {"size": [64, 96], "train_shards": "/data/x/latent-*.tar"},
    }
    torch.save(ckpt, tmp_path / "stage2.ckpt")
    folder = main(
        [
            "--stage2",
            str(tmp_path / "stage2.ckpt"),
            "--stage1",
            str(models["stage1"]),
            "--out",
            str(tmp_path / "pkg"),
            "--dtype",
            "bf16",
        ]
    )
    tensors = load_file(str(folder / "stage_two.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 10)
    assert tensors[key].dtype == torch.bfloat16
    torch.testing.assert_close(tensors[key], ema[key].to(torch.bfloat16))  # the EMA weights, as bf16
    assert not any("exp_avg" in k or "optimizer" in k for k in tensors)
    config = verify_package(folder)
    assert config["stages"]["stage_two"]["weights"] == "ema" and config["stages"]["stage_one"]["weights"] == "raw"
    assert config["training_frame_size"] == [64, 96] and config["generation"]["frame_size"] == [64, 96]
    assert config["trained_on"]["stage_two"] == "shards latent-*.tar"  # file names, never directories
    assert (folder / "stage_two.safetensors").stat().st_size < 0.6 * (
        models["package"] / "stage_two.safetensors"
    ).stat().st_size
    raw = read_stage(tmp_path / "stage2.ckpt", ["unet"], ema=False)
    assert raw.origin == "raw" and torch.equal(raw.state[key], state[key])
    LVMMPipeline.from_pretrained(folder)  # ok: local folder; a bf16 package loads (upcast)


def test_batch_size_groups_do_not_change_a_seed_and_callback_counts_steps(models):
    pipe = LVMMPipeline.from_pretrained(models["package"])  # ok: a local package folder, no hub
    image = _image()
    calls = []
    grouped = pipe(
        image, seeds=[0, 1, 2], steps=STEPS, sampler="ddpm", batch_size=2, callback=lambda i, n: calls.append((i, n))
    )
    alone = pipe(image, seeds=[0, 1, 2], steps=STEPS, sampler="ddpm", batch_size=1)
    assert calls == [(i, 2 * STEPS) for i in range(1, 2 * STEPS + 1)]  # two groups
    assert grouped.seeds == [0, 1, 2] and [a.seed for a in grouped.animations] == [0, 1, 2]
    for g, a in zip(grouped.frames, alone.frames):
        assert np.abs(g.astype(int) - a).max() <= 1  # float rounding of batched convs only
    with pytest.raises(TypeError, match="unknown option"):
        pipe(image, stesp=3)


def test_bf16_autocast_runs_and_stays_close(models):
    image = _image()
    ref = LVMMPipeline.from_pretrained(models["package"])(image, seeds=[0], steps=STEPS)  # ok: local folder
    low = LVMMPipeline.from_pretrained(models["package"], torch_dtype=torch.bfloat16)(image, seeds=[0], steps=STEPS)
    assert low.frames[0].shape == ref.frames[0].shape and low.fields[0].dtype == torch.float32
    diff = np.abs(low.frames[0].astype(float) - ref.frames[0]).mean()
    assert 0 < diff < 8, diff  # bf16 differs, but a little (mean 0-255 levels)


def test_field_edits_mask_strength_and_drag(models):
    pipe = LVMMPipeline.from_pretrained(models["package"])
    image = _image(64, 64)
    mask = np.zeros((64, 64), np.float32)
    mask[:, :32] = 1
    masked = pipe(image, seeds=[0], steps=STEPS, mask=mask)
    frames, fields = masked.frames[0].astype(int), masked.fields[0]
    assert np.abs(frames[1:, :, 40:] - frames[:1, :, 40:]).max() == 0  # outside the brush: the photo itself
    assert np.abs(frames[1:, :, :24] - frames[:1, :, :24]).max() > 0  # inside: it moves
    assert fields[1:, :2, :, 10:].abs().max() == 0 and (fields[1:, 2, :, 10:] == 1).all()
    plain = pipe(image, seeds=[0], steps=STEPS).fields[0]
    double = pipe(image, seeds=[0], steps=STEPS, motion_strength=2.0).fields[0]
    torch.testing.assert_close(double[:, :2], 2 * plain[:, :2])
    # a drag carries the content at its start a fraction k/K of the way: at the last frame the field at
    # the end point looks back to the start point (backward warp)
    edit = FieldEdit(drags=[((16, 32), (48, 32))], image_size=(64, 64))
    zero = torch.zeros(1, 4, 3, 16, 16)
    out = edit(zero)
    assert (
        out[0, -1, 0, 8, 12] == pytest.approx(-1.0, abs=0.05) and out[0, -1, 1].abs().max() < 1e-6
    )  # dx = -(32 px) = -1.0 units
    for bad, message in (
        (dict(drags=[((0, 0), (99, 0))]), "leaves"),
        (dict(mask=np.zeros((64, 64))), "empty"),
        (dict(mask=np.ones((10, 10))), "photo is 64x64"),
        (dict(strength=-1), "strength"),
    ):
        with pytest.raises(AnimationError, match=message):
            FieldEdit(image_size=(64, 64), **bad)


def test_animate_tool_takes_a_package(models, tmp_path):
    from lvmm.cli.animate import main
    from lvmm.media import read_video, write_image

    photo = write_image(tmp_path / "photo.png", _image(64, 80, 1))
    rows = main(
        [
            "--model",
            str(models["package"]),
            "--image",
            str(photo),
            "--seeds",
            "0-2",
            "--batch-size",
            "2",
            "--steps",
            str(STEPS),
            "--chunk-size",
            "2",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert [r["seed"] for r in rows] == [0, 1, 2]
    frames, _ = read_video(tmp_path / "out" / "photo_seed2.mp4")
    assert frames.shape == (5, 64, 80, 3)
    with pytest.raises(SystemExit, match="config.json: missing"):
        main(["--model", str(tmp_path), "--image", str(photo), "--out", str(tmp_path / "x")])


def test_imagebind_embeds_each_input_once_per_call(models):
    pipe = LVMMPipeline.from_pretrained(models["package"])
    inner = pipe.animator.encoder.encoder  # the ImageBindEncoder behind the offloading wrapper
    before = dict(inner.num_computed)
    pipe(_image(), prompt="the leaves sway", seeds=[0, 1, 2], batch_size=1, steps=2)
    assert inner.num_computed["vision"] - before["vision"] == 1 and inner.num_computed["text"] - before["text"] == 1
    assert next(inner.model.parameters()).device.type == "cpu"


@pytest.mark.gpu
def test_gpu_defaults_to_bf16_and_keeps_imagebind_off_the_gpu(models):
    pipe = LVMMPipeline.from_pretrained(models["package"], device="cuda")
    assert pipe.torch_dtype == torch.bfloat16
    out = pipe(_image(), prompt="the leaves sway", seeds=[0, 1], steps=STEPS, batch_size=1)
    assert out.frames[0].shape == (5, 64, 80, 3) and out.fields[0].dtype == torch.float32
    assert next(pipe.animator.encoder.encoder.model.parameters()).device.type == "cpu"
    assert next(pipe.animator.unet.parameters()).device.type == "cuda"
