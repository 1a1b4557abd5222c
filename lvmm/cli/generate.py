"""Generate one video per test sample (the benchmark protocol), named by the sample's key.

    python tools/generate.py --config configs/benchmark/mug.yaml                  # the 'generate' section
    python tools/generate.py --ckpt STAGE2.ckpt --reference 'data/mug/mug-test-*.tar' --protocol mug \\
        --seeds 0-2 --out gen/
    python tools/generate.py --config configs/benchmark/mug.yaml --devices 8 --num-nodes 2   # DDP over GPUs and nodes

Each test sample (json ``split`` = test, or ``--test-subjects``) is animated from its first frame,
resized to the protocol's size, conditioned on its caption (its class's sentence; ``--condition none``
for image only), once per seed: ``OUT/KEY_seed<S>.mp4`` with the protocol's number of frames (I_0 and
K = frames - 1 generated ones). Lightning's predict loop shards the samples over ranks; a rerun skips
finished videos. Then: ``python tools/evaluate.py --config configs/benchmark/mug.yaml``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lvmm.cli import parse_int_list, parse_size, parse_with_config_section
from lvmm.diffusion.schedules import SAMPLERS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML whose 'generate' section gives defaults (flags override it)")
    p.add_argument("--ckpt", default=None, help="stage-two checkpoint")
    p.add_argument("--stage1-ckpt", default=None, help="stage-one checkpoint (default: the one recorded in --ckpt)")
    p.add_argument("--reference", nargs="+", default=None, help="test video shards (brace patterns, globs, files)")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--protocol", default="custom", help="mug, mhad, natops (size and length) or custom")
    p.add_argument("--size", default=None, help="override the protocol's frame size, HxW or N")
    p.add_argument("--frames", type=int, default=None, help="override the protocol's video length (I_0 included)")
    p.add_argument("--test-subjects", default=None, help="comma-separated test subjects, for shards without a 'split'")
    p.add_argument("--seeds", default="0", help="e.g. 0-2 or 0,5: one video per sample and seed")
    p.add_argument(
        "--condition", default="caption", choices=["caption", "none"], help="text token: the sample's caption, or none"
    )
    p.add_argument("--sampler", default="ddim", choices=SAMPLERS)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--imagebind", default=None, help="ImageBind weights (those the latents were made with)")
    p.add_argument("--imagebind-config", default=None)
    p.add_argument("--format", default="mp4", choices=["mp4", "npy"])
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--overwrite", action="store_true", help="accept other settings than the folder's generate.json")
    return p


def parse_args(argv):
    p = build_parser()
    args = parse_with_config_section(
        p, argv, "generate", required=("ckpt", "reference", "out"), list_options=("reference",)
    )
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from lvmm.animation import AnimationOptions
    from lvmm.datasets.readers import expand_shards
    from lvmm.evaluation.protocols import get_protocol
    from lvmm.generation import (
        TestSamples,
        VideoGeneration,
        VideoWriter,
        check_settings,
        finished_keys,
        list_test_samples,
    )

    started = time.time()
    protocol = get_protocol(args.protocol)
    try:
        size = parse_size(args.size) or (protocol.height, protocol.width)
        seeds = parse_int_list(args.seeds)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    frames = args.frames or protocol.num_frames
    if size[0] is None:
        raise SystemExit("error: protocol 'custom' needs --size (and --frames, or the checkpoint's length)")
    subjects = [s.strip() for s in args.test_subjects.split(",")] if args.test_subjects else None
    try:
        shards = expand_shards(args.reference)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    samples = list_test_samples(shards, protocol.reference_split, subjects)
    if not samples:
        raise SystemExit(f"error: no test samples in {len(shards)} shard(s) (split {protocol.reference_split!r})")
    out = Path(args.out)
    settings = {
        "ckpt": str(Path(args.ckpt).resolve()),
        "protocol": protocol.name,
        "size": list(size),
        "frames": frames,
        "sampler": args.sampler,
        "steps": args.steps,
        "eta": args.eta,
        "guidance_scale": args.guidance_scale,
        "condition": args.condition,
        "imagebind": args.imagebind,
        "format": args.format,
    }
    try:
        check_settings(out, settings, args.overwrite)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    done = finished_keys(out, [k for _, k in samples], seeds, args.format)
    print(
        f"[generate] {len(samples)} test samples x {len(seeds)} seed(s), {len(done)} already finished; "
        f"{frames} frames at {size[0]}x{size[1]} (protocol {protocol.name}) -> {out}"
    )
    options = AnimationOptions(
        num_frames=frames - 1,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        guidance_scale=args.guidance_scale,
        size=min(size),
    )
    module = VideoGeneration(
        args.ckpt, seeds, options, args.stage1_ckpt, args.imagebind, args.imagebind_config, args.condition
    )
    writer = VideoWriter(out, args.format, args.fps)
    loader = DataLoader(TestSamples(samples, size, done), batch_size=1, collate_fn=list)
    gpu = torch.cuda.is_available() and args.accelerator in ("auto", "gpu", "cuda")
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        logger=False,
        precision="bf16-mixed" if gpu else "32-true",
        callbacks=[writer],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    if len(done) < len(samples):
        trainer.predict(module, loader, return_predictions=False)
    summary = {
        "samples": len(samples),
        "seeds": seeds,
        "skipped": len(done),
        "written": len(writer.written),
        "out": str(out),
        "seconds": round(time.time() - started, 1),
    }
    if trainer.is_global_zero:
        print(
            f"[generate] wrote {summary['written']} video(s) on rank 0 ({summary['skipped']} samples were finished) "
            f"in {summary['seconds']} s"
        )
    return summary


def run() -> None:
    """The console script `lvmm-generate`: :func:`main` on the command line, its outcome as the exit status."""
    main()


if __name__ == "__main__":
    run()
