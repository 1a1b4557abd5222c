"""The demo's report: how well each part of a trained LVMM works, measured, in markdown with plots.

    python tools/report.py --stage1 S1.ckpt --stage2 S2.ckpt --latents outputs/demo/latents/train \\
        --val-latents outputs/demo/latents/val --photos coffee.png rocket.png --out outputs/demo/report

Sections: stage one's PSNR/SSIM against the copy-I_0 and true-field baselines (lvmm-eval-stage1 on
held-out procedural clips); stage two's conditioning accuracy (a family classifier fit on decoded
fields of true clips labels text-conditioned samples); generated / true motion magnitude (overall and
per family); loops as they play (wrap ratio, motion kept) with and without loop guidance, the pop out
of the photo and the sharpness of the frames at 512 px; sampler time per clip and the time of a
40-frame animation of a 1024x768 photo; every motion control (strength, motion amount, region brush,
drag arrows, long clips, audio prompts) with its own contact sheet and clip; a contact sheet. Each
target is marked met or missed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lvmm.evaluation.demo_report import ReportSettings, build_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage1", type=Path, required=True)
    p.add_argument("--stage2", type=Path, required=True)
    p.add_argument(
        "--latents", type=Path, required=True, help="latent shards of training clips (fits the family classifier)"
    )
    p.add_argument(
        "--val-latents", type=Path, required=True, help="latent shards of held-out clips (first frames, captions)"
    )
    p.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        required=True,
        help="held-out photographs (loops, pop, sharpness; resized to a 512-px short side)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--imagebind", default=None)
    p.add_argument("--steps", type=int, default=ReportSettings.steps)
    p.add_argument("--guidance-scale", type=float, default=ReportSettings.guidance_scale)
    p.add_argument("--loop-guidance", type=float, default=ReportSettings.loop_guidance)
    p.add_argument("--clips-per-family", type=int, default=ReportSettings.clips_per_family)
    p.add_argument("--stage1-clips", type=int, default=ReportSettings.stage1_clips)
    p.add_argument(
        "--amount-images",
        type=int,
        default=ReportSettings.amount_images,
        help="held-out first frames per family for the motion amount's correlation",
    )
    p.add_argument(
        "--long-clip-frames",
        type=int,
        default=ReportSettings.long_clip_frames,
        help="frames of the long clip sampled in windows",
    )
    p.add_argument(
        "--control-clips",
        type=int,
        default=ReportSettings.control_clips,
        help="clips per family and amount for the family accuracy at each motion amount",
    )
    p.add_argument(
        "--loop-seeds",
        "--seam-seeds",
        dest="loop_seeds",
        type=int,
        default=ReportSettings.loop_seeds,
        help="seeds per photo for the loop measures",
    )
    return p


def main(argv: list[str] | None = None) -> dict:
    """Measure and write the report (:func:`lvmm.evaluation.demo_report.build_report`); returns it."""
    return build_report(ReportSettings(**vars(build_parser().parse_args(argv))))


def run() -> None:
    """The console script `lvmm-report`: :func:`main` on the command line."""
    main()


if __name__ == "__main__":
    run()
