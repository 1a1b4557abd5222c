"""Run a trained stage one over video shards and write latent motion shards (docs/data-formats.md, Latent motion
shards).

    python tools/encode_motion.py --ckpt stage1.ckpt --shards 'data/train-*.tar' --out latents/train
    python tools/encode_motion.py ... --devices 8 --num-nodes 4       # DDP: each rank writes its own shards

Each input shard becomes one output shard, written atomically and recorded in a manifest; a rerun
resumes where a killed run stopped. Clips whose last frame re-renders with an MSE above
``--threshold`` (0-255 scale) are dropped and counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lvmm.cli import parse_with_config_section
from lvmm.stages.motion_encoding import DEFAULT_THRESHOLD


def expand_shards(patterns: list[str], allow_remote: bool = False) -> list[str]:
    """Input shard paths (the shared spec parser), with distinct file names (outputs are named after them)."""
    from lvmm.datasets.readers import expand_shards as parse_spec

    try:
        paths = parse_spec(list(patterns), allow_remote=allow_remote)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: input shards: {e}") from None
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        raise SystemExit("error: input shards must have distinct file names (outputs are named after them)")
    return paths


SETTINGS = "settings.json"


def settings_of(args) -> dict:
    """What the latents depend on: a rerun into the same folder must use the same."""
    ckpt = Path(args.ckpt)
    stat = ckpt.stat() if ckpt.exists() else None
    return {
        "ckpt": str(ckpt.resolve()),
        "ckpt_size": stat.st_size if stat else None,
        "ckpt_mtime": stat.st_mtime if stat else None,
        "num_frames": args.num_frames,
        "sampling": args.sampling,
        "stride": args.stride,
        "max_segments": args.max_segments,
        "threshold": args.threshold,
        "imagebind": args.imagebind,
        "imagebind_config": args.imagebind_config,
    }


def check_settings(out: Path, settings: dict) -> None:
    """Record the settings on the first run; refuse to resume with different ones."""
    from lvmm.datasets.manifest import check_settings as differing

    try:
        diff = differing(out / SETTINGS, settings)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if diff:
        raise SystemExit(
            f"error: {out} holds latents made with other settings ({', '.join(diff)} differ): "
            "use another --out, or --overwrite to start over"
        )


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config",
        default=None,
        help="YAML whose 'encode' section gives defaults for these options "
        "(e.g. configs/benchmark/mug.yaml); flags override it",
    )
    p.add_argument("--ckpt", default=None, help="stage-one checkpoint (.ckpt or .safetensors)")
    p.add_argument("--shards", nargs="+", default=None, help="video shards: paths, globs or brace patterns")
    p.add_argument("--out", default=None, help="output folder for latent shards and manifests")
    p.add_argument(
        "--sampling",
        default=None,
        choices=["consecutive", "random_sorted"],
        help="consecutive windows every --stride frames (default), or frame 0 + N-1 random frames sorted in "
        "time, --max-segments draws per video (the LFDM benchmark clips)",
    )
    p.add_argument("--num-frames", type=int, default=9, help="K + 1 frames per clip (default 9: K = 8)")
    p.add_argument("--stride", type=int, default=4, help="frames between clip starts")
    p.add_argument("--max-segments", type=int, default=None, help="most clips per video sample")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="drop clips whose last-frame MSE (0-255) is above this",
    )
    p.add_argument(
        "--imagebind", default=None, help="ImageBind weights (imagebind_huge.pth); default: a seeded random tiny model"
    )
    p.add_argument(
        "--imagebind-config", default=None, help="'huge' or 'tiny' (default: huge with weights, tiny without)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="data-loader workers per rank")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--precision", default=None, help="default: bf16-mixed on GPU, 32 on CPU")
    p.add_argument(
        "--overwrite", action="store_true", help="delete latents and manifests already in --out and start over"
    )
    p.add_argument(
        "--allow-remote-shards",
        action="store_true",
        help="accept pipe: and URL shard specs (pipe: runs a shell command: only for specs you wrote)",
    )
    args = parse_with_config_section(p, argv, "encode", required=("ckpt", "shards", "out"), list_options=("shards",))
    args.sampling = args.sampling or "consecutive"
    return args


def main(argv: list[str] | None = None) -> dict:
    """Encode video shards into latent motion shards, resuming a killed run; the summary of the counts."""
    args = parse_args(argv)
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from lvmm.datasets.latent_encoding import LatentShardWriter, VideoClipBatches, finished_inputs, read_manifests
    from lvmm.imagebind import ImageBindEncoder
    from lvmm.motion import MotionModel
    from lvmm.stages.motion_encoding import MotionEncoding

    shards = expand_shards(args.shards, allow_remote=args.allow_remote_shards)
    out = Path(args.out)
    if args.overwrite and out.exists():
        for f in [
            *out.glob("latent-*.tar"),
            *out.glob(".latent-*.tar.tmp-rank*"),
            *out.glob("manifest-rank*.jsonl"),
            out / SETTINGS,
        ]:
            f.unlink(missing_ok=True)
    check_settings(out, settings_of(args))
    done = finished_inputs(out) if out.exists() else set()
    todo = [s for s in shards if Path(s).name not in done]
    print(
        f"[encode_motion] {len(shards)} input shard(s), {len(shards) - len(todo)} already finished, {len(todo)} to do"
    )

    motion = MotionModel.from_checkpoint(args.ckpt)
    config = args.imagebind_config or ("huge" if args.imagebind else "tiny")
    try:
        encoder = ImageBindEncoder(weights=args.imagebind, config=config)
    except ValueError as e:  # e.g. the huge config without weights
        raise SystemExit(f"error: {e}") from None
    module = MotionEncoding(motion, encoder, threshold=args.threshold)
    dataset = VideoClipBatches(
        todo,
        num_frames=args.num_frames,
        stride=args.stride,
        max_segments=args.max_segments,
        batch_size=args.batch_size,
        sampling=args.sampling,
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=args.workers)
    writer = LatentShardWriter(out)
    gpu = torch.cuda.is_available() and args.accelerator in ("auto", "gpu", "cuda")
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        precision=args.precision or ("bf16-mixed" if gpu else "32-true"),
        logger=False,
        callbacks=[writer],
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    if todo:
        trainer.predict(module, loader, return_predictions=False)

    summary = {
        "shards": len(shards),
        "read": 0,
        "kept": 0,
        "dropped": 0,
        "failed": 0,
        "videos": 0,
        "unreadable": writer.unreadable,
    }
    errors = []
    for row in read_manifests(out):
        for k in ("read", "kept", "dropped", "failed", "videos"):
            summary[k] += row[k]
        errors += row["errors"]
    if trainer.is_global_zero:
        for e in writer.unreadable:
            print(f"[encode_motion] unreadable input shard (not recorded; a rerun retries it): {e}")
        for e in errors:
            print(f"[encode_motion] failed: {e}")
        print(
            f"[encode_motion] clips read {summary['read']}, kept {summary['kept']}, dropped {summary['dropped']} "
            f"(threshold {args.threshold}), failed samples {summary['failed']}; shards in {out}"
        )
    return summary


def run() -> None:
    """The console script `lvmm-encode-motion`: :func:`main` on the command line, its outcome as the exit status."""
    summary = main()
    sys.exit(0 if (summary["read"] or not summary["failed"]) and not summary["unreadable"] else 1)


if __name__ == "__main__":
    run()
