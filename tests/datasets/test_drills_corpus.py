"""Drill: a corpus of bad files beside good ones gives shards of exactly the good clips and names every bad file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lvmm.datasets.readers import decode
from lvmm.media import MediaError, check_frame_count, read_image, read_video
from tests.helpers.badfiles import png_header_only, write_bad, write_good
from tests.helpers.shards import load_samples, make_shards_main, manifest_lines, shards_of
from tests.helpers.video import moving_pattern, write_video

CLIP = 4


def test_bad_corpus_gives_exactly_the_good_clips_and_names_every_bad_file(tmp_path, capsys):
    root = tmp_path / "in"
    good = write_good(root)
    bad = write_bad(root)
    assert len(bad) >= 15
    rc = make_shards_main()(
        [
            "--input",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--name",
            "t",
            "--size",
            "32",
            "--clip-len",
            str(CLIP),
            "--format",
            "npy",
            "--source-fps",
            "8",
            "--no-progress",
        ]
    )
    report = capsys.readouterr().out
    assert rc == 0
    assert f"{len(good) + len(bad)} inputs" in report and f"{len(bad)} failed" in report
    failed_lines = {
        line.split(":", 1)[0].removeprefix("  FAILED "): line
        for line in report.splitlines()
        if line.startswith("  FAILED ")
    }
    assert set(failed_lines) == set(bad)
    for rel, reason in bad.items():
        assert reason in failed_lines[rel], failed_lines[rel]
    recorded = {line["failed"] for line in manifest_lines(tmp_path / "out", "t") if "failed" in line}
    assert recorded == set(bad)

    samples = load_samples(shards_of(tmp_path / "out", "t"))
    expected = {}
    for rel, frames in good.items():
        reference = frames if rel.endswith("grey16") else read_video(root / rel)[0]
        for start in range(0, len(reference) - CLIP + 1, CLIP):
            expected[(rel, start)] = reference[start : start + CLIP]
    got = {}
    for s in samples.values():
        d = decode(s)
        got[(d.meta["source"], d.meta["frame_indices"][0])] = d.frames(None)
    assert set(got) == set(expected)
    for k, frames in expected.items():
        np.testing.assert_array_equal(got[k], frames, err_msg=str(k))  # 16-bit greys scaled, not saturated
    assert (
        decode(samples[next(k for k, s in samples.items() if decode(s).meta["source"] == "good/a.mp4")]).caption
        == "a good caption"
    )


def test_corpus_index_files_with_bad_encoding_or_syntax_name_the_file(tmp_path, capsys):
    main = make_shards_main()
    write_video(tmp_path / "in" / "a.mp4", moving_pattern(4, 32, 32), fps=8.0)
    (tmp_path / "captions.csv").write_bytes(b"videoid,name\na,caf\xe9\n")
    assert (
        main(
            [
                "--input",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "o1"),
                "--csv",
                str(tmp_path / "captions.csv"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "captions.csv: not UTF-8" in capsys.readouterr().err
    (tmp_path / "in" / "celebvhq_info.json").write_text("{not json")
    assert (
        main(["--recipe", "celebvhq", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--no-progress"])
        == 2
    )
    assert "celebvhq_info.json: not a CelebV-HQ annotation file" in capsys.readouterr().err
    # one malformed entry is skipped and named; the good one is written
    (tmp_path / "in" / "celebvhq_info.json").write_text(
        json.dumps({"clips": {"a": {"attributes": {}}, "b": "garbage"}})
    )
    assert (
        main(
            [
                "--recipe",
                "celebvhq",
                "--input",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "o3"),
                "--size",
                "32",
                "--clip-len",
                "2",
                "--format",
                "npy",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "FAILED b.mp4" in out and "clip 'b': malformed annotation" in out and "1 read" in out


def test_images_are_read_at_their_bit_depth_and_within_a_pixel_limit(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[..., 0], np.clip(ramp / 257.0 + 0.5, 0, 255).astype(np.uint8))
    assert (img == 255).all(-1).mean() < 0.01
    png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(MediaError, match=r"bomb.png: image larger than the limit"):
        read_image(tmp_path / "bomb.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(MediaError, match=r"small.png: image of 30x20 pixels is larger than the limit"):
        read_image(tmp_path / "small.png", max_pixels=500)


def test_fewer_decoded_frames_than_declared_is_an_error():
    check_frame_count("x.mp4", 40, 40)
    check_frame_count("x.gif", 5, None)  # nothing declared: nothing to compare
    with pytest.raises(MediaError, match="x.mp4: truncated or corrupt video: decoded 4 of the 40 frames"):
        check_frame_count("x.mp4", 4, 40)
