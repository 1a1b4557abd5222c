"""The main job: built-in data to a seamless loop of a real photograph, with a report (``lvmm-demo``).

Each step is a command of its own, run in its own process from the checkout (the configs are files of it)
and printed, so that it can be rerun alone; :func:`run_demo` runs them in order.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lvmm.animation import DEFAULT_LOOP_GUIDANCE
from lvmm.stages.motion_encoding import DEFAULT_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent  # the checkout: the steps run tools/*.py and read configs/ there
TRAINING_SIZE = 64  # the training frames' size (stage two records it; animate works at it)


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
    threshold: float = DEFAULT_THRESHOLD  # stage one's reconstruction threshold (MSE, 0-255 scale) for latent clips
    photo_side: int = 512  # short side of the photographs animated (motion runs at the training size, 64)
    loop_seeds: int = 4  # seeds per photo for the report's loop, pop and sharpness measures
    amount_images: int = 2  # held-out first frames per family for the motion amount's correlation
    control_clips: int = 4  # clips per family and motion amount for the report's accuracy at each amount
    long_clip_frames: int = 120  # the report's long clip, sampled in windows (5 s at 24 fps)


PRESETS = {
    # meant for about 20 minutes on 2 CPU cores after set-up; 45.5 min measured on 2026-12-04 (README)
    "full": Preset(
        train_clips=1200,
        val_clips=48,
        stage1_steps=1000,
        stage2_steps=2500,
        sample_steps=50,
        loop_guidance=DEFAULT_LOOP_GUIDANCE,
        report_clips=16,
        stage2_batch=16,
    ),
    # the end-to-end test: every step runs, nothing is trained long enough to mean anything
    "test": Preset(
        train_clips=24,
        val_clips=8,
        stage1_steps=6,
        stage2_steps=6,
        sample_steps=4,
        loop_guidance=DEFAULT_LOOP_GUIDANCE,
        report_clips=1,
        stage2_batch=4,
        threshold=1e9,
        photo_side=96,
        loop_seeds=1,
        amount_images=1,
        control_clips=1,
        long_clip_frames=24,
    ),
}
HELD_OUT_PHOTOS = ("coffee", "rocket")
LOOP_SECONDS, LOOP_FPS = 4, 24  # the demo's loop as it plays: repeated seamlessly to 4 s at 24 fps
TEXT_PROMPT = "the scene sways strongly to the left and right, slowly"
GUIDANCE_SCALE = (
    4.0  # classifier-free weight of the text-conditioned clip and the report (w = 4 beat 0, 2 on the demo model)
)


def run_step(step: str, cmd: list[str], log: list[dict], reuse: bool = False) -> None:
    """Run one step as its own process, streaming its output; stop the demo if it fails.

    ``reuse``: the step's outputs are already there (``--reuse``); it is logged as reused, not run."""
    shown = " ".join(shlex.quote(str(c)) for c in cmd).replace(sys.executable, "python")
    if reuse:
        print(f"\n[demo] === {step}: reusing the outputs already in place of: {shown}", flush=True)
        log.append({"step": step, "command": shown, "seconds": 0.0, "returncode": 0, "reused": True})
        return
    print(f"\n[demo] === {step}: {shown}", flush=True)
    t0 = time.time()
    done = subprocess.run([str(c) for c in cmd], cwd=ROOT)
    seconds = time.time() - t0
    log.append({"step": step, "command": shown, "seconds": round(seconds, 1), "returncode": done.returncode})
    if done.returncode != 0:
        raise SystemExit(
            f"[demo] step {step!r} failed (exit {done.returncode}) after {seconds:.0f} s; command: {shown}"
        )
    print(f"[demo] {step} done in {seconds:.0f} s", flush=True)


