"""Export trained checkpoints as a model package that loads in one line.

    python tools/export.py --stage2 STAGE2.ckpt --out models/lvmm-tiny            # stage one from STAGE2's record
    python tools/export.py --stage1 STAGE1.ckpt --stage2 STAGE2.ckpt --out models/lvmm --dtype bf16

The folder holds the networks' weights as safetensors (the EMA weights when the checkpoint has them,
unless --no-ema), their configs, the diffusion config, the latent scale, the token statistics, the
training frame size when the checkpoint records it, a model card (README.md) and the sha256 of every
file (checksums.sha256). No optimizer state, no pickles, no absolute paths. Load it with

    from lvmm.pipeline import LVMMPipeline
    pipe = LVMMPipeline.from_pretrained("models/lvmm-tiny")
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from lvmm.pipeline import DTYPES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage2", required=True, help="stage-two checkpoint (.ckpt or .safetensors)")
    p.add_argument("--stage1", default=None, help="stage-one checkpoint (default: the one recorded in --stage2)")
    p.add_argument("--out", required=True, type=Path, help="the model folder to write")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="dtype of the stored weights (default fp32)")
    p.add_argument(
        "--no-ema", action="store_true", help="export the raw weights even when the checkpoint has EMA weights"
    )
    p.add_argument("--trained-on-stage1", default=None, help="training data of stage one, for the model card")
    p.add_argument("--trained-on-stage2", default=None, help="training data of stage two, for the model card")
    p.add_argument("--force", action="store_true", help="write into a folder that already holds files")
    return p


def main(argv: list[str] | None = None) -> Path:
    """Write the model package of two checkpoints (:func:`lvmm.pipeline.write_package`); its folder."""
    args = build_parser().parse_args(argv)
    from lvmm.checkpoint import CheckpointError
    from lvmm.pipeline import CHECKSUM_FILE, STAGE_NETWORKS, read_stage, write_package

    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise SystemExit(f"error: {args.out}: folder is not empty (pass --force to overwrite the package there)")
    try:
        two = read_stage(args.stage2, STAGE_NETWORKS["stage_two"], ema=not args.no_ema)
        stage1 = args.stage1 or two.extra.get("motion_checkpoint")
        if not stage1:
            raise SystemExit(f"error: {args.stage2}: records no stage-one checkpoint; pass --stage1")
        one = read_stage(stage1, STAGE_NETWORKS["stage_one"], ema=not args.no_ema)
        folder = write_package(
            args.out,
            one,
            two,
            args.dtype,
            trained_on={"stage_one": args.trained_on_stage1, "stage_two": args.trained_on_stage2},
            sources={"stage_one": Path(stage1).name, "stage_two": Path(args.stage2).name},
        )
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    for line in (folder / CHECKSUM_FILE).read_text().splitlines():
        digest, name = line.split("  ", 1)
        print(f"[export] {name:24s} {(folder / name).stat().st_size / 1e6:9.2f} MB  sha256 {digest[:16]}")
    print(f"[export] stage one: {one.origin} weights, stage two: {two.origin} weights, stored as {args.dtype}")
    print(f"[export] model package: {folder}")
    return folder


def run() -> None:
    """The console script `lvmm-export`: :func:`main` on the command line, its outcome as the exit status."""
    main()


if __name__ == "__main__":
    run()
