#!/usr/bin/env python
"""Do DDIM-50 and DPM-Solver++-20 samples match DDPM-1000 samples of the same trained denoiser?

Trains the tiny U-Net (configs/stage2/tiny.yaml) on the synthetic family latents for a few minutes of
CPU, then samples latent clips for the first frames and text tokens of held-out synthetic clips with
each sampler, and compares, per frame, the mean and the spread (std across clips) of the displacement
magnitude |d| = sqrt(dx^2 + dy^2) (pixel-mean per clip, in pixels of a 64-pixel frame), against each
other and against the true clips.

    python tools/bench/sampler_agreement.py --train-seconds 240 --samples 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from lvmm.checkpoint import build
from lvmm.datasets.latent import SyntheticLatentDataModule, collate, synthetic_decode
from lvmm.stages.stage_two import StageTwo

REFERENCE_FRAME = 64  # report displacements in pixels of a 64-pixel frame (the procedural data's scale)
SAMPLERS = (("ddpm", 1000), ("ddim", 50), ("dpmsolver++", 20))


def magnitude_per_frame(z: torch.Tensor) -> torch.Tensor:
    """(N, T, 4, h, w) synthetic latents -> (N, T) pixel-mean displacement magnitude in 64-frame pixels."""
    d = synthetic_decode(z)[:, :, :2] * REFERENCE_FRAME / 2  # normalised units -> pixels
    return d.norm(dim=2).flatten(2).mean(2)


def train(args) -> StageTwo:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EMAWeightAveraging

    cfg = yaml.safe_load(open(Path(__file__).resolve().parents[2] / "configs/stage2/tiny.yaml"))["model"]["init_args"]
    unet = build(cfg.pop("unet"))
    module = StageTwo(unet, **{k: v for k, v in cfg.items() if not k.startswith("media")})
    data = SyntheticLatentDataModule(size=8, num_frames=8, emb_dim=1024, train_length=4096, batch_size=args.batch_size)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_time={"seconds": args.train_seconds},
        max_steps=args.max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[EMAWeightAveraging(decay=args.ema_decay)],
        enable_model_summary=False,
    )
    t0 = time.time()
    trainer.fit(module, data)
    print(f"trained {trainer.global_step} steps in {time.time() - t0:.0f} s, latent_scale={module.latent_scale:.2f}")
    return module.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-seconds", type=float, default=240)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--guidance-scale", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    module = train(args)
    held_out = collate(_held_out(args.samples))
    true_mag = magnitude_per_frame(held_out["z"])
    rows = {"true": true_mag}
    seconds = {}
    for sampler, steps in SAMPLERS:
        t0 = time.time()
        z = module.generate(
            held_out, seeds=range(args.samples), sampler=sampler, steps=steps, guidance_scale=args.guidance_scale
        )
        seconds[f"{sampler}-{steps}"] = time.time() - t0
        rows[f"{sampler}-{steps}"] = magnitude_per_frame(z)
        print(f"{sampler}-{steps}: {seconds[f'{sampler}-{steps}']:.1f} s for {args.samples} clips", flush=True)

    frames = true_mag.shape[1]
    print(f"\nper-frame displacement magnitude, pixels of a 64-px frame: mean (spread across {args.samples} clips)")
    print("frame      " + "".join(f"{k:>18}" for k in rows))
    for f in range(frames):
        print(f"{f + 1:>5}      " + "".join(f"{v[:, f].mean():>9.3f} ({v[:, f].std():.3f})" for v in rows.values()))
    ref = rows["ddpm-1000"]
    summary = {}
    for k, v in rows.items():
        summary[k] = {
            "mean": v.mean().item(),
            "spread": v.std(0).mean().item(),
            "mean_abs_diff_of_frame_means_vs_ddpm": (v.mean(0) - ref.mean(0)).abs().mean().item(),
            "mean_abs_diff_of_frame_spreads_vs_ddpm": (v.std(0) - ref.std(0)).abs().mean().item(),
        }
    print("\nsummary (over frames):")
    for k, s in summary.items():
        print(
            f"  {k:>16}: mean {s['mean']:.3f}  spread {s['spread']:.3f}  |d mean| vs DDPM "
            f"{s['mean_abs_diff_of_frame_means_vs_ddpm']:.3f}  |d spread| vs DDPM "
            f"{s['mean_abs_diff_of_frame_spreads_vs_ddpm']:.3f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "summary": summary,
                    "seconds": seconds,
                    "per_frame": {
                        k: {"mean": v.mean(0).tolist(), "spread": v.std(0).tolist()} for k, v in rows.items()
                    },
                },
                indent=1,
            )
        )


def _held_out(n: int):
    from lvmm.datasets.latent import synthetic_latent_clip

    return [synthetic_latent_clip(1000, i, size=8, num_frames=8, emb_dim=1024) for i in range(n)]


if __name__ == "__main__":
    main()
