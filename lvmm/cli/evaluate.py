"""Evaluate generated videos against reference shards: FVD, FID on frames, LPIPS, PSNR and SSIM.

    python tools/evaluate.py --generated out/mug --reference 'shards/mug-test-{000000..000003}.tar' \\
        --protocol mug --i3d weights/i3d_pretrained_400.pt \\
        --inception weights/pt_inception-2015-12-05-6726825d.pth \\
        --lpips-backbone weights/alexnet-owt-7be5be79.pth --lpips-linear weights/lpips_v0.1_alex.pth \\
        --seeds 0 --out results/mug
    python tools/evaluate.py --config eval.yaml          # the same settings in a YAML file

Generated videos: a folder of ``.mp4``/``.gif``/... files, ``.npy`` arrays (uint8 T x H x W x 3) or
sub-folders of frame images, one per video. A file named after a reference sample's key (``KEY.mp4``,
or ``KEY_seed3.mp4`` / ``KEY-seed3.mp4`` for several seeds) is paired with that sample for PSNR, SSIM
and LPIPS. Every generated video must have the protocol's size and length; a mismatch is refused.

Reference: webdataset shards (``mp4`` or ``frames.npy``, plus ``json``). Under a dataset protocol
(mug, mhad, natops) only test samples count: the json's ``split`` must be ``test``, or its ``subject``
one of ``--test-subjects``. Reference clips of another size are resized; longer clips are brought to the
protocol length by the protocol's ``reference_sampling``: LFDM's frame 0 and the rest at random, sorted in
time and seeded by the key (mug, mhad, natops), or evenly spaced frames (custom); both are reported.

FVD is computed for each seed's videos separately (seeds from the ``_seedN`` file names) and reported as
mean +- std over the seeds, with class- and subject-conditional FVD (the FVD within each class or subject
of the reference json, averaged over the classes or subjects with at least two videos on both sides).

Config file (YAML; CLI flags override it): the keys are the long option names (``generated``,
``reference`` (a string or a list), ``protocol``, ``seeds``, ``metrics``, ``out``, ...), with the weight
paths either flat (``i3d``, ``inception``, ``lpips_backbone``, ``lpips_linear``) or under ``weights:``.
A generation config may carry these under an ``evaluate:`` section; other sections are then ignored.

Output: the protocol and the numbers on stdout, ``metrics.json`` and ``metrics.md`` under ``--out``.
Exit status 2 with a one-line message on a refused input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lvmm.evaluation.benchmark import (
    ALL_METRICS,
    EvaluationError,
    evaluate,
    markdown_table,
    protocol_text,
    write_report,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="YAML file with any of the options below (CLI flags override it)")
    p.add_argument("--generated", help="folder of generated videos")
    p.add_argument("--reference", nargs="+", help="reference shards: brace patterns, globs or files")
    p.add_argument("--protocol", help="mug, mhad, natops or custom (default: custom)")
    p.add_argument(
        "--metrics",
        help=f"comma-separated subset of {','.join(ALL_METRICS)} (default: all that the given weights and pairs allow)",
    )
    p.add_argument("--i3d", help="I3D Kinetics-400 weights (FVD)")
    p.add_argument("--inception", help="FID Inception-v3 weights (FID)")
    p.add_argument("--lpips-backbone", help="torchvision AlexNet weights (LPIPS)")
    p.add_argument("--lpips-linear", help="LPIPS v0.1 alex.pth calibration weights (LPIPS)")
    p.add_argument("--seeds", help="seeds the generated videos were made with, e.g. '0-3' or '0,5' (reported)")
    p.add_argument(
        "--test-subjects", help="comma-separated subjects of the test split, for shards without a 'split' field"
    )
    p.add_argument("--size", help="override the protocol's frame size, HxW or N")
    p.add_argument("--frames", type=int, help="override the protocol's number of frames")
    p.add_argument("--fvd-frames", type=int, help="feed I3D only the first N frames of each clip (e.g. 16)")
    p.add_argument("--i3d-size", type=int, help="I3D input size (protocol: 224; change only for quick tests)")
    p.add_argument(
        "--inception-size", type=int, help="Inception input size (protocol: 299; change only for quick tests)"
    )
    p.add_argument("--batch-size", type=int, help="clips per I3D batch (default 8); does not change the results")
    p.add_argument("--frame-batch-size", type=int, help="frames per Inception batch (default 64)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps, ...")
    p.add_argument("--out", help="folder for metrics.json and metrics.md")
    return p


DEFAULTS = {"protocol": "custom", "batch_size": 8, "frame_batch_size": 64, "device": "auto"}


def resolve_options(argv: list[str] | None) -> argparse.Namespace:
    """CLI flags over the config file over the defaults."""
    args = build_parser().parse_args(argv)
    if args.config:
        import yaml

        path = Path(args.config)
        if not path.is_file():
            raise EvaluationError(f"{path}: config file not found")
        config = yaml.safe_load(path.read_text()) or {}
        if not isinstance(config, dict):
            raise EvaluationError(f"{path}: expected a mapping of options")
        strict = "evaluate" not in config
        config = dict(config.get("evaluate", config))
        config.update(config.pop("weights", None) or {})
        known = set(vars(args)) - {"config"}
        for key, value in config.items():
            name = key.replace("-", "_")
            if name not in known:
                if strict:
                    raise EvaluationError(f"{path}: unknown option {key!r} (known: {', '.join(sorted(known))})")
                continue
            if getattr(args, name) is None:
                if name == "reference" and isinstance(value, str):
                    value = [value]
                if name in ("seeds", "test_subjects", "metrics") and isinstance(value, list):
                    value = ",".join(str(v) for v in value)
                setattr(args, name, value)
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    """Evaluate generated videos (:func:`lvmm.evaluation.benchmark.evaluate`); the exit status (2: refused)."""
    try:
        args = resolve_options(argv)
        report = evaluate(args)
    except EvaluationError as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    print(protocol_text(report))
    print()
    print(markdown_table(report))
    if args.out:
        for path in write_report(report, args.out):
            print(f"wrote {path}")
    return 0


def run() -> None:
    """The console script `lvmm-evaluate`: :func:`main` on the command line, its outcome as the exit status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
