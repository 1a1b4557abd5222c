"""Embed a folder of images, texts or audio with ImageBind into ``.npy`` files.

    python tools/embed.py INPUT_DIR OUTPUT_DIR [--weights imagebind_huge.pth] [--modality auto]

Every input file ``INPUT_DIR/rel/name.ext`` (searched recursively) gives
``OUTPUT_DIR/rel/name.ext.npy``, a float32 vector of the embedding width (1024 for huge); keeping
the extension in the name means ``a.png`` and ``a.txt`` never collide. Texts (``.txt``, UTF-8) are
one text per file by default; with ``--text-per-line`` each non-empty line is a text and the file
gives a ``(lines, width)`` array. Audio is any file PyAV decodes (wav, flac, mp3, ...; with
``--modality audio`` also the audio track of videos). ``OUTPUT_DIR/manifest.json`` records the
weights id, configuration and the file list. Unreadable files are reported and skipped (exit
status 1); the rest are still written.

Without ``--weights`` a seeded random model stands in (default config ``tiny``): useful for tests,
meaningless as features. The official ``imagebind_huge.pth`` is CC BY-NC-SA 4.0 (non-commercial).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Embed a folder (:func:`lvmm.imagebind.folder.embed_folder`); the exit status: 1 when a file was skipped."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument(
        "--modality",
        choices=["auto", "image", "text", "audio"],
        default="auto",
        help="which files to embed (auto: by suffix; videos only with 'audio')",
    )
    parser.add_argument("--weights", help="official-format weights (.pth or .safetensors); default: random weights")
    parser.add_argument(
        "--config", help="'huge', 'tiny' or a JSON dict of overrides (default: huge with --weights, tiny without)"
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--cache-dir", help="embedding cache folder (default: no cache)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random model (without --weights)")
    parser.add_argument("--text-per-line", action="store_true", help="each non-empty line of a .txt file is a text")
    args = parser.parse_args(argv)

    from lvmm.imagebind import ImageBindEncoder
    from lvmm.imagebind.folder import embed_folder

    if not args.input_dir.is_dir():
        parser.error(f"{args.input_dir}: not a folder")
    config = json.loads(args.config) if args.config and args.config.lstrip().startswith("{") else args.config
    if args.weights is None:
        print(
            "[embed] no --weights given: using a seeded RANDOM model (the embeddings carry no meaning)", file=sys.stderr
        )
    enc = ImageBindEncoder(
        weights=args.weights,
        config=config,
        device=args.device,
        cache_dir=args.cache_dir,
        seed=args.seed,
        batch_size=args.batch_size,
    )

    written, failures = embed_folder(
        enc, args.input_dir, args.output_dir, args.modality, args.batch_size, args.text_per_line, args.weights
    )
    for failure in failures:
        print(f"[embed] skipped {failure}", file=sys.stderr)
    print(
        f"[embed] wrote {len(written)} embedding file(s) to {args.output_dir} (weights {enc.weights_id}, dim "
        f"{enc.dim})",
        file=sys.stderr,
    )
    return 1 if failures else 0


def run() -> None:
    """The console script `lvmm-embed`: :func:`main` on the command line, its outcome as the exit status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
