#!/usr/bin/env python
"""The main job: built-in data to a seamless loop of a real photograph, with a report.

    bash tools/dev.sh demo                      # the full demo (about 20 minutes on 2 CPU cores)
    python tools/demo.py --preset test          # the whole pipeline at a smaller size (the test uses this)

Steps, each a command you can also run on its own (the demo prints every command it runs):
  1. corpus     tools/make_shards.py --recipe procedural   (train clips, and held-out photographs for val)
  2. stage1     tools/train.py fit --config configs/stage1/tiny.yaml --config configs/stage1/tiny_shards.yaml
  3. latents    tools/encode_motion.py                      (train and val latent motion shards)
  4. stage2     tools/train.py fit --config configs/stage2/tiny.yaml --config configs/stage2/tiny_shards.yaml
  5. animate    tools/animate.py                            (stochastic, text-conditioned, loop, slow-motion loop)
  6. report     tools/report.py                             (markdown, plots, contact sheet)
  7. export     tools/export.py                             (both stages as one model package)
The same commands run the full-size configs on GPUs by changing the config.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Preset:
    """Sizes of one demo run."""

    train_clips: int
    val_clips: int
    stage1_steps: int
    stage2_steps: int
    sample_steps: int
    loop_guidance: float
    report_clips: int  # clips per family for the conditioning accuracy
    stage2_batch: int
    threshold: float = 50.0  # stage one's reconstruction threshold (MSE, 0-255 scale) for latent clips
    photo_side: int = 512  # short side of the photographs animated (motion runs at the training size, 64)
    loop_seeds: int = 4  # seeds per photo for the report's loop, pop and sharpness measures


PRESETS = {
    # about 20 minutes on 2 CPU cores after set-up
    "full": Preset(
        train_clips=1200,
        val_clips=48,
        stage1_steps=1000,
        stage2_steps=2500,
        sample_steps=50,
        loop_guidance=1e4,
        report_clips=8,
        stage2_batch=16,
    ),
    # the end-to-end test: every step runs, nothing is trained long enough to mean anything
    "test": Preset(
        train_clips=24,
        val_clips=8,
        stage1_steps=6,
        stage2_steps=6,
        sample_steps=4,
        loop_guidance=1e4,
        report_clips=1,
        stage2_batch=4,
        threshold=1e9,
        photo_side=96,
        loop_seeds=1,
    ),
}
HELD_OUT_PHOTOS = ("coffee", "rocket")
TEXT_PROMPT = "the scene sways strongly to the left and right, slowly"
GUIDANCE_SCALE = (
    4.0  # classifier-free weight of the text-conditioned clip and the report (w = 4 beat 0, 2 on the demo model)
)


def run(step: str, cmd: list[str], log: list[dict], reuse: bool = False) -> None:
    """Run one step as its own process, streaming its output; stop the demo if it fails.

    ``reuse``: the step's outputs are already there (``--reuse``); it is logged as reused, not run."""
    shown = " ".join(shlex.quote(str(c)) for c in cmd).replace(sys.executable, "python")
    if reuse:
        print(f"\n[demo] === {step}: reusing the outputs already in place of: {shown}", flush=True)
        log.append({"step": step, "command": shown, "seconds": 0.0, "returncode": 0, "reused": True})
        return
    print(f"\n[demo] === {step}: {shown}", flush=True)
    t0 = time.time()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    seconds = time.time() - t0
    log.append({"step": step, "command": shown, "seconds": round(seconds, 1), "returncode": done.returncode})
    if done.returncode != 0:
        raise SystemExit(
            f"[demo] step {step!r} failed (exit {done.returncode}) after {seconds:.0f} s; command: {shown}"
        )
    print(f"[demo] {step} done in {seconds:.0f} s", flush=True)


