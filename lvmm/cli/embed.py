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

import numpy as np

TEXT_SUFFIXES = (".txt",)
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac")
MODALITY_NAMES = {"image": "vision", "text": "text", "audio": "audio"}


def _suffixes(modality: str) -> dict[str, tuple[str, ...]]:
    from lvmm.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    table = {"image": IMAGE_SUFFIXES, "text": TEXT_SUFFIXES, "audio": AUDIO_SUFFIXES}
    if modality == "audio":  # videos only when audio is asked for explicitly: their track is used
        table["audio"] = AUDIO_SUFFIXES + tuple(s for s in VIDEO_SUFFIXES if s != ".gif")
    return table if modality == "auto" else {modality: table[modality]}


def find_inputs(root: Path, modality: str) -> dict[str, list[Path]]:
    """Files under ``root`` by modality, sorted, matched on their (case-insensitive) suffix."""
    found = {m: [] for m in _suffixes(modality)}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for m, suffixes in _suffixes(modality).items():
            if path.suffix.lower() in suffixes:
                found[m].append(path)
    return found


def _read_texts(path: Path, per_line: bool) -> list[str]:
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read as UTF-8 text ({e})") from e
    if not per_line:
        return [content.strip()]
    lines = [line.strip() for line in content.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no non-empty line")
    return lines


def _embed_each(embed, items, names, failures):
    """Embed a batch; if an item is bad, fall back to one at a time to skip just that one."""
    try:
        return list(embed(items))
    except Exception:
        out = []
        for item, name in zip(items, names):
            try:
                out.append(embed([item])[0])
            except Exception as e:
                failures.append(f"{name}: {e}")
                out.append(None)
        return out


def main(argv: list[str] | None = None) -> int:
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

    inputs = find_inputs(args.input_dir, args.modality)
    failures: list[str] = []
    written: dict[str, dict] = {}

    def save(path: Path, vectors) -> None:
        rel = path.relative_to(args.input_dir).as_posix()
        target = args.output_dir / f"{rel}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        array = np.asarray(vectors, dtype=np.float32)
        np.save(target, array)
        written[rel] = {"modality": kind, "shape": list(array.shape)}

    for kind, paths in inputs.items():
        if not paths:
            continue
        print(f"[embed] {len(paths)} {kind} file(s)", file=sys.stderr)
        if kind == "text":
            for path in paths:  # texts are cheap to read; the encoder batches across them
                try:
                    texts = _read_texts(path, args.text_per_line)
                    vectors = enc.embed_texts(texts)
                except Exception as e:
                    failures.append(f"{path}: {e}")
                    continue
                save(path, vectors.numpy() if args.text_per_line else vectors[0].numpy())
        else:
            embed = enc.embed_images if kind == "image" else enc.embed_audio
            for start in range(0, len(paths), args.batch_size):
                chunk = paths[start : start + args.batch_size]
                for path, vector in zip(chunk, _embed_each(embed, chunk, chunk, failures)):
                    if vector is not None:
                        save(path, vector.numpy())

    args.output_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "weights_id": enc.weights_id,
        "weights": args.weights,
        "config": enc.config.to_dict(),
        "dim": enc.dim,
        "precision": enc.precision,
        "text_per_line": args.text_per_line,
        "files": written,
        "failed": failures,
    }
    (args.output_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
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
