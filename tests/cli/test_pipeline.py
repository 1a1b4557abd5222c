"""tools/encode_motion.py and tools/animate.py end to end on tiny checkpoints."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lvmm import controls
from lvmm.animation import AnimationError, AnimationOptions, Animator, interpolate_fields
from lvmm.datasets.latent_encoding import iter_tar_samples, read_manifests
from lvmm.motion import MotionModel
from tests.helpers.pipeline import ROOT, make_video_shards, stage_one_checkpoint, stage_two_checkpoint


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    shards = make_video_shards(root / "shards", clips=6, per_shard=3)
    s1 = stage_one_checkpoint(root / "stage1.safetensors")
    s2 = stage_two_checkpoint(root / "stage2.safetensors", s1)
    return {"root": root, "shards": shards, "stage1": s1, "stage2": s2}


def _latents(folder):
    out = {}
    for shard in sorted(folder.glob("latent-*.tar")):
        for key, s in iter_tar_samples(str(shard)):
            out[key] = {
                "motion": np.load(io.BytesIO(s["motion.npy"]), allow_pickle=False),
                "json": json.loads(s["json"]),
                "shard": shard.name,
                "has_txt": "txt_emb.npy" in s,
                "aud_emb": np.load(io.BytesIO(s["aud_emb.npy"]), allow_pickle=False) if "aud_emb.npy" in s else None,
            }
    return out


def _direct(corpus):
    """Stage one's own outputs for every clip of the corpus: z, and the last frame's re-render error."""
    from lvmm.datasets.latent_encoding import VideoClipBatches

    motion = MotionModel.from_checkpoint(corpus["stage1"])
    out = {}
    with torch.no_grad():
        for batch in VideoClipBatches([str(s) for s in corpus["shards"]], num_frames=9, stride=4, rank=0, world_size=1):
            if not batch["keys"]:
                continue
            z = motion.encode_clip(batch["frames"])
            last = motion.render(batch["frames"][:, 0], motion.decode(z[:, -1:]))[:, 0]
            mse = ((last.clamp(0, 1) - batch["frames"][:, -1]) * 255).pow(2).flatten(1).mean(1)
            for i, key in enumerate(batch["keys"]):
                out[key] = {"z": z[i], "mse": float(mse[i])}
    return motion, out


def _check_audio_embeddings(corpus, got):
    """Every procedural clip has its soundtrack's ImageBind embedding, which differs between families."""
    from lvmm.datasets.latent_encoding import iter_tar_samples as samples_of
    from lvmm.datasets.readers import decode
    from lvmm.imagebind import ImageBindEncoder

    sounds = {}
    for shard in corpus["shards"]:
        for key, raw in samples_of(str(shard)):
            sample = decode(dict(raw, __key__=key))
            sounds[key] = (sample.audio(), sample.meta["family"])
    encoder = ImageBindEncoder(config="tiny", device="cpu")
    by_family = {}
    for rec in got.values():
        emb = rec["aud_emb"]
        assert emb is not None and emb.dtype == np.float32 and emb.shape == (32,) and rec["json"]["has_audio"]
        wave, family = sounds[rec["json"]["source_key"]]
        direct = encoder.embed_audio([(wave, 16000)])[0].numpy()  # the whole 9-frame clip is the sub-clip
        np.testing.assert_allclose(emb, direct, rtol=1e-4, atol=1e-4)
        by_family.setdefault(family, []).append(emb / np.linalg.norm(emb))
    assert len(by_family) >= 2
    means = [np.mean(v, 0) for v in by_family.values()]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1 :]) > 1e-2


def test_encode_motion_matches_stage_one_and_resumes(corpus, tmp_path):
    from lvmm.cli.encode_motion import main

    motion, direct = _direct(corpus)
    out = tmp_path / "latents"
    summary = main(
        [
            "--ckpt",
            str(corpus["stage1"]),
            "--shards",
            *map(str, corpus["shards"]),
            "--out",
            str(out),
            "--threshold",
            "1e9",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
        ]
    )
    got = _latents(out)
    assert set(got) == set(direct) and summary["kept"] == len(direct) and summary["dropped"] == 0
    for key, rec in got.items():
        assert rec["motion"].dtype == np.float16 and rec["motion"].shape == (9, 4, 8, 8)
        with torch.no_grad():
            from_shard = motion.decode(torch.from_numpy(rec["motion"].astype(np.float32)))
            from_model = motion.decode(direct[key]["z"])
        torch.testing.assert_close(from_shard, from_model, atol=2e-3, rtol=1e-2)  # float16 storage
        assert rec["json"]["caption"] and rec["has_txt"]
        # each frame's motion amount, so that stage two need not decode the latents to condition on it
        z = torch.from_numpy(rec["motion"].astype(np.float32))[None]
        with torch.no_grad():
            amount = controls.motion_amount(motion.decode_motion(z[:, 1:], z[:, 0]))
        assert len(rec["json"]["frame_amounts"]) == 8
        assert np.mean(rec["json"]["frame_amounts"]) == pytest.approx(float(amount), rel=1e-2, abs=1e-3)
    _check_audio_embeddings(corpus, got)
    # a rerun finds every input shard finished and changes nothing
    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    again = main(
        [
            "--ckpt",
            str(corpus["stage1"]),
            "--shards",
            *map(str, corpus["shards"]),
            "--out",
            str(out),
            "--threshold",
            "1e9",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
        ]
    )
    assert again == summary and before == {p.name: p.read_bytes() for p in out.glob("*.tar")}
    # resuming with other settings is refused, naming what differs
    with pytest.raises(SystemExit, match="threshold"):
        main(
            [
                "--ckpt",
                str(corpus["stage1"]),
                "--shards",
                *map(str, corpus["shards"]),
                "--out",
                str(out),
                "--threshold",
                "5",
            ]
        )


