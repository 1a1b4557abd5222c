"""The main job end to end at a smaller size (tools/demo.py --preset test): every step runs and writes its outputs."""

import json
import subprocess
import sys

import numpy as np

from lvmm.media import read_video
from tests.helpers import ROOT


def test_demo_pipeline_end_to_end(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--preset", "test", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    # one closing line per output, naming where it went
    for what in (
        "stage-one checkpoint",
        "stage-two checkpoint",
        "loop mp4",
        "loop_slow gif",
        "text mp4",
        "stochastic mp4",
        "report",
    ):
        assert what in done.stdout
    stochastic, _ = read_video(out / "animations" / "stochastic" / "coffee_seed0.mp4")
    loop, _ = read_video(out / "animations" / "loop" / "rocket_seed0.mp4")
    # the mp4 keeps every frame; a GIF merges identical neighbours (Pillow), as the barely trained test model makes
    slow, _ = read_video(out / "animations" / "loop_slow" / "rocket_seed0.mp4")
    assert read_video(out / "animations" / "loop_slow" / "rocket_seed0.gif")[0].shape[0] >= 1
    k = 8
    # a clip plays I_0, 1..K; the loops repeat to 4 s at 24 fps (a cycle plays 1..K-1: frame K would repeat 1)
    assert stochastic.shape[0] == k + 1 and loop.shape[0] == 4 * 24 and slow.shape[0] == 4 * 24
    assert stochastic.shape[1:] == (96, 128, 3)  # the photograph's own resolution (motion ran at 64 px)
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report) >= {
        "stage1",
        "conditioning",
        "magnitude",
        "loops",
        "pop",
        "sharpness",
        "seconds_per_clip",
        "controls",
        "targets",
    }
    assert set(report["controls"]) >= {"strength", "amount", "brush", "drag", "long_clip"}
    assert "skipped" not in report["controls"]["amount"]  # the demo trains stage two with the motion amount
    audio = report["controls"]["audio"]  # and with the corpus' soundtracks in the text slot
    assert "skipped" not in audio and audio["clips"] == 6 and "text_accuracy" in audio
    assert report["controls"]["strength"]["zero_is_the_photo"] and report["controls"]["long_clip"]["frames"] == 24
    for name in ("strength", "amount", "brush", "drag", "long_clip"):
        assert (out / "report" / f"controls_{name}.png").exists()
    assert read_video(out / "report" / "clips" / "loop_4s.mp4")[0].shape[0] == 4 * 24
    assert set(report["magnitude"]["per_family"]) and report["forty_frames_1024x768"]["size"] == [768, 1024]
    assert (
        np.isfinite(report["stage1"]["psnr"]["copy"]) and report["conditioning"]["clips"] >= 4
    )  # one per family present in the small corpus
    text = (out / "report" / "report.md").read_text()
    assert "random ImageBind" in text and "## Loops as they play" in text and "wrap ratio" in text
    assert "## Motion controls" in text and "### Drag arrows" in text
    assert (out / "report" / "contact_sheet.png").exists() and (out / "report" / "metrics.png").exists()
    assert [row["step"] for row in json.loads((out / "demo_log.json").read_text())][-2:] == ["report", "export"]
    from lvmm.pipeline import verify_package  # the demo ends by exporting a model package and says where

    assert "model package" in done.stdout and verify_package(out / "model")["stages"]["stage_two"]["weights"] == "ema"
