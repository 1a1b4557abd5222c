"""Embedding a folder of images, texts and audio files into ``.npy`` files (``lvmm-embed``).

Every input ``INPUT/rel/name.ext`` (searched recursively) gives ``OUTPUT/rel/name.ext.npy``; the extension
stays in the name so ``a.png`` and ``a.txt`` never collide. ``OUTPUT/manifest.json`` records the weights id,
the configuration and the file list. An unreadable file is reported and skipped; the rest are written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .encoder import ImageBindEncoder

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


def embed_folder(
    enc: ImageBindEncoder,
    input_dir: Path,
    output_dir: Path,
    modality: str = "auto",
    batch_size: int = 16,
    text_per_line: bool = False,
    weights: str | None = None,
) -> tuple[dict[str, dict], list[str]]:
    """Embed every input file under ``input_dir`` into ``output_dir`` and write the manifest.

    Returns ``(written, failures)``: ``{rel: {"modality", "shape"}}`` of the files written, and one
    ``"path: reason"`` per file skipped. ``weights`` is recorded in the manifest as given."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    inputs = find_inputs(input_dir, modality)
    failures: list[str] = []
    written: dict[str, dict] = {}

    def save(path: Path, vectors) -> None:
        rel = path.relative_to(input_dir).as_posix()
        target = output_dir / f"{rel}.npy"
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
                    texts = _read_texts(path, text_per_line)
                    vectors = enc.embed_texts(texts)
                except Exception as e:
                    failures.append(f"{path}: {e}")
                    continue
                save(path, vectors.numpy() if text_per_line else vectors[0].numpy())
        else:
            embed = enc.embed_images if kind == "image" else enc.embed_audio
            for start in range(0, len(paths), batch_size):
                chunk = paths[start : start + batch_size]
                for path, vector in zip(chunk, _embed_each(embed, chunk, chunk, failures)):
                    if vector is not None:
                        save(path, vector.numpy())

    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "weights_id": enc.weights_id,
        "weights": weights,
        "config": enc.config.to_dict(),
        "dim": enc.dim,
        "precision": enc.precision,
        "text_per_line": text_per_line,
        "files": written,
        "failed": failures,
    }
    (output_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return written, failures
