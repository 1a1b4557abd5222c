"""Turn a folder of videos, frame folders or a dataset recipe into webdataset shards.

Examples::

    # any folder of videos / frame folders, 16-frame clips every 8 frames at 8 fps, 256x256
    python tools/make_shards.py --recipe folder --input videos/ --out shards/ --name clips \\
        --size 256 --clip-len 16 --stride 8 --fps 8 --workers 8
    # the benchmark protocol: whole videos at 128x128, one run per split
    python tools/make_shards.py --recipe mug --input MUG/ --split train --out shards/mug --name mug-train --format npy
    # two machines sharing one corpus
    python tools/make_shards.py ... --num-shards 2 --shard-index 0   # and --shard-index 1 on the other

A rerun with the same arguments resumes: finished inputs are skipped and nothing is written twice.
The exit code is 1 when no input could be read (in this run or an earlier one) or a worker process
died (rerun to finish), 2 for bad arguments, other settings or corpus in --out, or a concurrent run.
"""

from __future__ import annotations

import argparse
import sys

from lvmm.cli import size_argument
from lvmm.datasets.recipes import RECIPES, SPLITS, make_recipe
from lvmm.datasets.writer import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    FITS,
    FORMATS,
    ShardSettings,
    WorkerDied,
    write_shards,
)
from lvmm.media import DEFAULT_CRF


def clip_len(text: str) -> int | None:
    """A frame count, or ``0``/``whole`` for one sample per whole video."""
    return None if text in ("0", "whole") else int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="folder", choices=sorted(RECIPES), help="dataset layout (default: folder)")
    p.add_argument("--input", help="the input folder (not needed for the procedural recipe)")
    p.add_argument("--out", required=True, help="output folder for shards, manifest and settings")
    p.add_argument("--name", default=None, help="shard name prefix (default: the recipe's name)")
    p.add_argument("--size", type=size_argument, default=None, help="N or HxW (default: the recipe's, else 64)")
    p.add_argument("--fit", choices=FITS, default=None, help="crop to fill or pad to fit (default: the recipe's)")
    p.add_argument(
        "--clip-len",
        type=clip_len,
        default=-1,
        help="frames per clip; 0 = one sample per whole video (default: the recipe's)",
    )
    p.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: clip length)")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips per input")
    p.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: keep)")
    p.add_argument("--source-fps", type=float, default=None, help="frame rate of frame folders (folder recipe)")
    p.add_argument("--format", choices=FORMATS, default="mp4", help="mp4 (H.264) or npy (lossless uint8)")
    p.add_argument("--crf", type=int, default=DEFAULT_CRF, help="H.264 quality for --format mp4")
    p.add_argument(
        "--split", choices=SPLITS, default="all", help="subject split of MUG/MHAD/NATOPS; procedural: train/test"
    )
    p.add_argument("--csv", help="WebVid-style CSV (webvid recipe; folder recipe: captions)")
    p.add_argument("--info", help="CelebV-HQ annotation json (default: INPUT/celebvhq_info.json)")
    p.add_argument("--num-clips", type=int, default=64, help="procedural recipe: number of clips")
    p.add_argument("--seed", type=int, default=0, help="procedural recipe: corpus seed")
    p.add_argument("--workers", type=int, default=1, help="decoding processes")
    p.add_argument("--num-shards", type=int, default=1, help="split the inputs over this many machines/runs")
    p.add_argument("--shard-index", type=int, default=0, help="which part of --num-shards this run writes")
    p.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES, help="samples per shard")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="bytes per shard")
    p.add_argument("--retry-failed", action="store_true", help="retry inputs an earlier run could not read")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def corpus_of(args) -> dict:
    """The options that define the inputs; stored with the settings, so another corpus in --out is refused."""
    import os

    path = lambda p: os.path.abspath(p) if p else None
    return {
        "recipe": args.recipe,
        "input": path(args.input),
        "split": args.split,
        "source_fps": args.source_fps,
        "csv": path(args.csv),
        "info": path(args.info),
        "num_clips": args.num_clips if args.recipe == "procedural" else None,
        "seed": args.seed if args.recipe == "procedural" else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Write video shards (:func:`lvmm.datasets.writer.write_shards`); the exit status."""
    args = build_parser().parse_args(argv)
    try:
        recipe = make_recipe(
            args.recipe,
            args.input,
            split=args.split,
            csv_path=args.csv,
            source_fps=args.source_fps,
            num_clips=args.num_clips,
            seed=args.seed,
            fps=args.fps,
            info=args.info,
        )
        settings = ShardSettings(
            size=args.size or recipe.size or (64, 64),
            fit=args.fit or recipe.fit,
            clip_len=recipe.clip_len if args.clip_len == -1 else args.clip_len,
            stride=args.stride,
            fps=args.fps,
            fmt=args.format,
            crf=args.crf,
            max_clips=args.max_clips,
        )
        sources = recipe.sources()
    except (ValueError, FileNotFoundError) as e:
        print(f"make_shards: {e}", file=sys.stderr)
        return 2
    if not sources:
        print(f"make_shards: the {args.recipe} recipe found no inputs under {args.input}", file=sys.stderr)
        return 1
    try:
        summary = write_shards(
            sources,
            args.out,
            args.name or recipe.name,
            settings,
            workers=args.workers,
            partition=args.shard_index,
            num_partitions=args.num_shards,
            max_samples=args.max_samples,
            max_bytes=args.max_bytes,
            retry_failed=args.retry_failed,
            progress=not args.no_progress,
            corpus=corpus_of(args),
        )
    except ValueError as e:
        print(f"make_shards: {e}", file=sys.stderr)
        return 2
    except WorkerDied as e:
        print(f"make_shards: {e}", file=sys.stderr)
        return 1
    print(summary.report())
    return 0 if summary.ok else 1


def run() -> None:
    """The console script `lvmm-make-shards`: :func:`main` on the command line, its outcome as the exit status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
