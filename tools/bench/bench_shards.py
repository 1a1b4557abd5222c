#!/usr/bin/env python
"""Shard-writing throughput against PyAV's raw decode speed of the same files, in one run.

Makes a few synthetic H.264 videos (or takes ``--inputs``), times a plain PyAV decode of every
frame, then times ``write_shards`` (decode + resize + encode + tar) on the same files in each
output format, and prints clips/s and the ratio to the raw decode's clips/s (the clips those
decoded frames would make). The ratio says how much of the writer's time is decoding, which no
writer can avoid. Takes well under a minute with the defaults.

    python tools/bench/bench_shards.py [--videos 6] [--frames 96] [--size 256] [--workers 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lvmm.datasets.recipes import FolderRecipe
from lvmm.datasets.writer import ShardSettings, write_shards
from lvmm.media import atomic_write_bytes, encode_mp4


def synthetic_video(num_frames: int, size: int, seed: int) -> np.ndarray:
    """Smooth moving colour patterns with some noise: decodes like camera footage, not like a flat test card."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    f = rng.uniform(2, 8, size=(3, 2))
    frames = []
    for t in range(num_frames):
        c = [np.sin(2 * np.pi * (fx * xs + fy * ys) + 0.2 * t + k) for k, (fx, fy) in enumerate(f)]
        img = 0.5 + 0.4 * np.stack(c, -1) + rng.normal(0, 0.03, (size, size, 3))
        frames.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.stack(frames)


def raw_decode(paths: list[Path]) -> tuple[int, float]:
    """Frames decoded and seconds taken by PyAV alone (RGB conversion included, as the writer needs it)."""
    import av

    start, frames = time.perf_counter(), 0
    for p in paths:
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                frame.to_ndarray(format="rgb24")
                frames += 1
    return frames, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", help="a folder of videos to use instead of synthetic ones")
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--size", type=int, default=256, help="synthetic input size")
    p.add_argument("--out-size", type=int, default=128)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = Path(args.inputs) if args.inputs else tmp / "inputs"
        if not args.inputs:
            for i in range(args.videos):
                atomic_write_bytes(root / f"v{i}.mp4", encode_mp4(synthetic_video(args.frames, args.size, i), 25.0))
        sources = FolderRecipe(str(root)).sources()
        paths = [Path(s.path) for s in sources if s.kind == "video"]
        raw_decode(paths[:1])  # warm up codecs and caches
        import webdataset  # noqa: F401  (imports torch: a one-off cost that is not throughput)

        frames, seconds = raw_decode(paths)
        raw_clips_per_s = frames / args.clip_len / seconds
        print(
            f"inputs: {len(paths)} videos, {frames} frames; out {args.out_size}x{args.out_size}, "
            f"clips of {args.clip_len}, workers {args.workers}"
        )
        print(f"PyAV raw decode: {frames / seconds:8.1f} frames/s = {raw_clips_per_s:7.1f} clips/s")
        for fmt in ("npy", "mp4"):
            settings = ShardSettings(size=(args.out_size, args.out_size), clip_len=args.clip_len, fmt=fmt)
            summary = write_shards(
                sources,
                tmp / f"shards-{fmt}",
                "bench",
                settings,
                workers=args.workers,
                progress=False,
                log=lambda m: print(m, file=sys.stderr),
            )
            rate = summary.clips / summary.seconds
            print(
                f"write_shards {fmt:>3}: {rate:8.1f} clips/s, {rate / raw_clips_per_s:5.2f} x raw decode "
                f"({summary.clips} clips in {summary.seconds:.1f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
