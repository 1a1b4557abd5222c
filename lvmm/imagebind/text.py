"""CLIP byte-level BPE tokenizer, as ImageBind's ``load_and_transform_text`` uses it, on top of open_clip's.

``open_clip_torch`` ships OpenAI CLIP's vocabulary ``bpe_simple_vocab_16e6.txt.gz`` (byte-identical
to the copy inside ImageBind; checked by sha256) and the same tokenizer: text cleaning (ftfy, HTML
unescaped twice, whitespace collapsed, lower case), the byte-to-unicode map and the BPE merges.
This module uses those as they are and adds the two places where ImageBind's rules are its own:

* the special tokens are spelled ``<|startoftext|>`` and ``<|endoftext|>`` (open_clip spells them
  ``<start_of_text>``/``<end_of_text>``; the ids, 49406 and 49407, are the same), and a literal
  special token inside a text is kept as that one token, as the official pre-token pattern does;
* ids are ``[<|startoftext|>] + bpe`` cut to the first ``context_length - 1`` ids, then
  ``<|endoftext|>`` and zero padding, so the end-of-text token that the text head pools is always
  present (the official rule since ImageBind commit 1125e1e, November 2025).

Another copy of the vocabulary can be passed as ``bpe_path`` or ``$LVMM_BPE_VOCAB``. Importing
open_clip is slow (it imports torchvision and timm), so it happens when the first tokenizer is built.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch

CONTEXT_LENGTH = 77
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49408
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
PAD_ID = 0
# ImageBind's pre-token pattern: its special tokens, English contractions, letter runs, single
# digits, other runs. It differs from open_clip's only in how the special tokens are spelled.
PRETOKEN_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def default_vocab_path() -> Path:
    """``$LVMM_BPE_VOCAB``, else open_clip's copy (located without importing open_clip)."""
    env = os.environ.get("LVMM_BPE_VOCAB")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"CLIP BPE vocabulary not found: install open_clip_torch, or set LVMM_BPE_VOCAB to a copy of {VOCAB_FILE}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE


class BPETokenizer:
    """Byte-level BPE with CLIP's vocabulary; call it on a list of strings to get ``(N, 77)`` ids.

    ``encoder``/``decoder`` map symbols to ids and back, with the special tokens under ImageBind's
    names; ``sot_id``/``eot_id`` are the start and end ids.
    """

    def __init__(
        self, bpe_path: str | Path | None = None, context_length: int = CONTEXT_LENGTH, check_sha256: bool = True
    ):
        import regex
        from open_clip.tokenizer import SimpleTokenizer

        path = Path(bpe_path) if bpe_path is not None else default_vocab_path()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CLIP BPE vocabulary not found (expected {VOCAB_FILE})")
        if check_sha256 and hashlib.sha256(path.read_bytes()).hexdigest() != VOCAB_SHA256:
            raise ValueError(f"{path}: not the CLIP BPE vocabulary (sha256 differs from {VOCAB_SHA256})")
        self._clip = SimpleTokenizer(str(path), context_length=context_length, clean="lower")
        if self._clip.vocab_size != VOCAB_SIZE:
            raise ValueError(f"{path}: {self._clip.vocab_size} vocabulary entries, expected {VOCAB_SIZE}")
        self.sot_id, self.eot_id = self._clip.sot_token_id, self._clip.eot_token_id
        self.decoder = {**self._clip.decoder, self.sot_id: SOT, self.eot_id: EOT}
        self.encoder = {tok: i for i, tok in self.decoder.items()}
        self.context_length = context_length
        self._special = {SOT: self.sot_id, EOT: self.eot_id}
        self._pattern = regex.compile(PRETOKEN_PATTERN, regex.IGNORECASE)

    def encode(self, text: str) -> list[int]:
        """BPE ids of a text, without start/end tokens or truncation."""
        clip = self._clip
        ids = []
        for token in self._pattern.findall(clip.clean_fn(text)):
            if token in self._special:
                ids.append(self._special[token])
                continue
            mapped = "".join(clip.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(clip.encoder[s] for s in clip.bpe(mapped).split(" "))
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
    """A shared tokenizer (building one reads the vocabulary and imports open_clip: seconds)."""
    return BPETokenizer(bpe_path)
