"""The ImageBind encoder service used by the rest of LVMM.

It turns images, texts and audio into embeddings in ImageBind's joint space: batched, on the GPU
in bfloat16 autocast when there is one (float32 on CPU), and cached on disk. A cache entry is keyed
by a hash of the input's *content* (file bytes, array bytes, or the string), of the weights
(:attr:`ImageBindEncoder.weights_id`), of the numeric precision and of the preprocessing version,
so a changed file, other weights or another precision never return a stale vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .audio import preprocess_audio
from .configs import ImageBindConfig, resolve_config
from .model import ImageBind
from .text import get_tokenizer
from .vision import preprocess_image
from .weights import load_state_dict_file, random_weights_id, state_dict_id

log = logging.getLogger(__name__)

# Bump when a preprocessing change alters embeddings, so that old cache entries are not reused.
PREPROCESS_VERSION = "1"
CACHE_KEY_BYTES = 16
ENCODER_MODALITIES = ("vision", "text", "audio")
_HASH_CHUNK = 1 << 20


RANDOM_MODEL_NOTICE = (
    "[lvmm] note: ImageBind is the small seeded random model (no official weights): conditioning rests on "
    "random features; pass --imagebind imagebind_huge.pth for the real encoder"
)
_noticed = False


def announce_random_model(stream=None) -> None:
    """Say once per process, on stderr, that the random stand-in ImageBind is in use."""
    global _noticed
    if not _noticed:
        print(RANDOM_MODEL_NOTICE, file=stream or sys.stderr, flush=True)
        _noticed = True


def condition_embedding(emb: torch.Tensor) -> torch.Tensor:
    """The form in which an ImageBind embedding conditions the motion model: unit length, whatever the modality.

    ImageBind's raw outputs differ in scale by modality (vision unit-norm, text times the learned logit
    scale of about 14, audio times 20); normalised, every modality meets the U-Net at the same scale
    (the embeddings of the official model are compared by cosine similarity)."""
    return torch.nn.functional.normalize(emb.float(), dim=-1).to(emb.dtype)


def _hash_file(path: str | os.PathLike) -> str:
    from lvmm.media import MediaError

    h = hashlib.blake2b(digest_size=CACHE_KEY_BYTES)
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
                h.update(chunk)
    except OSError as e:
        raise MediaError(f"{path}: cannot read file ({e.strerror or e})") from e
    return "file:" + h.hexdigest()


def _hash_array(a) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(f"{a.dtype.str}|{a.shape}|".encode(), digest_size=CACHE_KEY_BYTES)
    h.update(a.tobytes())
    return "array:" + h.hexdigest()


def _image_digest(item) -> str:
    if isinstance(item, (str, os.PathLike)):
        return _hash_file(item)
    if hasattr(item, "tobytes") and hasattr(item, "mode") and hasattr(item, "size"):  # a PIL image
        return _hash_array(np.asarray(item.convert("RGB")))
    return _hash_array(item.numpy() if isinstance(item, torch.Tensor) else item)


def _text_digest(item) -> str:
    if not isinstance(item, str):
        raise TypeError(f"texts must be str, got {type(item).__name__}")
    return "text:" + hashlib.blake2b(item.encode("utf-8"), digest_size=CACHE_KEY_BYTES).hexdigest()


def _audio_digest(item) -> str:
    if isinstance(item, (str, os.PathLike)):
        return _hash_file(item)
    if isinstance(item, tuple) and len(item) == 2:
        wave, sr = item
        wave = wave.numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
        return f"sr{int(sr)}:" + _hash_array(wave)
    raise TypeError(f"expected an audio path or a (waveform, sample_rate) pair, got {type(item).__name__}")


class ImageBindEncoder:
    """Embed images, texts and audio with ImageBind.

    Args:
        weights: ``None`` for a seeded random model (tests, demo), or the path of official-format
            weights: ``imagebind_huge.pth`` (downloaded by the user from the official
            facebookresearch/ImageBind README; CC BY-NC-SA 4.0) or a ``.safetensors`` copy.
        config: ``"huge"``, ``"tiny"`` or a dict of overrides; default ``"huge"`` with weights and
            ``"tiny"`` without.
        device: torch device; default CUDA when available, else CPU.
        cache_dir: folder of the on-disk embedding cache; ``None`` disables caching.
        seed: seed of the random model when ``weights`` is ``None``.
        batch_size: inputs per forward pass.
        amp: bfloat16 autocast; default on for CUDA devices, off elsewhere.

    Outputs are float32 CPU tensors ``(N, dim)``: vision unit-norm, text scaled by the learned
    logit scale, audio by 20 (ImageBind's post-processing; normalise them for cosine similarity, as
    :func:`condition_embedding` does for the motion model). Without weights the seeded random model
    stands in, and a one-line notice on stderr says so; the huge config without weights is refused.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        config: str | Mapping | ImageBindConfig | None = None,
        device: str | torch.device | None = None,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
        batch_size: int = 16,
        amp: bool | None = None,
        bpe_path: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.config = resolve_config(config if config is not None else ("huge" if weights is not None else "tiny"))
        self.device = (
            torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.weights_path = Path(weights) if weights is not None else None
        if weights is None:
            if self.config == resolve_config("huge"):
                raise ValueError(
                    "ImageBind config 'huge' without weights would be a random 1024-d model that passes every "
                    "check: pass the official weights (--imagebind imagebind_huge.pth), or leave the config "
                    "at 'tiny' for the seeded random stand-in"
                )
            announce_random_model()
            self.model = ImageBind.random(self.config, seed=seed, modalities=ENCODER_MODALITIES)
            self.weights_id = random_weights_id(self.config, seed)
        else:
            state = load_state_dict_file(weights)
            self.weights_id = self._cached_weights_id(self.weights_path, state)
            with torch.device("meta"):
                self.model = ImageBind(self.config, modalities=ENCODER_MODALITIES)
            self.model.load_official(state, where=str(weights), assign=True)
            del state
        self.model = self.model.eval().requires_grad_(False).to(self.device)
        self._bpe_path = bpe_path
        self.num_computed = dict.fromkeys(ENCODER_MODALITIES, 0)  # inputs embedded by the model, not the cache

    # -- public API --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Width of the joint embedding space (1024 for huge, 32 for tiny)."""
        return self.config.out_embed_dim

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.amp else "fp32"

    def embed_images(self, images: Sequence) -> torch.Tensor:
        """``(N, dim)`` from image paths, PIL images or uint8 ``HxWx3`` arrays of any size."""
        return self._embed(
            "vision", images, _image_digest, lambda batch: torch.stack([preprocess_image(x) for x in batch])
        )

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, dim)`` from strings (CLIP BPE, 77 tokens; longer texts are truncated)."""
        if isinstance(texts, str):
            raise TypeError("embed_texts takes a list of strings, not a single string")
        return self._embed("text", texts, _text_digest, lambda batch: get_tokenizer(self._bpe_path)(list(batch)))

    def embed_audio(self, audio: Sequence) -> torch.Tensor:
        """``(N, dim)`` from audio/video file paths or ``(waveform (C, N) or (N,), sample_rate)`` pairs."""
        return self._embed(
            "audio", audio, _audio_digest, lambda batch: torch.stack([preprocess_audio(x) for x in batch])
        )

    # -- internals ---------------------------------------------------------------------------

    def _cached_weights_id(self, path: Path, state: Mapping[str, torch.Tensor]) -> str:
        """Content hash of the weights, remembered per (path, size, mtime) in the cache folder.

        Hashing the 4.8 GB huge checkpoint takes seconds; this avoids redoing it on every start.
        """
        if self.cache_dir is None:
            return state_dict_id(state)
        st = path.stat()
        entry = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        index_path = self.cache_dir / "weights_ids.json"
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}
        if entry not in index:
            index[entry] = state_dict_id(state)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_name(f"{index_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(index, indent=1))
            tmp.replace(index_path)
        return index[entry]

    def _cache_path(self, modality: str, digest: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.blake2b(
            f"{PREPROCESS_VERSION}|{modality}|{self.precision}|{digest}".encode(), digest_size=CACHE_KEY_BYTES
        ).hexdigest()
        return self.cache_dir / self.weights_id / modality / key[:2] / f"{key}.npy"

    def _embed(self, modality: str, items: Sequence, digest: Callable, preprocess: Callable) -> torch.Tensor:
        items = list(items)
        out: list[torch.Tensor | None] = [None] * len(items)
        paths = [self._cache_path(modality, digest(item)) for item in items]
        todo = []
        for i, path in enumerate(paths):
            if path is not None and path.is_file():
                try:
                    out[i] = torch.from_numpy(np.load(path))
                    continue
                except (OSError, ValueError) as e:  # a truncated entry: recompute it
                    log.warning("ignoring unreadable cache entry %s (%s)", path, e)
            todo.append(i)
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            emb = self._forward(modality, preprocess([items[i] for i in idx]))  # (b, dim)
            for i, e in zip(idx, emb):
                out[i] = e
                if paths[i] is not None:
                    _save_atomic(paths[i], e.numpy())
            self.num_computed[modality] += len(idx)
        if not items:
            return torch.empty(0, self.dim)
        return torch.stack(out)  # (N, dim)

    def _forward(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            emb = self.model.encode(modality, x.to(self.device))
        return emb.float().cpu()


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write a ``.npy`` so that concurrent readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
