"""The main job: built-in data to a seamless loop of a real photograph, with a report.

    bash tools/dev.sh demo                      # the full demo (about 45 minutes on 2 CPU cores)
    python tools/demo.py --preset test          # the whole pipeline at a smaller size (the test uses this)

Steps, each a command you can also run on its own (the demo prints every command it runs):
  1. corpus     tools/make_shards.py --recipe procedural   (train clips, and held-out photographs for val)
  2. stage1     tools/train.py fit --config configs/stage1/tiny.yaml --config configs/stage1/tiny_shards.yaml
  3. latents    tools/encode_motion.py                      (train and val latent motion shards)
  4. stage2     tools/train.py fit --config configs/stage2/tiny.yaml --config configs/stage2/tiny_shards.yaml
  5. animate    tools/animate.py                            (stochastic, text-conditioned, loop, slow-motion loop)
  6. report     tools/report.py                             (markdown, plots, contact sheet)
  7. export     tools/export.py                             (both stages as one model package)
The same commands run the full-size configs on GPUs by changing the config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lvmm.demo import PRESETS, run_demo


def main(argv: list[str] | None = None) -> dict:
    """Run the demo (:func:`lvmm.demo.run_demo`); where each output is."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="working folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument(
        "--imagebind",
        default=None,
        help="official ImageBind weights (imagebind_huge.pth); default: a small seeded random ImageBind",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the corpus, checkpoints and latents an earlier run of the "
        "same preset left in --out (they are the steps' outputs); "
        "animate and report run again",
    )
    args = parser.parse_args(argv)
    return run_demo(args.out, args.preset, args.imagebind, args.reuse)


def run() -> None:
    """The console script `lvmm-demo`: :func:`main` on the command line."""
    main()


if __name__ == "__main__":
    run()
