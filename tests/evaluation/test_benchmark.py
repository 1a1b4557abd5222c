"""tools/evaluate.py end to end on tiny shards, with seeded random feature networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import webdataset as wds
import yaml

from lvmm.cli import evaluate
from lvmm.evaluation.frame_metrics import PSNR_MAX_DB
from lvmm.media import encode_mp4
from tests.helpers.metrics import make_weight_files, smooth_videos

SIZE, FRAMES = 32, 6
FAST = [
    "--size",
    f"{SIZE}x{SIZE}",
    "--frames",
    str(FRAMES),
    "--i3d-size",
    "32",
    "--inception-size",
    "75",
    "--device",
    "cpu",
]
TEST_KEYS = ["s01_anger_000", "s01_happy_000", "s02_anger_000", "s02_happy_000"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Reference shards (4 test clips + 1 train clip), a generated folder identical to the test clips, weights."""
    root = tmp_path_factory.mktemp("evaluate")
    videos = smooth_videos(5, FRAMES, SIZE, seed=10)
    clips = {key: encode_mp4(v, fps=25) for key, v in zip(TEST_KEYS + ["s03_anger_000"], videos)}
    shard = root / "ref-000000.tar"
    with wds.TarWriter(str(shard)) as sink:
        for key, mp4 in clips.items():
            split = "train" if key.startswith("s03") else "test"
            meta = {
                "source": f"{key}.avi",
                "fps": 25,
                "width": SIZE,
                "height": SIZE,
                "subject": key[:3],
                "split": split,
            }
            sink.write({"__key__": key, "mp4": mp4, "json": json.dumps(meta).encode()})
    generated = root / "generated"
    generated.mkdir()
    for key in TEST_KEYS:  # the same bytes decode to the same frames: a perfect generator
        (generated / f"{key}_seed0.mp4").write_bytes(clips[key])
    return {
        "root": root,
        "shard": str(shard),
        "generated": generated,
        "weights": make_weight_files(root),
        "videos": videos,
    }


def weight_flags(weights, names=("i3d", "lpips_backbone", "lpips_linear")):
    return [arg for n in names for arg in (f"--{n.replace('_', '-')}", weights[n])]