def test_threshold_drops_exactly_the_clips_above_it(corpus, tmp_path):
    from lvmm.cli.encode_motion import main

    _, direct = _direct(corpus)
    errors = sorted(v["mse"] for v in direct.values())
    threshold = (errors[len(errors) // 2 - 1] + errors[len(errors) // 2]) / 2
    out = tmp_path / "latents"
    summary = main(
        [
            "--ckpt",
            str(corpus["stage1"]),
            "--shards",
            *map(str, corpus["shards"]),
            "--out",
            str(out),
            "--threshold",
            str(threshold),
            "--accelerator",
            "cpu",
            "--devices",
            "1",
        ]
    )
    expected = {k for k, v in direct.items() if v["mse"] <= threshold}
    assert set(_latents(out)) == expected
    assert summary["dropped"] == len(direct) - len(expected) > 0


def test_two_rank_ddp_encoding_covers_every_clip_once(corpus, tmp_path):
    out = tmp_path / "latents"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "encode_motion.py"),
        "--ckpt",
        str(corpus["stage1"]),
        "--shards",
        *map(str, corpus["shards"]),
        "--out",
        str(out),
        "--threshold",
        "1e9",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_manifests(out)
    assert sorted(r["rank"] for r in rows) == [0, 1]  # each rank wrote its own shard
    assert sorted(r["input"] for r in rows) == sorted(p.name for p in corpus["shards"])
    _, direct = _direct(corpus)
    keys = [k for p in out.glob("latent-*.tar") for k, _ in iter_tar_samples(str(p))]
    assert sorted(keys) == sorted(direct)  # every clip once


# --- animation -----------------------------------------------------------------------------------


def test_slow_motion_frame_counts():
    fields = torch.randn(2, 5, 3, 4, 4)
    assert interpolate_fields(fields, 1).shape[1] == 5
    assert interpolate_fields(fields, 3).shape[1] == (5 - 1) * 3 + 1
    assert interpolate_fields(fields, 3, wrap=True).shape[1] == 5 * 3
    torch.testing.assert_close(interpolate_fields(fields, 2)[:, 1], (fields[:, 0] + fields[:, 1]) / 2)


def test_seed_result_does_not_depend_on_batch(corpus):
    animator = Animator.from_checkpoints(corpus["stage2"])
    image = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    options = AnimationOptions(steps=3, sampler="ddpm")  # stochastic steps too: each seed has its own generator
    alone = animator.animate(image, [7], options)[0]
    batch = animator.animate(image, [3, 7], options)
    assert batch[1].seed == 7
    # equal up to float rounding of batched convolutions (one uint8 level at most)
    torch.testing.assert_close(alone.fields, batch[1].fields, atol=1e-4, rtol=1e-4)
    assert np.abs(alone.frames.astype(int) - batch[1].frames).max() <= 1
    assert np.abs(batch[0].frames.astype(int) - batch[1].frames).max() > 10
    assert alone.frames.shape == (4 + 1, 64, 80, 3)  # I_0 and K = 4 generated frames, input size restored


def test_animate_tool_end_to_end(corpus, tmp_path):
    from lvmm.cli.animate import main
    from lvmm.media import read_video, write_image

    photo = tmp_path / "photo.png"
    write_image(photo, (np.random.default_rng(1).random((70, 90, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    rows = main(
        [
            "--ckpt",
            str(corpus["stage2"]),
            "--image",
            str(photo),
            "--seeds",
            "0-1",
            "--steps",
            "3",
            "--format",
            "mp4",
            "gif",
            "--out",
            str(out),
            "--prompt",
            "the scene sways",
            "--save-flow",
        ]
    )
    assert len(rows) == 2 and all(r["frames"] == 5 for r in rows)
    frames, fps = read_video(out / "photo_seed0.mp4")
    assert frames.shape == (5, 70, 90, 3) and fps == pytest.approx(8)
    assert (out / "photo_seed1.gif").exists() and np.load(out / "photo_seed0_flow.npy").shape[1] == 3
    loop = main(
        [
            "--ckpt",
            str(corpus["stage2"]),
            "--image",
            str(photo),
            "--seeds",
            "0",
            "--steps",
            "3",
            "--out",
            str(out / "loop"),
            "--loop-guidance",
            "100",
            "--slow-motion",
            "2",
            "--fit",
            "pad",
        ]
    )
    # a loop plays frames 1..K-1 (frame K would repeat frame 1), slow motion interpolating across the wrap too
    assert (
        loop[0]["loop"]
        and loop[0]["frames"] == (4 - 1) * 2
        and 0 < loop[0]["wrap_field"]
        and loop[0]["size"] == [70, 90]
    )


def test_animate_errors_are_clear(corpus, tmp_path):
    from lvmm.cli.animate import main

    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    with pytest.raises(SystemExit, match="notes.png"):
        main(["--ckpt", str(corpus["stage2"]), "--image", str(not_image), "--steps", "2", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="stage-two checkpoint"):
        main(["--ckpt", str(corpus["stage1"]), "--image", str(not_image), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="not found"):
        main(["--ckpt", str(tmp_path / "missing.ckpt"), "--image", str(not_image), "--out", str(tmp_path)])
    animator = Animator.from_checkpoints(corpus["stage2"])
    with pytest.raises(AnimationError, match="too small"):
        animator.animate(np.zeros((16, 16, 3), np.uint8), [0], AnimationOptions(steps=2))
