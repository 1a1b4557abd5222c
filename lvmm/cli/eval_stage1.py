"""Evaluate a stage-one checkpoint: rendered frames against the true ones, beside baselines.

    python tools/eval_stage1.py --ckpt outputs/stage1-tiny/.../last.ckpt --procedural 32 --out stage1_eval.json
    python tools/eval_stage1.py --ckpt model.ckpt --shards "data/mug/val-{000000..000009}.tar" --size 128 128

``--procedural N``: N clips of the built-in data on the held-out photographs, every frame k >= 1 paired
with frame 0 (so N x (frames - 1) pairs), with true fields (end-point errors are reported too).
``--shards``: a webdataset shard set read by ``lvmm.datasets.datamodule.ShardDataModule`` in pair mode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lvmm.evaluation.stage_one import evaluate_stage_one, format_table, procedural_batches, shard_batches
from lvmm.motion import MotionModel


def main(argv: list[str] | None = None) -> dict:
    """Evaluate a stage-one checkpoint (:func:`lvmm.evaluation.stage_one.evaluate_stage_one`); the result."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="stage-one .ckpt or .safetensors")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--procedural", type=int, metavar="N", help="N held-out procedural clips")
    src.add_argument("--shards", help="webdataset shard pattern")
    p.add_argument(
        "--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="frame size (default 64 64 procedural)"
    )
    p.add_argument("--num-frames", type=int, default=9, help="procedural clip length (pairs k = 1..frames-1)")
    p.add_argument("--max-interval", type=int, default=8, help="shards: largest k")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--seed", type=int, default=1, help="procedural corpus seed (1 = the training config's val split)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args(argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = MotionModel.from_checkpoint(args.ckpt, device=device)
    if args.procedural:
        h, w = args.size or (64, 64)
        batches = procedural_batches(
            args.procedural, h, w, args.num_frames, args.seed, max(1, args.batch_size // (args.num_frames - 1))
        )
    else:
        batches = shard_batches(args.shards, list(args.size or (128, 128)), args.batch_size, args.max_interval)
    result = evaluate_stage_one(model, batches, device, args.max_batches)
    result["checkpoint"] = str(args.ckpt)
    print(format_table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


def run() -> None:
    """The console script `lvmm-eval-stage1`: :func:`main` on the command line, its outcome as the exit status."""
    main()


if __name__ == "__main__":
    run()
