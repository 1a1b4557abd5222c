"""What a shard run is made of: its settings, results and summary, and the keys and partitions of its inputs."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from lvmm.media import DEFAULT_CRF

from ..recipes import Source

KEY_HASH_CHARS = 16  # hex characters of sha1(rel) in a key: 64 bits, collisions are negligible
DEFAULT_MAX_SAMPLES = 1000  # samples per shard before a new one is started (whole inputs are never split)
DEFAULT_MAX_BYTES = 1 << 30  # bytes per shard before a new one is started
MIN_CLIP_FRAMES = 2  # a sample needs at least a pair of frames
TAR_MTIME = 0.0  # fixed member times: the same inputs give byte-identical (npy) shards
MP4_RERUN_TOLERANCE = 4.0  # mean absolute difference (0-255) of decoded mp4 clips between two runs
FORMATS = ("mp4", "npy")
FITS = ("crop", "pad")


@dataclass(frozen=True)
class ShardSettings:
    """How clips are made; stored beside the manifest so that a resumed run cannot mix settings.

    Attributes:
        size: output ``(height, width)``.
        fit: ``"crop"`` fills the size and centre-crops the excess; ``"pad"`` fits inside and pads black.
        clip_len: frames per clip (after fps resampling); None keeps each video whole as one sample.
        stride: frames between clip starts (default ``clip_len``: clips do not overlap).
        fps: output frame rate (None keeps the source's); frames are picked by nearest time stamp.
        fmt: ``"mp4"`` (H.264, ``crf``) or ``"npy"`` (lossless uint8).
        max_clips: at most this many clips per input (None: all).
    """

    size: tuple[int, int] = (64, 64)
    fit: str = "crop"
    clip_len: int | None = 16
    stride: int | None = None
    fps: float | None = None
    fmt: str = "mp4"
    crf: int = DEFAULT_CRF
    max_clips: int | None = None

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format {self.fmt!r} (use one of {FORMATS})")
        if self.fit not in FITS:
            raise ValueError(f"unknown fit {self.fit!r} (use one of {FITS})")
        if min(self.size) <= 0:
            raise ValueError(f"size {self.size} must be positive")
        if self.clip_len is not None and self.clip_len < MIN_CLIP_FRAMES:
            raise ValueError(f"clip_len {self.clip_len} must be at least {MIN_CLIP_FRAMES}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride {self.stride} must be at least 1")

    @property
    def step(self) -> int:
        return self.stride or self.clip_len or 1

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["size"] = list(self.size)
        return d


@dataclass
class SourceResult:
    """What a worker returns for one source: how many samples it spooled, or the reason it failed."""

    rel: str
    spool: str | None = None  # the spool tar holding the encoded samples (None: no samples)
    samples: int = 0
    error: str | None = None


@dataclass
class Summary:
    """The closing account of a run (``this run`` counts exclude inputs finished by earlier runs)."""

    inputs: int = 0  # inputs of this partition
    already_done: int = 0  # finished by an earlier run (manifest)
    previously_failed: list[tuple[str, str]] = field(default_factory=list)
    read: int = 0  # inputs read in this run
    empty: list[tuple[str, str]] = field(default_factory=list)  # readable but too short for one clip
    failed: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason) unreadable in this run
    clips: int = 0
    shards: list[str] = field(default_factory=list)  # shards written in this run
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """False when no input of the corpus could be read, in this run or an earlier one."""
        return self.read > 0 or self.already_done > 0

    def report(self) -> str:
        lines = [
            f"{self.inputs} inputs: {self.already_done} already done, {self.read} read, "
            f"{len(self.failed)} failed, {len(self.empty)} without a full clip; "
            f"{self.clips} clips in {len(self.shards)} new shards in {self.seconds:.1f} s"
            + (f" ({self.clips / self.seconds:.1f} clips/s)" if self.seconds > 0 else "")
        ]
        lines += [f"  FAILED {rel}: {why}" for rel, why in self.failed]
        lines += [
            f"  failed in an earlier run (use --retry-failed): {rel}: {why}" for rel, why in self.previously_failed
        ]
        lines += [f"  skipped {rel}: {why}" for rel, why in self.empty]
        return "\n".join(lines)


def source_hash(rel: str) -> str:
    return hashlib.sha1(rel.encode("utf-8")).hexdigest()


def sample_key(rel: str, start: int) -> str:
    """The stable key of the clip of ``rel`` starting at output frame ``start`` (no dots: webdataset splits on them)."""
    return f"{source_hash(rel)[:KEY_HASH_CHARS]}_f{start:06d}"


def in_partition(rel: str, partition: int, num_partitions: int) -> bool:
    """Whether ``rel`` belongs to ``partition`` of ``num_partitions`` (by hash: stable when inputs are added)."""
    return int(source_hash(rel), 16) % num_partitions == partition


def partition_sources(sources: list[Source], partition: int = 0, num_partitions: int = 1) -> list[Source]:
    """This partition's sources, sorted by ``rel``; checks that ``rel`` ids are unique."""
    if not 0 <= partition < num_partitions:
        raise ValueError(f"shard index {partition} is outside 0..{num_partitions - 1}")
    ordered = sorted(sources, key=lambda s: s.rel)
    for a, b in zip(ordered, ordered[1:]):
        if a.rel == b.rel:
            raise ValueError(f"two inputs share the id {a.rel!r}: {a.path} and {b.path}")
    return [s for s in ordered if in_partition(s.rel, partition, num_partitions)]


def shard_prefix(name: str, partition: int = 0, num_partitions: int = 1) -> str:
    """``NAME``, or ``NAME-<i>of<N>`` when the corpus is partitioned over machines."""
    return name if num_partitions == 1 else f"{name}-{partition}of{num_partitions}"


class WorkerDied(RuntimeError):
    """A worker process died (killed, out of memory); finished shards are kept and a rerun resumes."""
