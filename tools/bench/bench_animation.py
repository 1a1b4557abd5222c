#!/usr/bin/env python
"""Whole animations as users run them: a photo in, 40 frames out, through :meth:`lvmm.animation.Animator.animate`.

Sampling, decoding and rendering are all timed, with random weights of the networks the named configs
build (default: the tiny configs the demo trains, conditioned by the tiny ImageBind). The shapes come
from the configs (``common.shapes``): the working size from stage one's frames unless ``--size``, the
U-Net from stage two. 40 frames = I_0 + 39: where the U-Net's window is shorter (the tiny configs'
K = 8) the clip is denoised as overlapping windows (``total_frames``), as a user's long clip.

Rows (one seed each): the baseline DDIM-10 without classifier-free guidance, then DPM-Solver++ 20 with
guidance at ``lvmm.animation.DEFAULT_GUIDANCE_SCALE`` (the default animation), at the working size
and rendered onto a 1024x768 photo at its own resolution. Ratios are against the baseline of the same run.

    python tools/bench/bench_animation.py                       # tiny configs, 128 px working size, CPU
    python tools/bench/bench_animation.py --stage1 mug --stage2 mug_128 --repeats 1
    python tools/bench/bench_animation.py --profile prof.txt    # torch.profiler table of the default animation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lvmm.animation import DEFAULT_GUIDANCE_SCALE, AnimationOptions
from lvmm.evaluation.perf import build_animator, load_average, shapes, test_photo, timed

FRAMES = 40  # as played: I_0 + 39 generated
W = DEFAULT_GUIDANCE_SCALE


def options_for(animator, sampler: str, steps: int, guidance: float, size: int | None, frames: int, **kw):
    """AnimationOptions for ``frames`` played frames: one window when the U-Net takes them, else windows."""
    k = frames - 1
    if k <= int(animator.extra["max_frames"]):
        return AnimationOptions(sampler=sampler, steps=steps, guidance_scale=guidance, size=size, num_frames=k, **kw)
    return AnimationOptions(sampler=sampler, steps=steps, guidance_scale=guidance, size=size, total_frames=frames, **kw)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage1", default="tiny", help="configs/stage1/NAME.yaml")
    p.add_argument("--stage2", default="tiny", help="configs/stage2/NAME.yaml")
    p.add_argument("--size", type=int, default=128, help="working short side (0: the configs' frame size)")
    p.add_argument("--frames", type=int, default=FRAMES, help="frames as played (I_0 included)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs per row (memory from the first)")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    p.add_argument("--no-photo", action="store_true", help="skip the 1024x768 full-resolution rows")
    p.add_argument("--profile", type=Path, default=None, help="write a torch.profiler table of the default row here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    s = shapes(args.stage1, args.stage2)
    animator = build_animator(s, device=device)
    size = args.size or None
    small = test_photo(*((size, size) if size else s.frame))
    photo = test_photo(768, 1024)
    print(s.describe())
    print(
        f"{device}, {torch.get_num_threads()} threads, {args.frames} frames as played, working short side "
        f"{size or min(s.frame)}, best of {args.repeats}, {load_average()}"
    )
    animator.animate(small, [0], options_for(animator, "ddim", 2, 0.0, size, 8))  # warm-up
    rows = [
        ("baseline: DDIM-10, no CFG", "ddim", 10, 0.0, small),
        (f"default: DPM-Solver++ 20, CFG w={W:g}", "dpmsolver++", 20, W, small),
    ]
    if not args.no_photo:
        rows += [
            ("baseline on a 1024x768 photo", "ddim", 10, 0.0, photo),
            ("default on a 1024x768 photo", "dpmsolver++", 20, W, photo),
        ]
    results = []
    for name, sampler, steps, w, image in rows:
        opts = options_for(animator, sampler, steps, w, size, args.frames)
        out = []
        seconds, peak = timed(
            lambda o=opts, im=image, out=out: out.append(animator.animate(im, [0], o)[0]), device, args.repeats
        )
        frames = out[-1].frames
        results.append((name, seconds, peak))
        print(
            f"{name:<44} {seconds:7.2f} s  peak +{peak / 2**20:7.1f} MiB  {frames.shape[0]} frames "
            f"{frames.shape[2]}x{frames.shape[1]}  ({load_average()})",
            flush=True,
        )
    base = results[0][1]
    for name, seconds, _ in results[1:]:
        print(f"{name} / baseline: {seconds / base:.2f}x time")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        opts = options_for(animator, "dpmsolver++", 20, DEFAULT_GUIDANCE_SCALE, size, args.frames)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            animator.animate(small, [0], opts)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
        args.profile.write_text(table)
        print(f"profile of the default row: {args.profile}")


if __name__ == "__main__":
    main()
