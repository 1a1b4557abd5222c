"""Shard writing: round trips, bad inputs, resuming after a kill, partitions, recipes (tools/make_shards.py)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lvmm.datasets.readers import decode
from lvmm.datasets.recipes import (
    CelebVHQRecipe,
    FolderRecipe,
    MHADRecipe,
    MUGRecipe,
    NATOPSRecipe,
    ProceduralRecipe,
    WebVidRecipe,
    make_recipe,
)
from lvmm.datasets.writer import ShardSettings, partition_sources, sample_key, write_shards
from lvmm.media import encode_mp4, read_video
from tests.helpers import ROOT as REPO
from tests.helpers.shards import load_samples, make_shards_main, manifest_lines, shards_of
from tests.helpers.video import moving_pattern, write_bad_files, write_video

MP4_TOLERANCE = 8.0  # mean absolute error (0-255) of an H.264 round trip of a colourful 32x48 clip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Two mp4s (one with a caption), an avi, a gif and a PNG frame folder, 64x64."""
    root = tmp_path_factory.mktemp("corpus")
    originals = {
        "a.mp4": moving_pattern(20, seed=1),
        "sub/b.mp4": moving_pattern(17, seed=2),
        "c.avi": moving_pattern(16, seed=3),
        "d.gif": moving_pattern(12, seed=4),
        "frames/e": moving_pattern(16, seed=5),
    }
    for rel, frames in originals.items():
        write_video(root / rel, frames, fps=8.0)
    (root / "a.txt").write_text("a pattern drifts to the right\n")
    return root, originals


