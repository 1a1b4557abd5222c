"""Reading video shards: frame pairs for stage one, clips for stage two (webdataset pipelines).

Batch items (stage one and two are written against these):

* pairs: ``img0``, ``imgk`` float (3, H, W) in [0, 1]; ``flow`` (2, H, W) normalised units (zeros when
  the shard has none); ``has_flow`` bool; ``k`` int (the frame interval); ``key`` str.
* clips: ``frames`` (T, 3, H, W) float in [0, 1]; ``flows`` (T, 2, H, W) (zeros if none); ``has_flow``;
  ``label`` int (-1 when unknown); ``caption`` str ("" when none); ``key``.

Distributed reading: shards are split by rank (``urls[rank::world_size]``) and then by DataLoader
worker; each worker draws shards at random with replacement from its part (``resampled``), so the
stream never ends, and yields a fixed quota of batches, so every rank sees exactly ``length`` batches
per epoch whatever its shards hold (uneven ranks would hang DDP). Evaluation streams cycle through
their shards in order instead, without augmentation, with frame choices seeded by the sample key.

Corrupt samples (an unreadable tar member, a json or npy that does not parse, a video that does not
decode) are skipped and counted: each is logged as a warning naming its shard and key, the stream's
``skipped`` list keeps them (per process), and the run goes on. ``MAX_CONSECUTIVE_SKIPS`` corrupt
samples in a row mean the data, not one sample, is broken, and stop the run with that message.

Stored fields are relative to the clip's first frame, so a sample with fields always starts at its
frame 0: pairs are (frame 0, frame k), and clip sampling keeps frame 0 first.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import logging
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from lvmm.media import AUDIO_RATE, MediaError, read_audio, read_video, to_float, wav_from_bytes

from .augment import ClipAugment

log = logging.getLogger(__name__)

SAMPLINGS = ("consecutive", "random_sorted")
MAX_CONSECUTIVE_SKIPS = 100
SAMPLE_ERRORS = (MediaError, ValueError, KeyError, OSError, EOFError)
"""What a corrupt sample raises while it is read and decoded (json and npy errors are ValueErrors)."""
MODES = ("pairs", "clips")
UNKNOWN_LABEL = -1


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # pipe:, http://, s3://, file: ... (not a C: drive)


def expand_shards(spec: str | list[str], allow_remote: bool = False) -> list[str]:
    """Shard paths from brace patterns (``data-{000000..000009}.tar``), globs, or several joined by ``::``.

    The one parser of shard specs (training, encoding and evaluation use it). A spec with a scheme
    (``pipe:``, ``http://``, ``s3://``, ...) is refused unless ``allow_remote``: webdataset would hand
    it to its openers, and ``pipe:`` runs a shell command. Raises FileNotFoundError naming the pattern
    when a local pattern matches no file, ValueError for a refused spec.
    """
    import braceexpand

    parts = spec if isinstance(spec, (list, tuple)) else str(spec).split("::")
    urls: list[str] = []
    remote: set[str] = set()
    for part in parts:
        for pattern in braceexpand.braceexpand(str(part)):
            if _SCHEME.match(pattern):
                if not allow_remote:
                    raise ValueError(
                        f"shard spec {pattern!r}: refusing a remote or 'pipe:' shard spec (it would open a URL "
                        "or run a command); use local paths, or allow remote shards explicitly"
                    )
                urls.append(pattern)
                remote.add(pattern)
            elif any(c in pattern for c in "*?["):
                urls.extend(sorted(glob.glob(pattern)))
            else:
                urls.append(pattern)
    missing = [u for u in urls if u not in remote and not os.path.isfile(u)]
    if not urls or missing:
        raise FileNotFoundError(f"shards {spec!r}: no such file(s): {missing[:5] or 'nothing matched'}")
    return urls


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process's (rank, world size): given, else torch.distributed, else env RANK/WORLD_SIZE, else (0, 1)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def stable_seed(*parts) -> int:
    """A 64-bit seed that depends only on ``parts`` (their repr), the same in every process and run."""
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:8], "little")


# ----------------------------------------------------------------------------------------------
# decoding a sample


@dataclass
class DecodedSample:
    """A raw webdataset sample with its metadata parsed; frames are decoded on demand."""

    key: str
    meta: dict
    raw: dict

    @property
    def num_frames(self) -> int:
        if "num_frames" in self.meta:
            return int(self.meta["num_frames"])
        return len(self.frames(None))

    @property
    def has_flow(self) -> bool:
        return "flow.npy" in self.raw

    @property
    def caption(self) -> str:
        if self.meta.get("caption"):
            return str(self.meta["caption"])
        txt = self.raw.get("txt")
        return txt.decode("utf-8").strip() if isinstance(txt, bytes) else ""

    @property
    def label(self) -> int:
        value = self.meta.get("class")
        return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else UNKNOWN_LABEL

    def frames(self, upto: int | None) -> np.ndarray:
        """uint8 (T, H, W, 3): all frames, or the first ``upto`` (mp4 decoding stops there)."""
        if "frames.npy" in self.raw:
            arr = npy_from_bytes(self.raw["frames.npy"])
            return arr if upto is None else arr[:upto]
        if "mp4" in self.raw:
            frames, _ = read_video(self.raw["mp4"], max_frames=upto)
            return frames
        raise MediaError(f"sample {self.key} ({self.raw.get('__url__', '?')}): no mp4 or frames.npy member")

    def flows(self) -> np.ndarray:
        return npy_from_bytes(self.raw["flow.npy"]).astype(np.float32)

    @property
    def has_audio(self) -> bool:
        """Whether the sample carries a ``wav`` member or says it has audio (an mp4's stream: ``audio_rate`` in its
        json); an mp4 written before audio existed is decoded by :meth:`audio` to find out."""
        return "wav" in self.raw or bool(self.meta.get("audio_rate"))

    def audio(self) -> np.ndarray | None:
        """The clip's sound, mono float32 (N,) at 16 kHz (:data:`lvmm.media.AUDIO_RATE`), or None when it has none.

        From the ``wav`` member (npy shards) or the mp4's audio stream. A corrupt one raises
        :class:`MediaError` naming the sample (the stream skips and counts it like any corrupt sample).
        """
        where = f"sample {self.key} ({self.raw.get('__url__', '?')})"
        if "wav" in self.raw:
            wave, rate = wav_from_bytes(self.raw["wav"], f"{where}: wav")
            if rate != AUDIO_RATE:
                from lvmm.imagebind.audio import resample

                wave = resample(torch.from_numpy(wave[None]), rate, AUDIO_RATE)[0].numpy()
            return wave.astype(np.float32)
        if "mp4" in self.raw:
            try:
                return read_audio(self.raw["mp4"], AUDIO_RATE)
            except MediaError as e:
                raise MediaError(f"{where}: mp4 audio: {e}") from e
        return None


def npy_from_bytes(data: bytes) -> np.ndarray:
    """A ``.npy`` member of a shard sample as an array; never unpickled (shard contents are untrusted)."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def png_from_bytes(data: bytes) -> np.ndarray:
    """An image member (``first.png``) of a shard sample as uint8 ``(H, W, 3)`` RGB."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def decode(sample: dict) -> DecodedSample:
    """A raw webdataset sample (bytes per extension) with its json parsed; frames decode on demand."""
    meta = json.loads(sample["json"]) if "json" in sample else {}
    return DecodedSample(sample["__key__"], meta, sample)


# ----------------------------------------------------------------------------------------------
# items


@dataclass(frozen=True)
class PairItems:
    """Frame pairs (I_i, I_{i+k}), k uniform in 1..max_interval (bounded by the clip); i = 0 with fields."""

    augment: ClipAugment
    max_interval: int = 8

    def __call__(self, sample: DecodedSample, rng: random.Random) -> dict:
        t = sample.num_frames
        k = rng.randint(1, max(1, min(self.max_interval, t - 1)))
        i = 0 if sample.has_flow else rng.randint(0, max(0, t - 1 - k))
        frames = sample.frames(i + k + 1)
        pair = to_float(frames[[i, i + k]])  # (2, 3, H, W)
        h, w = pair.shape[-2:]
        flow = torch.from_numpy(sample.flows()[k : k + 1]) if sample.has_flow else torch.zeros(1, 2, h, w)
        pair, flow = self.augment(pair, flow, rng)
        return {
            "img0": pair[0],
            "imgk": pair[1],
            "flow": flow[0],
            "has_flow": sample.has_flow,
            "k": k,
            "key": sample.key,
        }


def choose_frames(t: int, n: int, sampling: str, rng: random.Random, keep_first: bool) -> list[int]:
    """``n`` frame indices of a ``t``-frame clip.

    ``consecutive``: a run of n from a random start (frame 0 when ``keep_first``); ``random_sorted``:
    frame 0 and n - 1 others drawn at random, sorted in time (the benchmark protocol, LFDM's choice
    of always starting at frame 0). Short clips repeat their last frame (consecutive) or draw with
    replacement (random_sorted).
    """
    if sampling == "consecutive":
        start = 0 if keep_first else rng.randint(0, max(0, t - n))
        return [min(start + j, t - 1) for j in range(n)]
    if sampling == "random_sorted":
        rest = rng.sample(range(1, t), n - 1) if t - 1 >= n - 1 else [rng.randrange(t) for _ in range(n - 1)]
        return [0] + sorted(rest)
    raise ValueError(f"unknown sampling {sampling!r} (use one of {SAMPLINGS})")


@dataclass(frozen=True)
class ClipItems:
    """Clips of ``num_frames`` frames chosen by ``sampling`` (see :func:`choose_frames`)."""

    augment: ClipAugment
    num_frames: int = 9
    sampling: str = "consecutive"

    def __call__(self, sample: DecodedSample, rng: random.Random) -> dict:
        t = sample.num_frames
        idx = choose_frames(t, self.num_frames, self.sampling, rng, keep_first=sample.has_flow)
        frames = to_float(sample.frames(max(idx) + 1)[idx])
        h, w = frames.shape[-2:]
        flows = torch.from_numpy(sample.flows()[idx]) if sample.has_flow else torch.zeros(len(idx), 2, h, w)
        frames, flows = self.augment(frames, flows, rng)
        return {
            "frames": frames,
            "flows": flows,
            "has_flow": sample.has_flow,
            "label": sample.label,
            "caption": sample.caption,
            "key": sample.key,
        }


# ----------------------------------------------------------------------------------------------
# the stream


class ShardStream(IterableDataset):
    """Batches of items from shards; every rank yields exactly ``length`` batches per epoch.

    Args:
        urls: shard paths (see :func:`expand_shards`).
        make_item: ``(DecodedSample, random.Random) -> dict`` (:class:`PairItems`, :class:`ClipItems`).
        batch_size: items per batch (incomplete batches are never yielded).
        length: batches per rank and epoch.
        train: resample shards at random and shuffle samples; False: cycle in order, deterministic.
        shuffle_buffer: samples held for shuffling (train).
        seed: base seed; streams also differ by rank, worker and epoch.
        rank, world_size: this process's place in DDP (default: :func:`dist_info` at iteration time).
    """

    def __init__(
        self,
        urls: list[str],
        make_item: Callable,
        batch_size: int,
        length: int,
        *,
        train: bool = True,
        shuffle_buffer: int = 256,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        if batch_size < 1 or length < 1:
            raise ValueError(f"batch_size ({batch_size}) and length ({length}) must be positive")
        self.urls, self.make_item, self.batch_size, self.length = list(urls), make_item, batch_size, length
        self.train, self.shuffle_buffer, self.seed = train, shuffle_buffer, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skipped: list[str] = []  # "shard [key]: reason" of every corrupt sample this process skipped

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_urls(self, rank: int, world: int, worker: int, workers: int) -> list[str]:
        if len(self.urls) < world:
            raise ValueError(
                f"{len(self.urls)} shards cannot be split over {world} ranks: write more shards "
                f"(make_shards --max-samples) so that every rank reads its own"
            )
        node = self.urls[rank::world]
        # workers split the rank's shards when there are enough; otherwise they share them (their
        # random streams still differ), which only happens for tiny corpora
        return node[worker::workers] if len(node) >= workers else node

    def _shard_urls(self, urls: list[str], rng: random.Random) -> Iterator[dict]:
        while True:
            if self.train:
                yield {"url": rng.choice(urls)}
            else:
                yield from ({"url": u} for u in urls)

    def __iter__(self) -> Iterator[dict]:
        import webdataset as wds

        rank, world = dist_info(self.rank, self.world_size)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # a fresh DataLoader iteration (each epoch) gives workers a new torch seed; main-process
        # iteration counts epochs itself
        loader_seed = torch.initial_seed() if info is not None and self.train else 0
        epoch = self.epoch if self.train else 0  # evaluation streams are the same every epoch
        self.epoch += 1
        rng = random.Random(stable_seed(self.seed, epoch, rank, worker, loader_seed))
        quota = self.length // workers + (1 if worker < self.length % workers else 0)
        urls = self._my_urls(rank, world, worker, workers)
        samples = wds.tarfile_to_samples(handler=self._skip_tar_error)(self._shard_urls(urls, rng))
        if self.train and self.shuffle_buffer > 1:
            samples = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer // 2, rng=rng)(samples)
        batch: list[dict] = []
        made = consecutive = 0
        while made < quota:
            raw = next(samples)
            try:
                sample = decode(raw)
                item_rng = rng if self.train else random.Random(stable_seed(self.seed, sample.key))
                item = self.make_item(sample, item_rng)
            except SAMPLE_ERRORS as e:
                consecutive += 1
                self._skip(raw.get("__url__", "?"), raw.get("__key__", "?"), e, consecutive)
                continue
            consecutive = 0
            batch.append(item)
            if len(batch) == self.batch_size:
                yield default_collate(batch)
                batch, made = [], made + 1

    def _skip(self, url: str, key: str, error: BaseException, consecutive: int) -> None:
        where = f"{url} [{key}]"
        self.skipped.append(f"{where}: {error}")
        log.warning("skipped corrupt sample %d of this reader: %s: %s", len(self.skipped), where, error)
        if consecutive >= MAX_CONSECUTIVE_SKIPS:
            raise RuntimeError(
                f"{consecutive} corrupt samples in a row, the last {where}: {error}; the shards look broken"
            )

    def _skip_tar_error(self, error: BaseException) -> bool:
        # webdataset's handler protocol: True = go on; its messages carry the shard's url
        self._skip(getattr(error, "url", "?") if not isinstance(error, tuple) else "?", "?", error, 1)
        return True


def make_stream(
    shards: str | list[str],
    mode: str = "pairs",
    *,
    batch_size: int = 8,
    length: int = 100,
    size: int | tuple[int, int] = 64,
    max_interval: int = 8,
    num_frames: int = 9,
    sampling: str = "consecutive",
    train: bool = True,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    hflip: bool = True,
    shuffle_buffer: int = 256,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
) -> ShardStream:
    """A :class:`ShardStream` of pairs or clips (see the module docstring for the item formats)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (use one of {MODES})")
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r} (use one of {SAMPLINGS})")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    augment = ClipAugment(hw, scale=tuple(crop_scale), hflip=hflip, train=train)
    make_item = PairItems(augment, max_interval) if mode == "pairs" else ClipItems(augment, num_frames, sampling)
    return ShardStream(
        expand_shards(shards),
        make_item,
        batch_size,
        length,
        train=train,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )


def make_loader(stream: ShardStream, num_workers: int = 0, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader over a stream's ready-made batches (``len`` = batches per rank and epoch)."""
    return torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=num_workers, persistent_workers=False, **kwargs
    )
