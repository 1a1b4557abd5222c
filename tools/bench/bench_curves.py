#!/usr/bin/env python
"""Cost curves of the whole animation (sampling + decoding + rendering): time and peak memory against
the number of frames, the photo's resolution and the batch size (seeds drawn together).

The networks are random weights of the named configs (default tiny, as the demo trains them); clips
longer than the U-Net's window are denoised as overlapping windows (``total_frames``, the library's
long-clip code). Each point is one run after a warm-up; memory is the rise of the peak
resident set (CUDA allocator peak on a GPU). Prints one table per curve and saves a PNG (``--out``).

    python tools/bench/bench_curves.py --out curves.png                 # small ranges, a few minutes on 2 cores
    python tools/bench/bench_curves.py --full --out curves.png          # 8-160 frames, 128-2048 px, batch 1-8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from bench_animation import options_for

from lvmm.animation import DEFAULT_GUIDANCE_SCALE
from lvmm.evaluation.perf import build_animator, load_average, shapes, test_photo, timed

SMALL = {"frames": [8, 16, 40], "sides": [128, 512, 1024], "batches": [1, 2]}
FULL = {"frames": [8, 16, 40, 80, 160], "sides": [128, 256, 512, 1024, 2048], "batches": [1, 2, 4, 8]}


def curve(name: str, points: list, run) -> list[tuple]:
    """``run(point) -> (seconds, peak bytes)`` for each point, printed as a table; returns the rows."""
    print(f"\n{name}  ({load_average()})")
    print(f"{name.split(' ')[0]:>8} {'seconds':>9} {'peak MiB':>9}")
    rows = []
    for x in points:
        seconds, peak = run(x)
        rows.append((x, seconds, peak / 2**20))
        print(f"{x:>8} {seconds:>9.2f} {peak / 2**20:>9.1f}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage1", default="tiny")
    p.add_argument("--stage2", default="tiny")
    p.add_argument("--sampler", default="dpmsolver++")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE_SCALE)
    p.add_argument("--size", type=int, default=128, help="working short side")
    p.add_argument("--full", action="store_true", help="the full ranges (tens of minutes on 2 cores)")
    p.add_argument("--frames", type=int, nargs="+", default=None, help="frame counts (as played)")
    p.add_argument("--sides", type=int, nargs="+", default=None, help="photo long sides, px (4:3 photos)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="seeds per call")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="PNG of the three curves")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ranges = FULL if args.full else SMALL
    frames, sides, batches = (getattr(args, k) or ranges[k] for k in ("frames", "sides", "batches"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    s = shapes(args.stage1, args.stage2)
    animator = build_animator(s, device=device)
    print(s.describe())
    print(f"{device}, {torch.get_num_threads()} threads, {args.sampler}-{args.steps}, CFG w={args.guidance:g}")
    square = test_photo(args.size, args.size)
    opts = lambda n: options_for(animator, args.sampler, args.steps, args.guidance, args.size, n)
    animator.animate(square, [0], options_for(animator, "ddim", 2, 0.0, args.size, 8))  # warm-up

    def photo_run(side: int) -> tuple[float, int]:
        photo = test_photo(side * 3 // 4, side)
        return timed(lambda: animator.animate(photo, [0], opts(40)), device)

    curves = {
        "frames (as played)": curve(
            "frames (as played)", frames, lambda n: timed(lambda: animator.animate(square, [0], opts(n)), device)
        ),
        "photo long side (px, 4:3)": curve(
            "photo long side (px, 4:3)",
            sides,
            photo_run,
        ),
        "batch (seeds, 40 frames)": curve(
            "batch (seeds, 40 frames)",
            batches,
            lambda b: timed(lambda: animator.animate(square, list(range(b)), opts(40)), device),
        ),
    }
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 3, figsize=(12, 6), constrained_layout=True)
        for col, (name, rows) in enumerate(curves.items()):
            xs = [r[0] for r in rows]
            axes[0, col].plot(xs, [r[1] for r in rows], "o-")
            axes[1, col].plot(xs, [r[2] for r in rows], "o-", color="C1")
            axes[0, col].set_title(name)
            axes[1, col].set_xlabel(name)
            axes[0, col].set_ylabel("seconds")
            axes[1, col].set_ylabel("peak memory rise, MiB")
        fig.suptitle(f"{s.describe()}; {args.sampler}-{args.steps}, w={args.guidance:g}; {load_average()}", fontsize=8)
        fig.savefig(args.out, dpi=100)
        print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
