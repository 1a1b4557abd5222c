"""The benchmark chain at a tiny size, each step reading the previous step's default outputs:
make_shards --recipe mug (a MUG-layout folder of procedural frames) -> stage one -> encode_motion ->
stage two -> generate -> evaluate (random I3D); the same on a NATOPS layout. Prints each step's time."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml

from lvmm.datasets.procedural import make_clip
from lvmm.media import read_video, write_image
from tests.helpers import ROOT
from tests.helpers.pipeline import TINY_IMAGEBIND_DIM

SIZE, VIDEO_FRAMES, CLIP = 64, 12, 8  # frames per source video, frames per clip (protocol length at tiny size)

# tiny networks and a two-step schedule over the benchmark configs; paths are never overridden
STAGE1 = {
    "model": {
        "init_args": {
            "flow": {
                "init_args": {
                    "num_regions": 4,
                    "region_width": 4,
                    "region_depth": 1,
                    "background_width": 4,
                    "widths": [4, 8, 8, 8],
                    "depth": 1,
                }
            },
            "vae": {"init_args": {"reduction": 2, "width": 8, "max_width": 16}},
            "renderer": {"init_args": {"width": 4, "num_res_blocks": 1, "kernel_size": 3}},
            "vae_start_step": 1,
            "lr_warmup_steps": 1,
            "pairs_per_clip": 2,
        }
    },
    "data": {"init_args": {"size": [SIZE, SIZE], "batch_size": 2, "num_workers": 0, "epoch_length": 2}},
    "trainer": {"max_steps": 2, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
}
STAGE2 = {
    "model": {
        "init_args": {
            "num_frames": CLIP - 1,
            "unet": {
                "init_args": {
                    "model_channels": 8,
                    "channel_mult": [1, 2, 2, 2],
                    "num_res_blocks": 1,
                    "head_dim": 8,
                    "cond_dim": TINY_IMAGEBIND_DIM,
                    "max_frames": CLIP,
                    "frame_features": 2,
                    "groups": 4,
                    "dropout": 0.0,
                }
            },
        }
    },
    "data": {"init_args": {"num_frames": CLIP - 1, "batch_size": 2, "num_workers": 0, "epoch_length": 2}},
    "trainer": {
        "max_steps": 2,
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
        "enable_progress_bar": False,
    },
}
TINY = ["--size", str(SIZE), "--frames", str(CLIP)]


def mug_layout(root: Path) -> None:
    """<subject>/<expression>/<take>/img_*.jpg for two training and two test subjects, two expressions."""
    for s, subject in enumerate(["008", "017", "001", "002"]):
        for e, expression in enumerate(["happiness", "surprise"]):
            frames = make_clip(seed=s, index=e, height=SIZE, width=SIZE, num_frames=VIDEO_FRAMES).frames
            for i, f in enumerate(frames):
                write_image(root / subject / expression / "take000" / f"img_{i:04d}.jpg", f)


def natops_layout(root: Path) -> None:
    """LFDM's split_img_data/g<gg>s<ss>p<pp>/ frame folders: subjects 3, 4 (train) and 1, 2 (test), gestures 1 and 2."""
    for s, subject in enumerate([3, 4, 1, 2]):
        for g in (1, 2):
            frames = make_clip(seed=10 + s, index=g, height=SIZE, width=SIZE, num_frames=VIDEO_FRAMES).frames
            for i, f in enumerate(frames):
                write_image(root / "split_img_data" / f"g{g:02d}s{subject:02d}p01" / f"{i:04d}.png", f)


def _train(configs: list[Path]) -> None:
    from lvmm.cli.train import main

    args = ["fit"] + [a for c in configs for a in ("--config", str(c))]
    with mock.patch.object(sys, "argv", ["train.py"]):
        main(args)