def run(argv, capsys):
    code = evaluate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_identical_sets_and_report(setup, capsys, tmp_path):
    code, out, err = run(
        [
            "--generated",
            setup["generated"],
            "--reference",
            setup["shard"],
            "--protocol",
            "mug",
            *FAST,
            *weight_flags(setup["weights"]),
            "--out",
            tmp_path,
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads((tmp_path / "metrics.json").read_text())
    m = report["metrics"]
    assert set(m) - {"fvd_class", "fvd_subject"} == {
        "fvd",
        "lpips",
        "psnr",
        "ssim",
    }  # conditional FVD where the json says
    assert abs(m["fvd"]) < 1e-3 and m["lpips"] < 1e-6 and m["psnr"] == PSNR_MAX_DB and m["ssim"] > 0.999
    assert report["reference"]["videos"] == 4 and report["reference"]["skipped_by_split"] == 1  # the train clip
    assert report["generated"]["seeds"] == [0] and report["generated"]["seeds_from"] == "file names"
    assert report["generated"]["paired_videos"] == 4
    assert set(report["weights"]) == {"i3d", "lpips_backbone", "lpips_linear"}
    # The protocol is printed beside the numbers, and the markdown table carries it too.
    assert "protocol: mug" in out and "4 videos of 6 frames at 32x32" in out and "seeds 0 (from file names)" in out
    table = (tmp_path / "metrics.md").read_text()
    assert (
        "| Protocol | Generated | Reference | Frames | Resolution | Seeds | FVD |" in table
        and "| mug | 4 | 4 | 6 | 32x32 | 0 |" in table
    )


def test_shifted_set_scores_worse(setup, capsys, tmp_path):
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for key, video in zip(TEST_KEYS, setup["videos"]):
        np.save(shifted / f"{key}.npy", np.clip(video.astype(int) + 50, 0, 255).astype(np.uint8))
    code, out, err = run(
        [
            "--generated",
            shifted,
            "--reference",
            setup["shard"],
            "--protocol",
            "mug",
            *FAST,
            *weight_flags(setup["weights"], ("i3d", "inception")),
            "--metrics",
            "fvd,fid,psnr",
            "--seeds",
            "0-3",
            "--out",
            tmp_path / "out",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    m = report["metrics"]
    assert m["fvd"] > 1e-2 and m["fid"] > 1e-2 and m["psnr"] < 30
    assert report["generated"]["seeds"] == [0, 1, 2, 3] and "seeds 0-3 (from options)" in out
    assert report["features"]["fid"]["frames"] == [4 * FRAMES, 4 * FRAMES]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(size=24), "is 24x24, protocol 'mug' needs 32x32"),
        (dict(frames=FRAMES - 2), "has 4 frames, protocol 'mug' needs 6"),
    ],
)
def test_wrong_size_or_length_is_refused(setup, capsys, tmp_path, bad, message):
    video = smooth_videos(1, bad.get("frames", FRAMES), bad.get("size", SIZE), seed=0)[0]
    for key in TEST_KEYS[:2]:
        np.save(tmp_path / f"{key}.npy", video)
    code, out, err = run(
        [
            "--generated",
            tmp_path,
            "--reference",
            setup["shard"],
            "--protocol",
            "mug",
            *FAST,
            *weight_flags(setup["weights"]),
        ],
        capsys,
    )
    assert code == 2 and message in err and "Traceback" not in err


def test_config_file_and_clear_errors(setup, capsys, tmp_path):
    config = {
        "evaluate": {
            "generated": str(setup["generated"]),
            "reference": [setup["shard"]],
            "protocol": "mug",
            "size": SIZE,
            "frames": FRAMES,
            "i3d_size": 32,
            "device": "cpu",
            "metrics": ["fvd", "ssim"],
            "weights": {"i3d": setup["weights"]["i3d"]},
            "out": str(tmp_path / "cfg"),
        },
        "sampler": {"steps": 50},
    }  # the rest of a generation config is ignored
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = run(["--config", path], capsys)
    assert code == 0, err
    assert set(json.loads((tmp_path / "cfg" / "metrics.json").read_text())["metrics"]) - {
        "fvd_class",
        "fvd_subject",
    } == {"fvd", "ssim"}

    code, _, err = run(["--config", path, "--i3d", tmp_path / "missing.pt"], capsys)
    assert code == 2 and "missing.pt: I3D (FVD) weights not found" in err
    code, _, err = run(["--config", path, "--metrics", "fid"], capsys)
    assert code == 2 and "FID needs weights: pass --inception" in err
    single = tmp_path / "single"
    single.mkdir()
    (single / f"{TEST_KEYS[0]}.mp4").write_bytes((setup["generated"] / f"{TEST_KEYS[0]}_seed0.mp4").read_bytes())
    code, _, err = run(["--config", path, "--generated", single], capsys)
    assert code == 2 and "FVD needs at least 2 generated videos" in err


def test_reference_without_split_needs_subjects(setup, capsys, tmp_path):
    shard = tmp_path / "nosplit-000000.tar"
    with wds.TarWriter(str(shard)) as sink:
        for key, video in zip(TEST_KEYS, setup["videos"]):
            sink.write({"__key__": key, "frames.npy": _npy(video), "json": json.dumps({"subject": key[:3]}).encode()})
    base = [
        "--generated",
        setup["generated"],
        "--reference",
        str(tmp_path / "nosplit-{000000..000000}.tar"),
        "--protocol",
        "mug",
        *FAST,
        "--metrics",
        "psnr",
    ]
    code, _, err = run(base, capsys)
    assert code == 2 and "no 'split' field" in err and "--test-subjects" in err
    code, out, err = run(base + ["--test-subjects", "s02"], capsys)
    assert code == 0, err
    assert "2 videos from 1 shard(s)" in out and "(2 skipped)" in out


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