def newest_checkpoint(folder: Path) -> Path:
    ckpts = sorted(folder.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise SystemExit(f"[demo] no last.ckpt under {folder}")
    return ckpts[-1]


def csv_logger(folder: Path) -> str:
    return json.dumps(
        {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": str(folder), "name": "csv"}}
    )


def write_photos(folder: Path, size: int) -> list[Path]:
    """The held-out photographs resized to about 4:3 with the short side ``size`` (an even width: H.264's yuv420p)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from lvmm.datasets.procedural import load_photo
    from lvmm.media import write_image

    paths = []
    for name in HELD_OUT_PHOTOS:
        img = torch.from_numpy(load_photo(name)).permute(2, 0, 1)[None].float()
        img = F.interpolate(
            img, size=(size, size * 4 // 3 // 2 * 2), mode="bilinear", antialias=True, align_corners=False
        )
        arr = img[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
        paths.append(write_image(folder / f"{name}.png", np.ascontiguousarray(arr)))
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="working folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument(
        "--imagebind",
        default=None,
        help="official ImageBind weights (imagebind_huge.pth); default: a small seeded random ImageBind",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the corpus, checkpoints and latents an earlier run of the "
        "same preset left in --out (they are the steps' outputs); "
        "animate and report run again",
    )
    args = parser.parse_args(argv)
    from lvmm.datasets.latent_encoding import read_manifests

    p = PRESETS[args.preset]
    out = args.out.resolve()
    py = sys.executable
    log: list[dict] = []
    t_start = time.time()
    size = 64  # the training frames' size (stage two records it; animate works at it)
    ib = ["--imagebind", args.imagebind] if args.imagebind else []

    shards = out / "shards"
    for split, n, seed in (("train", p.train_clips, 0), ("test", p.val_clips, 1)):
        name = f"procedural-{'val' if split == 'test' else 'train'}"
        run(
            f"corpus ({name})",
            [
                py,
                "tools/make_shards.py",
                "--recipe",
                "procedural",
                "--split",
                split,
                "--seed",
                seed,
                "--num-clips",
                n,
                "--size",
                size,
                "--clip-len",
                9,
                "--format",
                "npy",
                "--out",
                shards,
                "--name",
                name,
                "--max-samples",
                256,
            ],
            log,
            reuse=args.reuse and any(shards.glob(f"{name}-*.tar")),
        )
    train_shards, val_shards = f"{shards}/procedural-train-*.tar", f"{shards}/procedural-val-*.tar"

    stage1_dir = out / "stage1"
    run(
        "stage1",
        [
            py,
            "tools/train.py",
            "fit",
            "--config",
            "configs/stage1/tiny.yaml",
            "--config",
            "configs/stage1/tiny_shards.yaml",
            "--data.init_args.train_shards",
            train_shards,
            "--trainer.max_steps",
            p.stage1_steps,
            "--trainer.val_check_interval",
            max(1, p.stage1_steps // 3),
            "--trainer.limit_val_batches",
            0,
            "--trainer.default_root_dir",
            stage1_dir,
            "--trainer.logger",
            csv_logger(stage1_dir),
        ],
        log,
        reuse=args.reuse and any(stage1_dir.rglob("last.ckpt")),
    )
    stage1 = newest_checkpoint(stage1_dir)

    latents = out / "latents"
    for split, pattern in (("train", train_shards), ("val", val_shards)):
        files = sorted(Path(shards).glob(Path(pattern).name))
        run(
            f"latents ({split})",
            [
                py,
                "tools/encode_motion.py",
                "--ckpt",
                stage1,
                "--shards",
                *files,
                "--out",
                latents / split,
                "--threshold",
                p.threshold,
                "--overwrite",
                *ib,
            ],
            log,
            reuse=args.reuse and (latents / split).exists() and bool(read_manifests(latents / split)),
        )
        if not any(r["kept"] for r in read_manifests(latents / split)):
            raise SystemExit(
                f"[demo] stage one kept no {split} clip under the threshold {p.threshold}: train it longer"
            )

    stage2_dir = out / "stage2"
    emb_dim = 1024 if args.imagebind else 32
    run(
        "stage2",
        [
            py,
            "tools/train.py",
            "fit",
            "--config",
            "configs/stage2/tiny.yaml",
            "--config",
            "configs/stage2/tiny_shards.yaml",
            "--data.init_args.train_shards",
            f"{latents}/train/latent-*.tar",
            "--data.init_args.batch_size",
            p.stage2_batch,
            "--model.init_args.unet.init_args.cond_dim",
            emb_dim,
            "--model.init_args.motion_checkpoint",
            stage1,
            "--trainer.max_steps",
            p.stage2_steps,
            "--trainer.val_check_interval",
            max(1, p.stage2_steps // 3),
            "--trainer.limit_val_batches",
            0,
            "--trainer.default_root_dir",
            stage2_dir,
            "--trainer.logger",
            csv_logger(stage2_dir),
        ],
        log,
        reuse=args.reuse and any(stage2_dir.rglob("last.ckpt")),
    )
    stage2 = newest_checkpoint(stage2_dir)

    photos = write_photos(out / "photos", p.photo_side)
    anim = out / "animations"
    common = [
        py,
        "tools/animate.py",
        "--ckpt",
        stage2,
        "--stage1-ckpt",
        stage1,
        "--steps",
        p.sample_steps,
        "--seeds",
        "0",
        "--format",
        "mp4",
        "gif",
        *ib,
    ]
    photo = photos[0]
    run("animate (stochastic)", [*common, "--image", photo, "--out", anim / "stochastic"], log)
    run(
        "animate (text)",
        [
            *common,
            "--image",
            photo,
            "--prompt",
            TEXT_PROMPT,
            "--guidance-scale",
            GUIDANCE_SCALE,
            "--out",
            anim / "text",
        ],
        log,
    )
    run(
        "animate (loop)",
        [*common, "--image", photos[1], "--loop-guidance", p.loop_guidance, "--out", anim / "loop"],
        log,
    )
    run(
        "animate (slow-motion loop)",
        [
            *common,
            "--image",
            photos[1],
            "--loop-guidance",
            p.loop_guidance,
            "--slow-motion",
            4,
            "--out",
            anim / "loop_slow",
        ],
        log,
    )

    report = out / "report"
    run(
        "report",
        [
            py,
            "tools/report.py",
            "--stage1",
            stage1,
            "--stage2",
            stage2,
            "--latents",
            latents / "train",
            "--val-latents",
            latents / "val",
            "--photos",
            *photos,
            "--out",
            report,
            "--steps",
            p.sample_steps,
            "--loop-guidance",
            p.loop_guidance,
            "--guidance-scale",
            GUIDANCE_SCALE,
            "--clips-per-family",
            p.report_clips,
            "--loop-seeds",
            p.loop_seeds,
            *ib,
        ],
        log,
    )

    package = out / "model"
    run(
        "export",
        [
            py,
            "tools/export.py",
            "--stage1",
            stage1,
            "--stage2",
            stage2,
            "--out",
            package,
            "--force",
            "--trained-on-stage1",
            "the built-in procedural clips (scikit-image photographs)",
            "--trained-on-stage2",
            "latent motion of the built-in procedural clips",
        ],
        log,
    )

    (out / "demo_log.json").write_text(json.dumps(log, indent=2))
    minutes = (time.time() - t_start) / 60
    print(f"\n[demo] finished in {minutes:.1f} min. Outputs:")
    outputs = {
        "shards": shards,
        "stage-one checkpoint": stage1,
        "latent shards": latents,
        "stage-two checkpoint": stage2,
    }
    for sub in ("stochastic", "text", "loop", "loop_slow"):
        for f in sorted((anim / sub).glob("*.*")):
            if f.suffix in (".mp4", ".gif"):
                outputs[f"{sub} {f.suffix[1:]}"] = f
    outputs["report"] = report / "report.md"
    outputs["model package"] = package
    for what, where in outputs.items():
        print(f"  {what:24s} {where}")
    print(f"[demo] load the model package with: LVMMPipeline.from_pretrained({str(package)!r})  (from lvmm.pipeline)")
    return {k: str(v) for k, v in outputs.items()}


if __name__ == "__main__":
    main()
