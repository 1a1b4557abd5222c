#!/usr/bin/env python
"""Seconds per sample for each sampler, with and without loop self-guidance, on the tiny U-Net (CPU).

DDPM at 20, 50 and 1000 steps, DDIM and DPM-Solver++ at 20 and 50; classifier-free guidance on
(w = 1, the conditional and unconditional passes batched), loop guidance off and on (decoding the
synthetic latents' displacement channels, gradient through the U-Net). The last column is loop
guidance's extra cost as a ratio. Weights are random: time does not depend on them.

    python tools/bench/bench_sampling.py                 # K = 8 and 40 frames, a few minutes on 2 CPU threads
    python tools/bench/bench_sampling.py --frames 8 --batch 8 --no-1000

DDPM-1000 runs at the shortest clip length only unless ``--all-1000`` (at 40 frames it takes minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]

from lvmm.checkpoint import build  # noqa: E402
from lvmm.datasets.latent import collate, synthetic_decode, synthetic_latent_clip  # noqa: E402
from lvmm.diffusion.guidance import LoopGuidance  # noqa: E402
from lvmm.diffusion.sampling import sample_motion  # noqa: E402
from lvmm.diffusion.schedules import DiffusionConfig  # noqa: E402

RUNS = (
    ("ddpm", 20),
    ("ddpm", 50),
    ("ddpm", 1000),
    ("ddim", 20),
    ("ddim", 50),
    ("dpmsolver++", 20),
    ("dpmsolver++", 50),
)
LOOP_WEIGHT = 300.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1, help="samples drawn together (seconds are per sample)")
    p.add_argument("--no-1000", action="store_true", help="skip DDPM-1000")
    p.add_argument("--all-1000", action="store_true", help="run DDPM-1000 at every clip length")
    p.add_argument("--frames", type=int, nargs="+", default=[8, 40], help="clip lengths K")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet_config = yaml.safe_load(open(ROOT / "configs/stage2/tiny.yaml"))["model"]["init_args"]["unet"]
    unet_config["init_args"]["max_frames"] = max(args.frames)  # the same network, long enough for every K
    unet = build(unet_config).eval()
    batch = collate([synthetic_latent_clip(0, i) for i in range(args.batch)])
    config = DiffusionConfig()
    loop = LoopGuidance(LOOP_WEIGHT, decode=synthetic_decode)

    def seconds(sampler: str, steps: int, guided: bool, frames: int) -> float:
        t0 = time.perf_counter()
        sample_motion(
            unet,
            config,
            batch["z0"],
            batch["img_emb"],
            batch["txt_emb"],
            num_frames=frames,
            seeds=range(args.batch),
            latent_scale=10.0,
            sampler=sampler,
            steps=steps,
            guidance_scale=1.0,
            guidance=[loop] if guided else [],
        )
        return (time.perf_counter() - t0) / args.batch

    seconds("ddim", 2, True, min(args.frames))  # warm-up
    print(f"tiny U-Net, latents 4x8x8 per frame, CFG w=1, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"{'K':>4} {'sampler':>12} {'steps':>6} {'s/sample':>10} {'+loop s/sample':>15} {'loop cost':>10}")
    for frames in args.frames:
        for sampler, steps in RUNS:
            if steps == 1000 and (args.no_1000 or (frames != min(args.frames) and not args.all_1000)):
                continue
            plain, guided = seconds(sampler, steps, False, frames), seconds(sampler, steps, True, frames)
            print(
                f"{frames:>4} {sampler:>12} {steps:>6} {plain:>10.3f} {guided:>15.3f} {guided / plain:>9.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