@pytest.mark.parametrize("dataset, layout", [("mug", mug_layout), ("natops", natops_layout)])
def test_benchmark_chain(dataset, layout, tmp_path, monkeypatch, capsys, one_thread):
    from lvmm.cli import encode_motion, evaluate, generate, make_shards
    from tests.helpers.metrics import make_weight_files

    monkeypatch.chdir(tmp_path)  # the configs' relative default locations land here
    bench = ROOT / f"configs/benchmark/{dataset}.yaml"
    layout(tmp_path / "raw")
    (tmp_path / "weights").mkdir()
    make_weight_files(tmp_path / "weights")  # weights/i3d_pretrained_400.pt, the config's default path
    csv = {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": f"outputs/{dataset}/stage2"}}
    for name, overlay in (("stage1", STAGE1), ("stage2", {**STAGE2, "trainer": {**STAGE2["trainer"], "logger": csv}})):
        (tmp_path / f"tiny_{name}.yaml").write_text(yaml.safe_dump(overlay))
    times, log = {}, []

    def step(name, fn):
        t = time.perf_counter()
        result = fn()
        times[name] = time.perf_counter() - t
        log.append(f"[chain {dataset}] {name}: {times[name]:.1f} s")
        return result

    for split in ("train", "test"):
        assert (
            step(
                f"make_shards {split}",
                lambda split=split: make_shards.main(
                    [
                        "--recipe",
                        dataset,
                        "--input",
                        "raw",
                        "--split",
                        split,
                        "--out",
                        f"data/{dataset}",
                        "--name",
                        f"{dataset}-{split}",
                        "--format",
                        "npy",
                        "--size",
                        str(SIZE),
                        "--no-progress",
                    ]
                ),
            )
            == 0
        )
    step("stage one", lambda: _train([ROOT / f"configs/stage1/{dataset}.yaml", tmp_path / "tiny_stage1.yaml"]))
    assert Path(f"outputs/{dataset}/stage1/checkpoints/last.ckpt").is_file()
    summary = step(
        "encode_motion",
        lambda: encode_motion.main(
            [
                "--config",
                str(bench),
                "--num-frames",
                str(CLIP),
                "--max-segments",
                "2",
                "--threshold",
                "1e9",
                "--accelerator",
                "cpu",
                "--devices",
                "1",
            ]
        ),
    )
    assert summary["videos"] == 4 and summary["kept"] == 8  # 4 training videos x 2 random draws
    step("stage two", lambda: _train([ROOT / f"configs/stage2/{dataset}_128.yaml", tmp_path / "tiny_stage2.yaml"]))
    assert Path(f"outputs/{dataset}/stage2/checkpoints/last.ckpt").is_file()
    gen = step(
        "generate",
        lambda: generate.main(
            ["--config", str(bench), *TINY, "--seeds", "0-1", "--steps", "2", "--accelerator", "cpu", "--devices", "1"]
        ),
    )
    out = Path(f"outputs/{dataset}/generated")
    videos = sorted(out.glob("*.mp4"))
    assert gen["samples"] == 4 and len(videos) == 8  # one per test video and seed, named by key
    frames, _ = read_video(videos[0])
    assert frames.shape == (CLIP, SIZE, SIZE, 3)
    again = generate.main(
        ["--config", str(bench), *TINY, "--seeds", "0-1", "--steps", "2", "--accelerator", "cpu", "--devices", "1"]
    )
    assert again["skipped"] == 4 and again["written"] == 0  # resumable: finished videos are kept
    code = step(
        "evaluate",
        lambda: evaluate.main(
            ["--config", str(bench), *TINY, "--seeds", "0-1", "--i3d-size", "32", "--device", "cpu", "--metrics", "fvd"]
        ),
    )
    assert code == 0
    report = json.loads(Path(f"outputs/{dataset}/eval/metrics.json").read_text())
    keys = {v.name.rsplit("_seed", 1)[0] for v in videos}
    assert report["reference"]["videos"] == 4 and report["generated"]["videos"] == 8
    for metric in ("fvd", "fvd_class", "fvd_subject"):
        assert np.isfinite(report["metrics"][metric]) and report["metrics"][metric] > 0
        assert set(report["per_seed"][metric]) == {"0", "1"} and report["metrics_std"][metric] >= 0
    assert report["protocol"]["reference_sampling"] == "random_sorted" and len(keys) == 4
    with capsys.disabled():
        print("\n" + "\n".join(log) + f"\n[chain {dataset}] total: {sum(times.values()):.1f} s")
