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

from lvmm.cli import parse_with_config_section
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
    """Generate one video per test sample and seed (:func:`lvmm.generation.generate`); the summary."""
    args = parse_args(argv)
    from lvmm.generation import generate

    try:
        return generate(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


def run() -> None:
    """The console script `lvmm-generate`: :func:`main` on the command line, its outcome as the exit status."""
    main()


if __name__ == "__main__":
    run()