def newest_checkpoint(folder: Path) -> Path:
    """The newest ``last.ckpt`` under ``folder`` (a fit writes it under a versioned folder)."""
    ckpts = sorted(folder.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise SystemExit(f"[demo] no last.ckpt under {folder}")
    return ckpts[-1]


def csv_logger(folder: Path) -> str:
    """A ``--trainer.logger`` value: Lightning's CSV logger writing under ``folder``."""
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


@dataclass
class Demo:
    """One demo run: the steps in order, each a command of its own, logged in ``log``.

    ``reuse``: steps whose outputs an earlier run of the same preset left in ``out`` are not run again
    (animate, report and export always run)."""

    out: Path
    preset: Preset
    imagebind: str | None = None
    reuse: bool = False
    log: list[dict] = field(default_factory=list)

    @property
    def ib(self) -> list[str]:
        return ["--imagebind", self.imagebind] if self.imagebind else []

    def corpus(self) -> tuple[Path, str, str]:
        """Train clips and held-out photographs as video shards: (folder, train pattern, val pattern)."""
        p, out, py, log = self.preset, self.out, sys.executable, self.log
        size = TRAINING_SIZE
        shards = out / "shards"
        for split, n, seed in (("train", p.train_clips, 0), ("test", p.val_clips, 1)):
            name = f"procedural-{'val' if split == 'test' else 'train'}"
            run_step(
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
                reuse=self.reuse and any(shards.glob(f"{name}-*.tar")),
            )
        train_shards, val_shards = f"{shards}/procedural-train-*.tar", f"{shards}/procedural-val-*.tar"
        return shards, train_shards, val_shards

    def stage_one(self, train_shards: str) -> Path:
        """Fit stage one on the train shards; its newest checkpoint."""
        p, out, py, log = self.preset, self.out, sys.executable, self.log
        stage1_dir = out / "stage1"
        run_step(
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
            reuse=self.reuse and any(stage1_dir.rglob("last.ckpt")),
        )
        stage1 = newest_checkpoint(stage1_dir)
        return stage1

    def latents(self, stage1: Path, shards: Path, train_shards: str, val_shards: str) -> Path:
        """Latent motion shards of the train and val clips (refused when stage one keeps none)."""
        from lvmm.datasets.latent_encoding import read_manifests

        p, out, py, log, ib = self.preset, self.out, sys.executable, self.log, self.ib
        latents = out / "latents"
        for split, pattern in (("train", train_shards), ("val", val_shards)):
            files = sorted(Path(shards).glob(Path(pattern).name))
            run_step(
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
                reuse=self.reuse and (latents / split).exists() and bool(read_manifests(latents / split)),
            )
            if not any(r["kept"] for r in read_manifests(latents / split)):
                raise SystemExit(
                    f"[demo] stage one kept no {split} clip under the threshold {p.threshold}: train it longer"
                )
        return latents

    def stage_two(self, stage1: Path, latents: Path) -> Path:
        """Fit stage two on the train latents; its newest checkpoint."""
        p, out, py, log = self.preset, self.out, sys.executable, self.log
        stage2_dir = out / "stage2"
        emb_dim = 1024 if self.imagebind else 32
        run_step(
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
                "--model.init_args.unet.init_args.amplitude_condition",
                "true",  # the report measures --motion-amount
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
            reuse=self.reuse and any(stage2_dir.rglob("last.ckpt")),
        )
        stage2 = newest_checkpoint(stage2_dir)
        return stage2

    def animate(self, stage1: Path, stage2: Path) -> tuple[list[Path], Path]:
        """The held-out photographs, and four animations of them: stochastic, text, loop, slow-motion loop."""
        p, out, py, log, ib = self.preset, self.out, sys.executable, self.log, self.ib
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
        run_step("animate (stochastic)", [*common, "--image", photo, "--out", anim / "stochastic"], log)
        run_step(
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
        run_step(
            "animate (loop)",
            [
                *common,
                "--image",
                photos[1],
                "--loop-guidance",
                p.loop_guidance,
                "--duration",
                LOOP_SECONDS,
                "--fps",
                LOOP_FPS,
                "--out",
                anim / "loop",
            ],
            log,
        )
        run_step(
            "animate (slow-motion loop)",
            [
                *common,
                "--image",
                photos[1],
                "--loop-guidance",
                p.loop_guidance,
                "--slow-motion",
                4,
                "--duration",
                LOOP_SECONDS,
                "--fps",
                LOOP_FPS,
                "--out",
                anim / "loop_slow",
            ],
            log,
        )
        return photos, anim

    def report(self, stage1: Path, stage2: Path, latents: Path, photos: list[Path]) -> Path:
        """The measured report (``lvmm-report``); its folder."""
        p, out, py, log, ib = self.preset, self.out, sys.executable, self.log, self.ib
        report = out / "report"
        run_step(
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
                "--amount-images",
                p.amount_images,
                "--control-clips",
                p.control_clips,
                "--long-clip-frames",
                p.long_clip_frames,
                *ib,
            ],
            log,
        )
        return report

    def export(self, stage1: Path, stage2: Path) -> Path:
        """Both stages as one model package; its folder."""
        out, py, log = self.out, sys.executable, self.log
        package = out / "model"
        run_step(
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

        return package


def run_demo(out: Path, preset: str = "full", imagebind: str | None = None, reuse: bool = False) -> dict[str, str]:
    """Every step of the demo into ``out``; prints and returns where each output is."""
    demo = Demo(out.resolve(), PRESETS[preset], imagebind, reuse)
    t_start = time.time()
    shards, train_shards, val_shards = demo.corpus()
    stage1 = demo.stage_one(train_shards)
    latents = demo.latents(stage1, shards, train_shards, val_shards)
    stage2 = demo.stage_two(stage1, latents)
    photos, anim = demo.animate(stage1, stage2)
    report = demo.report(stage1, stage2, latents, photos)
    package = demo.export(stage1, stage2)
    out, log = demo.out, demo.log
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
    # ok: a local package folder, printed for the user
    print(f"[demo] load the model package with: LVMMPipeline.from_pretrained({str(package)!r})  (from lvmm.pipeline)")
    return {k: str(v) for k, v in outputs.items()}
