"""CLIP byte-level BPE tokenizer, as ImageBind's ``load_and_transform_text`` uses it.

The vocabulary is OpenAI CLIP's ``bpe_simple_vocab_16e6.txt.gz``. It is not shipped with LVMM: by
default it is read from the ``open_clip_torch`` package, which carries a byte-identical copy
(checked by sha256); any other copy can be passed as ``bpe_path`` or ``$LVMM_BPE_VOCAB``.

Ids are ``[<|startoftext|>] + bpe`` cut to the first ``context_length - 1`` ids, then
``<|endoftext|>`` and zero padding: the end-of-text token, which the text head pools, is always
present (the official rule since ImageBind commit 1125e1e, November 2025).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import html
import importlib.util
import os
from pathlib import Path
from typing import Sequence

import torch

CONTEXT_LENGTH = 77
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49408
NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2  # byte symbols, byte symbols + </w>, two specials
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
PAD_ID = 0
END_OF_WORD = "</w>"
# Pre-tokenisation: special tokens, English contractions, letter runs, single digits, other runs.
PRETOKEN_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def default_vocab_path() -> Path:
    """``$LVMM_BPE_VOCAB``, else open_clip's copy (located without importing open_clip)."""
    env = os.environ.get("LVMM_BPE_VOCAB")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"CLIP BPE vocabulary not found: install open_clip_torch, or set LVMM_BPE_VOCAB to a copy of {VOCAB_FILE}")
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE


@functools.lru_cache()
def byte_to_unicode() -> dict[int, str]:
    """Reversible map of the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the rest (controls, space, ...) are moved to code
    points from 256 on, so that BPE never sees whitespace or control characters.
    The dict's order (kept bytes first, then the moved ones) is the order of the first 256
    vocabulary entries.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    moved = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(moved)}}


def clean_text(text: str) -> str:
    """ftfy repair, double HTML unescape, whitespace collapse, lower case (CLIP's cleaning)."""
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class BPETokenizer:
    """Byte-level BPE with CLIP's vocabulary; call it on a list of strings to get ``(N, 77)`` ids."""

    def __init__(self, bpe_path: str | Path | None = None, context_length: int = CONTEXT_LENGTH, check_sha256: bool = True):
        import regex

        path = Path(bpe_path) if bpe_path is not None else default_vocab_path()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CLIP BPE vocabulary not found (expected {VOCAB_FILE})")
        raw = path.read_bytes()
        if check_sha256 and hashlib.sha256(raw).hexdigest() != VOCAB_SHA256:
            raise ValueError(f"{path}: not the CLIP BPE vocabulary (sha256 differs from {VOCAB_SHA256})")
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 1 + NUM_MERGES]]  # line 0 is a header

        symbols = list(byte_to_unicode().values())
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.merge_rank = {pair: i for i, pair in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.context_length = context_length
        self.byte_map = byte_to_unicode()
        self.pattern = regex.compile(PRETOKEN_PATTERN, regex.IGNORECASE)
        # Special tokens written literally in a text are kept whole.
        self._cache: dict[str, tuple[str, ...]] = {SOT: (SOT,), EOT: (EOT,)}

    def bpe(self, word: str) -> tuple[str, ...]:
        """Split one pre-token (already byte-mapped) into vocabulary symbols."""
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + END_OF_WORD]
        while len(parts) > 1:
            # Apply the earliest-learned merge present anywhere in the word, at every occurrence.
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda p: self.merge_rank.get(p, float("inf")))
            if best not in self.merge_rank:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        out = tuple(parts)
        self._cache[word] = out
        return out

    def encode(self, text: str) -> list[int]:
        """BPE ids of a text, without start/end tokens or truncation."""
        ids = []
        for token in self.pattern.findall(clean_text(text)):
            mapped = "".join(self.byte_map[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(mapped))
        return ids

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """``(N, context_length)`` int64 ids; the end-of-text token is always kept."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.full((len(texts), self.context_length), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {row} is a {type(text).__name__}, not a str")
            ids = ([self.sot_id] + self.encode(text))[: self.context_length - 1] + [self.eot_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out


@functools.lru_cache(maxsize=4)
def get_tokenizer(bpe_path: str | None = None) -> BPETokenizer:
    """A shared tokenizer (reading the vocabulary takes about a second)."""
    return BPETokenizer(bpe_path)