def run(sources, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("log", lambda msg: None)
    return write_shards(sources, out, "t", **kw)


def test_round_trip_npy_is_exact_and_mp4_within_codec_tolerance(corpus, tmp_path):
    root, originals = corpus
    sources = FolderRecipe(str(root), source_fps=8.0).sources()
    assert sorted(s.rel for s in sources) == sorted(originals)

    settings = ShardSettings(size=(64, 64), clip_len=8, stride=4, fmt="npy")
    summary = run(sources, tmp_path / "npy", settings=settings, max_samples=5)
    assert summary.ok and not summary.failed and len(summary.shards) > 1
    samples = load_samples(shards_of(tmp_path / "npy", "t"))
    # clips every 4 frames: 20 -> 4, 17 -> 3, 16 -> 3, 12 -> 2, 16 -> 3
    assert len(samples) == 15 == summary.clips
    for rel, frames in originals.items():
        decoded = frames if rel.startswith("frames") else read_video(root / rel)[0]
        for start in range(0, len(frames) - 7, 4):
            s = decode(samples[sample_key(rel, start)])
            assert s.meta["source"] == rel and s.meta["frame_indices"] == list(range(start, start + 8))
            assert (s.meta["width"], s.meta["height"]) == (64, 64)
            assert s.meta["fps"] == pytest.approx(8.0, rel=0.05)  # GIF delays are whole centiseconds
            np.testing.assert_array_equal(s.frames(None), decoded[start : start + 8])
    caption = decode(samples[sample_key("a.mp4", 0)])
    assert caption.caption == "a pattern drifts to the right" and caption.raw["txt"] == b"a pattern drifts to the right"
    assert "txt" not in samples[sample_key("c.avi", 0)]

    # mp4 output, fps halved (every other frame), a non-square size with centre crop
    settings = ShardSettings(size=(32, 48), clip_len=4, stride=4, fps=4.0, fmt="mp4")
    summary = run([s for s in sources if s.rel == "frames/e"], tmp_path / "mp4", settings=settings)
    samples = load_samples(shards_of(tmp_path / "mp4", "t"))
    assert len(samples) == 2
    s = decode(samples[sample_key("frames/e", 0)])
    assert s.meta["frame_indices"] == [0, 2, 4, 6] and s.meta["fps"] == 4.0
    got = s.frames(None)
    assert got.shape == (4, 32, 48, 3)
    from PIL import Image

    box = (0, (64 - 64 * 32 / 48) / 2, 64, (64 + 64 * 32 / 48) / 2)  # the centred 64 x 42.7 box of the 3:2 output
    want = np.stack(
        [
            np.asarray(Image.fromarray(originals["frames/e"][i]).resize((48, 32), Image.Resampling.BICUBIC, box=box))
            for i in (0, 2, 4, 6)
        ]
    )
    # the codec is the only difference: the same frames through encode_mp4 decode to the same pixels,
    # and the loss against the uncompressed frames stays within H.264's (4:2:0 chroma at 32x48 dominates)
    np.testing.assert_allclose(got, read_video(encode_mp4(want, 4.0))[0], atol=1)
    assert np.abs(got.astype(float) - want).mean() < MP4_TOLERANCE


def test_bad_files_are_reported_skipped_and_counted(corpus, tmp_path, capsys):
    main = make_shards_main()

    root = tmp_path / "in"
    write_video(root / "good1.mp4", moving_pattern(16, seed=7))
    write_video(root / "good2.mp4", moving_pattern(16, seed=8))
    bad = write_bad_files(root, moving_pattern(16, seed=9))
    rc = main(
        [
            "--input",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--name",
            "t",
            "--clip-len",
            "8",
            "--size",
            "64",
            "--no-progress",
        ]
    )
    report = capsys.readouterr().out
    assert rc == 0
    assert "3 failed" in report
    for path in bad:
        assert f"FAILED {path.name}" in report
    assert "empty file" in report
    samples = load_samples(shards_of(tmp_path / "out", "t"))
    assert {decode(s).meta["source"] for s in samples.values()} == {"good1.mp4", "good2.mp4"}
    failed = {line["failed"] for line in manifest_lines(tmp_path / "out", "t") if "failed" in line}
    assert failed == {p.name for p in bad}

    # nothing readable: non-zero exit
    only_bad = tmp_path / "only_bad"
    write_bad_files(only_bad, moving_pattern(16, seed=9))
    assert main(["--input", str(only_bad), "--out", str(tmp_path / "out2"), "--no-progress"]) == 1
    assert main(["--input", str(only_bad), "--out", str(tmp_path / "out2"), "--no-progress"]) == 1  # and on a rerun
    assert "failed in an earlier run" in capsys.readouterr().out


KILL_SCRIPT = """
import os, sys
from lvmm.datasets.recipes import FolderRecipe
from lvmm.datasets.writer import ShardSettings, write_shards
settings = ShardSettings(size=(32, 32), clip_len=8, stride=4, fmt="npy")
write_shards(FolderRecipe({root!r}, source_fps=8.0).sources(), {out!r}, "t", settings,
             max_samples=4, progress=False, on_shard=lambda path: os._exit(9))
"""


def test_kill_and_rerun_loses_nothing_and_repeats_nothing(corpus, tmp_path):
    root, originals = corpus
    sources = FolderRecipe(str(root), source_fps=8.0).sources()
    settings = ShardSettings(size=(32, 32), clip_len=8, stride=4, fmt="npy")
    reference = run(sources, tmp_path / "ref", settings=settings, max_samples=4)

    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(REPO / "tests"), root=str(root), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr  # killed right after its first shard was committed
    assert [p.name for p in shards_of(out, "t")] == ["t-000000.tar"]
    # what a kill at a worse moment leaves: a half-written temporary and a renamed but unlisted shard
    # (announced in the manifest); a file the writer did not write is left alone
    (out / ".t-000001.tar.tmp1234").write_bytes(b"half a tar")
    (out / "t-000001.tar").write_bytes((out / "t-000000.tar").read_bytes())
    with open(out / "t.manifest.jsonl", "a") as f:
        f.write(json.dumps({"writing": "t-000001.tar"}) + "\n")
    (out / "t-000099.tar").write_bytes(b"someone else's file")

    resumed = run(sources, out, settings=settings, max_samples=4)
    assert resumed.already_done == len(manifest_lines(out, "t")[0]["inputs"]) >= 1
    assert resumed.already_done + resumed.read == len(sources)
    assert not list(out.glob(".*tmp*")) and (out / "t-000099.tar").read_bytes() == b"someone else's file"
    (out / "t-000099.tar").unlink()
    assert [p.name for p in shards_of(out, "t")] == [p.name for p in shards_of(tmp_path / "ref", "t")]
    for a, b in zip(shards_of(out, "t"), shards_of(tmp_path / "ref", "t")):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs from an uninterrupted run"
    inputs = [rel for line in manifest_lines(out, "t") for rel in line.get("inputs", [])]
    assert sorted(inputs) == sorted(originals)  # every input exactly once
    assert set(load_samples(shards_of(out, "t"))) == set(load_samples(shards_of(tmp_path / "ref", "t")))
    assert reference.clips == resumed.clips + manifest_lines(out, "t")[0]["samples"]

    again = run(sources, out, settings=settings, max_samples=4)  # a third run has nothing left to do
    assert again.read == 0 and again.already_done == len(sources) and again.ok and not again.shards
    with pytest.raises(ValueError, match="other settings"):
        run(sources, out, settings=ShardSettings(size=(64, 64), clip_len=8, fmt="npy"))


def test_two_shard_index_runs_cover_the_corpus_once(corpus, tmp_path):
    root, originals = corpus
    sources = FolderRecipe(str(root), source_fps=8.0).sources()
    settings = ShardSettings(size=(32, 32), clip_len=8, stride=8, fmt="npy")
    parts = [partition_sources(sources, i, 2) for i in range(2)]
    assert parts[0] and parts[1], "the hash partition should give both machines work here"
    for i in range(2):
        run(sources, tmp_path, settings=settings, partition=i, num_partitions=2)
    keys = [set(load_samples(shards_of(tmp_path, f"t-{i}of2"))) for i in range(2)]
    assert not keys[0] & keys[1]
    expected = {sample_key(rel, s) for rel, f in originals.items() for s in range(0, len(f) - 7, 8)}
    assert keys[0] | keys[1] == expected
    with pytest.raises(ValueError, match="outside"):
        partition_sources(sources, 2, 2)


# ----------------------------------------------------------------------------------------------
# recipes on fake trees with the real layouts


def _frames_dir(path: Path, n: int = 4, h: int = 24, w: int = 32, seed: int = 0) -> None:
    write_video(path, moving_pattern(n, h, w, seed=seed))


def test_mug_recipe(tmp_path):
    _frames_dir(tmp_path / "008" / "happiness" / "take000")  # a training subject
    _frames_dir(tmp_path / "001" / "anger" / "take001")  # a test subject
    _frames_dir(tmp_path / "002" / "session0" / "surprise" / "take000")  # test, with a session level
    _frames_dir(tmp_path / "999" / "fear" / "take000")  # in neither split
    (tmp_path / "008" / "happiness" / "take000" / "take000.avi").write_bytes(b"")  # LFDM ignores the avi too
    every = {s.rel: s for s in MUGRecipe(str(tmp_path)).sources()}
    assert set(every) == {
        "008/happiness/take000",
        "001/anger/take001",
        "002/session0/surprise/take000",
        "999/fear/take000",
    }
    s = every["002/session0/surprise/take000"]
    assert s.kind == "frames" and s.fps == 19.0
    assert s.labels == {
        "subject": "002",
        "class": 6,
        "class_name": "surprise",
        "caption": "a face showing surprise",
        "split": "test",
    }
    assert every["999/fear/take000"].labels["split"] is None
    assert [s.rel for s in MUGRecipe(str(tmp_path), split="train").sources()] == ["008/happiness/take000"]
    assert len(MUGRecipe(str(tmp_path), split="test").sources()) == 2
    assert len(MUGRecipe.train_subjects) == len(MUGRecipe.test_subjects) == 26


def test_mhad_recipe_crops_the_background_and_pads(tmp_path):
    # raw RGB videos (a 64x48 stand-in for 640x480: the crop is a fraction) and LFDM's cropped frame folders
    frames = np.zeros((6, 48, 64, 3), np.uint8)
    frames[:, :, 16:48] = 200  # the person's column, inside the crop box x 156..492 of 640
    write_video(tmp_path / "RGB" / "a1_s1_t1_color.avi", frames, fps=30.0)
    write_video(tmp_path / "RGB" / "a27_s4_t2_color.avi", frames, fps=30.0)
    (tmp_path / "Depth").mkdir()
    (tmp_path / "Depth" / "a1_s1_t1_depth.mat").write_bytes(b"")
    _frames_dir(tmp_path / "crop_image" / "a3_s2_t1")
    every = {s.rel: s for s in MHADRecipe(str(tmp_path)).sources()}
    assert set(every) == {"RGB/a1_s1_t1_color.avi", "RGB/a27_s4_t2_color.avi", "crop_image/a3_s2_t1"}
    a1 = every["RGB/a1_s1_t1_color.avi"]
    assert a1.labels["class"] == 0 and a1.labels["caption"] == "right arm swipe to the left"
    assert a1.labels["subject"] == 1 and a1.labels["split"] == "train" and a1.labels["trial"] == 1
    assert every["RGB/a27_s4_t2_color.avi"].labels["split"] == "test" and a1.crop is not None
    assert every["crop_image/a3_s2_t1"].crop is None
    assert [s.rel for s in MHADRecipe(str(tmp_path), split="test").sources()] == ["RGB/a27_s4_t2_color.avi"]

    recipe = make_recipe("mhad", str(tmp_path), split="train")
    settings = ShardSettings(size=(32, 32), fit=recipe.fit, clip_len=recipe.clip_len, fmt="npy")
    summary = run(recipe.sources(), tmp_path / "out", settings=settings)
    assert summary.ok and summary.clips == 2
    samples = {decode(s).meta["source"]: decode(s) for s in load_samples(shards_of(tmp_path / "out", "t")).values()}
    clip = samples["RGB/a1_s1_t1_color.avi"].frames(None)
    assert clip.shape == (6, 32, 32, 3)  # a whole video per sample
    # cropped to the column (336 x 480 -> 22.4 x 32 of 32): bright inside, black pad bars outside
    assert clip[:, :, 8:24].mean() > 150 and clip[:, :, :4].max() < 30 and clip[:, :, -4:].max() < 30


def test_natops_recipe(tmp_path):
    _frames_dir(tmp_path / "split_img_data" / "g01s03p01")  # train subject 3
    _frames_dir(tmp_path / "split_img_data" / "g24s02p20")  # test subject 2
    write_video(tmp_path / "data" / "gesture02" / "g02s05.avi", moving_pattern(4, 24, 32), fps=20.0)
    (tmp_path / "data" / "segmentation.txt").write_text("// Subject 1\n")
    every = {s.rel: s for s in NATOPSRecipe(str(tmp_path)).sources()}
    assert set(every) == {"split_img_data/g01s03p01", "split_img_data/g24s02p20", "data/gesture02/g02s05.avi"}
    s = every["split_img_data/g24s02p20"]
    assert s.labels["class"] == 23 and s.labels["caption"] == "cut engine" and s.labels["repetition"] == 20
    assert s.labels["split"] == "test" and s.crop is not None and s.fps == 20.0
    assert every["split_img_data/g01s03p01"].labels["split"] == "train"
    assert len(NATOPSRecipe.train_subjects) == len(NATOPSRecipe.test_subjects) == 10


def test_celebvhq_webvid_and_folder_captions(tmp_path):
    write_video(tmp_path / "celeb" / "processed" / "abc_0.mp4", moving_pattern(8), fps=25.0)
    info = {
        "meta_info": {"appearance_mapping": ["blurry", "male"], "action_mapping": ["blink", "talk", "smile"]},
        "clips": {
            "abc_0": {
                "ytb_id": "abc",
                "attributes": {
                    "appearance": [0, 1],
                    "action": [0, 1, 1],
                    "emotion": {"sep_flag": False, "labels": "happy"},
                },
            },
            "zzz_1": {
                "ytb_id": "zzz",
                "attributes": {
                    "appearance": [0, 0],
                    "action": [0, 0, 0],
                    "emotion": {"sep_flag": False, "labels": "neutral"},
                },
            },
        },
    }
    (tmp_path / "celeb" / "celebvhq_info.json").write_text(json.dumps(info))
    sources = {s.rel: s for s in CelebVHQRecipe(str(tmp_path / "celeb")).sources()}
    assert set(sources) == {"processed/abc_0.mp4", "zzz_1.mp4"}  # a listed clip without a file is kept, to be reported
    abc = sources["processed/abc_0.mp4"].labels
    assert abc["caption"] == "a person talk, smile, looks happy" and abc["appearance"] == ["male"]

    rows = [
        {
            "videoid": "1001",
            "name": "waves roll onto a beach",
            "page_dir": "001_050",
            "contentUrl": "u",
            "duration": "PT00H00M08S",
        },
        {"videoid": "1002", "name": "a cat", "page_dir": "001_050", "contentUrl": "u", "duration": "PT00H00M05S"},
    ]
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_video(tmp_path / "webvid" / "001_050" / "1001.mp4", moving_pattern(8), fps=25.0)
    web = {
        s.labels["videoid"]: s for s in WebVidRecipe(str(tmp_path / "webvid"), str(tmp_path / "results.csv")).sources()
    }
    assert web["1001"].labels["caption"] == "waves roll onto a beach" and os.path.isfile(web["1001"].path)
    assert not os.path.exists(web["1002"].path)  # missing: the run reports it
    summary = run(list(web.values()), tmp_path / "out", settings=ShardSettings(size=(32, 32), clip_len=4, fmt="npy"))
    assert summary.read == 1 and "file not found" in summary.failed[0][1]

    folder = FolderRecipe(str(tmp_path / "webvid"), captions_csv=str(tmp_path / "results.csv")).sources()
    assert [s.labels.get("caption") for s in folder] == ["waves roll onto a beach"]


def test_procedural_recipe_stores_true_fields(tmp_path):
    from lvmm.datasets.procedural import FAMILIES, make_clip

    recipe = ProceduralRecipe(num_clips=3, seed=5)
    summary = run(recipe.sources(), tmp_path, settings=ShardSettings(size=(32, 32), clip_len=5, fmt="npy"))
    assert summary.clips == 3
    samples = [decode(s) for s in load_samples(shards_of(tmp_path, "t")).values()]
    for s in samples:
        clip = make_clip(5, s.meta["index"], height=32, width=32, num_frames=5)
        np.testing.assert_array_equal(s.frames(None), clip.frames)
        assert s.raw["flow.npy"] and s.flows().shape == (5, 2, 32, 32)
        assert np.load(io.BytesIO(s.raw["flow.npy"]), allow_pickle=False).dtype == np.float16
        np.testing.assert_allclose(s.flows(), clip.flows, atol=1e-3)
        assert s.meta["family"] == FAMILIES[s.label] and s.caption == clip.caption


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    main = make_shards_main()

    assert main(["--recipe", "mug", "--out", str(tmp_path)]) == 2
    assert main(["--input", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
