"""Video shard writing: one generic pipeline from recipe sources to webdataset shards.

Each :class:`~lvmm.datasets.recipes.Source` is decoded (streaming, so a long video never sits in
memory at its source size), resampled in time, cropped and resized, cut into clips, and each clip is
encoded as a sample (docs/data-formats.md, Video shards)::

    <key>.mp4 | <key>.frames.npy   the clip: H.264, or uint8 (T, H, W, 3)
    <key>.flow.npy                 float16 (T, 2, H, W) ground-truth fields (procedural data only)
    <key>.json                     source, fps, frame_indices, width, height, labels of the recipe
    <key>.txt                      the caption, where there is one

Keys are ``<sha1(rel)[:16]>_f<start:06d>``: the source's relative id and the index of the clip's
first frame on the output time line (the source frame index when the frame rate is kept; up-sampling
repeats source frames, so their index would repeat), so a key is unique and never changes between
runs or machines.

Robustness, in the order a run does things:

* Partitioning: ``partition``/``num_partitions`` keep the sources whose sha1 of ``rel`` falls in
  this partition, so machines sharing one source list cover it exactly once; each partition has
  its own shard names (``NAME-<i>of<N>-%06d.tar``) and manifest, so they can share a folder.
* Streaming: an input's clips are encoded one at a time into a spool file (in a worker process when
  ``workers > 1``), and copied into shards only when the whole input decoded without error, so
  memory holds one clip and a shard never holds part of a bad input. A shard is closed before the
  next sample would take its file over ``max_bytes`` (or at ``max_samples``), within one input too.
* Resuming: ``NAME[...].manifest.jsonl`` lists, for every finished shard, the inputs it completes
  and the input it leaves open (``"open": {"rel", "samples"}``: how many of its clips are in shards
  so far); a shard is written under a hidden temporary name, announced (``{"writing": name}``),
  renamed when complete, then its line is appended and fsynced. A rerun skips the inputs listed,
  continues an open input after its committed clips, numbers new shards after the listed ones, and
  deletes its own leftovers: temporary and spool files, and announced shards a kill left unlisted.
  Files it did not write are never deleted (a shard name that is taken is skipped).
* Exclusion and consistency: one run at a time per ``out/NAME`` (an ``flock`` on a hidden lock file,
  released by the kernel if the run dies), and ``NAME.settings.json`` records the clip settings and
  the corpus (recipe, input folder, split, source fps, ...), so a rerun with other settings or
  another corpus is refused instead of mixed in.
* Honesty: an input that cannot be read (including a video that decodes fewer frames than its
  container declares, and a bad caption file) is reported with its path and reason, recorded in the
  manifest (so a rerun does not retry it unless asked) and counted in the :class:`Summary`. A dead
  worker process ends the run with an error; a rerun finishes the job.
* Determinism: the same inputs and settings give byte-identical npy shards, also across a kill and
  a rerun. mp4 shards have the same keys, json and captions, but their H.264 bytes are not
  guaranteed: encoding on one thread (:func:`lvmm.media.encode_mp4`) made them identical on a quiet
  machine, yet runs on a heavily loaded one still differed; their decoded frames agree within
  ``MP4_RERUN_TOLERANCE`` (mean absolute difference, 0-255).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import sys
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvmm.media import DEFAULT_CRF, MediaError, check_frame_count, decode_frames, encode_mp4, fsync_dir, read_image

from .recipes import PROCEDURAL_SCHEME, Source, frame_files

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


# ----------------------------------------------------------------------------------------------
# keys and partitions


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


# ----------------------------------------------------------------------------------------------
# decoding, resampling, geometry


def _iter_video(path: str) -> tuple[float | None, Iterator[np.ndarray]]:
    """Open a video and return its frame rate and an iterator of RGB frames; errors name the file.

    The iterator raises :class:`MediaError` at its end when fewer frames decoded than the container
    declares (a truncated file).
    """
    import av

    if not os.path.exists(path):
        raise MediaError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path)
    except Exception as e:
        raise MediaError(f"{path}: cannot open video ({type(e).__name__}: {e})") from e
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0) or None
    declared = stream.frames or None

    def frames():
        n = 0
        try:
            for frame in decode_frames(container, stream, path):
                n += 1
                yield frame
            check_frame_count(path, n, declared)
        finally:
            container.close()

    return fps, frames()


def _iter_frame_folder(path: str) -> Iterator[np.ndarray]:
    files = frame_files(path)
    if not files:
        raise MediaError(f"{path}: frame folder holds no images")
    for f in files:
        yield read_image(f)


def resample_indices(fps_in: float | None, fps_out: float | None) -> Callable[[int], int]:
    """For output frame j, the source index nearest in time (``fps_out`` None: j itself)."""
    if fps_out is None or fps_in is None or math.isclose(fps_in, fps_out, rel_tol=1e-3):
        return lambda j: j
    ratio = fps_in / fps_out
    return lambda j: int(math.floor(j * ratio + 0.5))


def _resample(frames: Iterator[np.ndarray], pick: Callable[[int], int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(source_index, frame)`` for output frames 0, 1, ... (a frame repeats when up-sampling)."""
    j = 0
    for i, frame in enumerate(frames):
        while pick(j) == i:
            yield i, frame
            j += 1


class Geometry:
    """Background crop, then fit to ``size`` by centre-crop or padding; computed once per source."""

    def __init__(
        self,
        in_hw: tuple[int, int],
        size: tuple[int, int],
        fit: str,
        crop: tuple[float, float, float, float] | None = None,
    ):
        h, w = in_hw
        top, bottom, left, right = crop or (0.0, 1.0, 0.0, 1.0)
        y0, y1 = round(top * h), round(bottom * h)
        x0, x1 = round(left * w), round(right * w)
        if y1 - y0 < 1 or x1 - x0 < 1:
            raise MediaError(f"background crop {crop} leaves nothing of a {w}x{h} frame")
        th, tw = size
        rh, rw = y1 - y0, x1 - x0
        self.size, self.fit = size, fit
        if fit == "crop":  # the largest centred box with the target's aspect ratio
            scale = max(th / rh, tw / rw)
            bh, bw = th / scale, tw / scale
            by, bx = y0 + (rh - bh) / 2, x0 + (rw - bw) / 2
            self.box = (bx, by, bx + bw, by + bh)
            self.inner = (tw, th)
            self.offset = (0, 0)
        else:  # fit inside, pad the rest with black, centred
            scale = min(th / rh, tw / rw)
            self.box = (x0, y0, x1, y1)
            self.inner = (max(1, round(rw * scale)), max(1, round(rh * scale)))
            self.offset = ((tw - self.inner[0]) // 2, (th - self.inner[1]) // 2)
        self.identity = self.box == (0, 0, w, h) and self.inner == (tw, th) and (h, w) == tuple(size)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.identity:
            return frame
        from PIL import Image

        # bicubic with PIL's support scaling: antialiased when shrinking, which video frames always need
        img = Image.fromarray(frame).resize(self.inner, Image.Resampling.BICUBIC, box=self.box)
        if self.fit == "crop":
            return np.asarray(img)
        out = np.zeros((*self.size, 3), dtype=np.uint8)
        x, y = self.offset
        out[y : y + self.inner[1], x : x + self.inner[0]] = np.asarray(img)
        return out


def iter_clips(
    frames: Iterator[tuple[int, np.ndarray]], clip_len: int | None, step: int, max_clips: int | None = None
) -> Iterator[tuple[np.ndarray, list[int], int]]:
    """Cut ``(source_index, frame)`` into clips of ``clip_len`` every ``step`` frames (None: one whole clip).

    Yields ``(frames, source indices, start)`` with ``start`` the clip's first frame on the output time line.
    """
    if clip_len is None:
        items = list(frames)
        if len(items) >= MIN_CLIP_FRAMES:
            yield np.stack([f for _, f in items]), [i for i, _ in items], 0
        return
    window: deque = deque(maxlen=clip_len)
    emitted = 0
    for n, item in enumerate(frames):
        window.append(item)
        start = n - clip_len + 1
        if start >= 0 and start % step == 0:
            yield np.stack([f for _, f in window]), [i for i, _ in window], start
            emitted += 1
            if max_clips is not None and emitted >= max_clips:
                return


# ----------------------------------------------------------------------------------------------
# sample encoding


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_sample(
    source: Source,
    frames: np.ndarray,
    frame_indices: list[int],
    fps: float | None,
    settings: ShardSettings,
    flows: np.ndarray | None = None,
    extra: dict | None = None,
    start: int | None = None,
) -> dict:
    """One clip as the byte members of a webdataset sample (see the module docstring).

    ``start`` is the clip's first frame on the output time line (the key); default: ``frame_indices[0]``.
    """
    t, h, w, _ = frames.shape
    labels = dict(source.labels) | (extra or {})
    meta = {
        "source": source.rel,
        "fps": fps,
        "frame_indices": [int(i) for i in frame_indices],
        "num_frames": int(t),
        "width": int(w),
        "height": int(h),
    } | labels
    sample = {"__key__": sample_key(source.rel, frame_indices[0] if start is None else start)}
    if settings.fmt == "mp4":
        if fps is None:
            raise MediaError(f"{source.path}: unknown frame rate, cannot write mp4 (give --fps or --source-fps)")
        sample["mp4"] = encode_mp4(frames, fps, crf=settings.crf)
    else:
        sample["frames.npy"] = npy_bytes(frames.astype(np.uint8))
    if flows is not None:
        sample["flow.npy"] = npy_bytes(flows.astype(np.float16))
    sample["json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    if labels.get("caption"):
        sample["txt"] = str(labels["caption"]).encode("utf-8")
    return sample


def _procedural(source: Source, settings: ShardSettings) -> Iterator[dict]:
    from .procedural import make_clip

    split, seed, index = source.path[len(PROCEDURAL_SCHEME) :].split(":")
    h, w = settings.size
    num_frames = settings.clip_len or 9
    clip = make_clip(
        int(seed), int(index), height=h, width=w, num_frames=num_frames, split=split, fps=settings.fps or source.fps
    )
    extra = {
        "caption": clip.caption,
        "class": clip.label,
        "class_name": clip.family,
        "family": clip.family,
        "photo": clip.photo,
        "seed": int(seed),
        "index": int(index),
        "flow_units": "normalised",
    }
    yield encode_sample(source, clip.frames, list(range(num_frames)), clip.fps, settings, clip.flows, extra)


def iter_source_samples(source: Source, settings: ShardSettings) -> Iterator[dict]:
    """Decode, resample, fit and cut one source, yielding its encoded samples one at a time.

    Raises :class:`MediaError` (or another exception) naming the file when the source is bad; a video
    that turns out truncated raises after its decodable clips were yielded, so callers keep a
    source's samples apart until the iterator is exhausted.
    """
    if source.error:
        raise MediaError(source.error)
    if source.kind == "procedural":
        yield from _procedural(source, settings)
        return
    if source.kind == "video":
        fps_in, raw = _iter_video(source.path)
        fps_in = fps_in or source.fps
    elif source.kind == "frames":
        if not os.path.isdir(source.path):
            raise MediaError(f"{source.path}: frame folder not found")
        fps_in, raw = source.fps, _iter_frame_folder(source.path)
    else:
        raise ValueError(f"{source.path}: unknown source kind {source.kind!r}")
    if settings.fps is not None and fps_in is None:
        raise MediaError(f"{source.path}: unknown frame rate, cannot resample to {settings.fps} fps")
    fps_out = settings.fps or fps_in
    geometry = None
    shape = None

    def fitted():
        nonlocal geometry, shape
        for i, frame in _resample(raw, resample_indices(fps_in, settings.fps)):
            if geometry is None:
                geometry, shape = Geometry(frame.shape[:2], settings.size, settings.fit, source.crop), frame.shape
            elif frame.shape != shape:  # a frame folder of mixed sizes
                raise MediaError(
                    f"{source.path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"the first was {shape[1]}x{shape[0]}"
                )
            yield i, geometry(frame)

    for clip, indices, start in iter_clips(fitted(), settings.clip_len, settings.step, settings.max_clips):
        yield encode_sample(source, clip, indices, fps_out, settings, start=start)
    if hasattr(raw, "close"):
        raw.close()


def _write_sample(tar: tarfile.TarFile, sample: dict) -> int:
    """Add a sample's members to ``tar`` (fixed metadata: identical input, identical bytes); returns their tar bytes."""
    total = 0
    key = sample["__key__"]
    for ext in sorted(k for k in sample if k != "__key__"):
        data = sample[ext]
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mtime, info.mode, info.uname, info.gname = len(data), int(TAR_MTIME), 0o444, "", ""
        tar.addfile(info, io.BytesIO(data))
        total += tar_bytes(len(data))
    return total


def tar_bytes(size: int) -> int:
    """Bytes a member of ``size`` bytes takes in a tar (a 512-byte header and 512-byte blocks)."""
    return 512 + -(-size // 512) * 512


def tar_file_bytes(member_bytes: int) -> int:
    """The size of a tar file holding ``member_bytes`` of members: two end blocks, padded to 10 KiB records."""
    return -(-(member_bytes + 2 * 512) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def iter_spool(path: str | os.PathLike) -> Iterator[dict]:
    """The samples of a spool (or shard) tar written by this module, one at a time, in order."""
    sample: dict = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if sample and key != sample["__key__"]:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[ext] = tar.extractfile(member).read()
    if sample:
        yield sample


def process_source(source: Source, settings: ShardSettings, spool: str | os.PathLike) -> SourceResult:
    """Encode one source's samples into the tar ``spool``; failures become ``error`` (and leave no spool)."""
    n = 0
    try:
        with open(spool, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in iter_source_samples(source, settings):
                _write_sample(tar, sample)
                n += 1
        if n == 0:
            os.unlink(spool)
        return SourceResult(source.rel, str(spool) if n else None, n)
    except BaseException as e:
        Path(spool).unlink(missing_ok=True)
        if not isinstance(e, Exception):
            raise
        why = str(e) if isinstance(e, MediaError) else f"{source.path}: {type(e).__name__}: {e}"
        return SourceResult(source.rel, error=why)  # keep the run going; the reason names the file


def _init_worker():
    # the pool is the parallelism: one compute thread per process (read by torch when the procedural
    # recipe imports it; decoding-only workers never pay for importing torch)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class WorkerDied(RuntimeError):
    """A worker process died (killed, out of memory); finished shards are kept and a rerun resumes."""


# ----------------------------------------------------------------------------------------------
# manifest and shard files


class Manifest:
    """The JSONL record of finished work in ``path``.

    Lines: ``{"shard": name | null, "inputs": [rel, ...], "samples": n, "bytes": b, "open": {"rel", "samples"}?}``
    for every committed shard (``null``: inputs that yielded no clip; ``open``: the input continuing in
    the next shard and its clips so far), ``{"writing": name}`` before a shard is renamed into place,
    and ``{"failed": rel, "reason": why}`` for unreadable inputs. Each line is appended and fsynced; a
    torn last line (a kill mid-write) is ignored and cut off before the next append.
    """

    def __init__(self, path: str | os.PathLike, log: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.shards: list[dict] = []
        self.failed: dict[str, str] = {}
        self.writing: set[str] = set()
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # a torn last line: drop it so the next append starts clean
                keep = data[: data.rfind(b"\n") + 1]
                with open(self.path, "r+b") as f:
                    f.truncate(len(keep))
                    os.fsync(f.fileno())
                (log or print)(f"{self.path}: dropped a torn last line (an interrupted run)")
                data = keep
            for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines()):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    (log or print)(f"{self.path}:{n + 1}: ignoring a line that is not JSON")
                    continue
                if not isinstance(entry, dict):
                    continue
                if "failed" in entry:
                    self.failed[entry["failed"]] = entry.get("reason", "")
                elif "writing" in entry:
                    self.writing.add(entry["writing"])
                elif "inputs" in entry:
                    self.shards.append(entry)

    @property
    def done(self) -> set[str]:
        return {rel for entry in self.shards for rel in entry["inputs"]}

    @property
    def open_inputs(self) -> dict[str, int]:
        """Inputs split over shards and not finished: how many of their samples are committed."""
        done, found = self.done, {}
        for entry in self.shards:
            o = entry.get("open")
            if o and o["rel"] not in done:
                found[o["rel"]] = int(o["samples"])
        return found

    @property
    def shard_names(self) -> set[str]:
        return {e["shard"] for e in self.shards if e.get("shard")}

    def append(self, entry: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if "failed" in entry:
            self.failed[entry["failed"]] = entry["reason"]
        elif "writing" in entry:
            self.writing.add(entry["writing"])
        else:
            self.shards.append(entry)


class ShardFile:
    """A shard being written under a hidden temporary name; :meth:`commit` renames it into place."""

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        self.file = open(self.tmp, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
        self.inputs: list[str] = []
        self.samples = 0
        self.nbytes = 0

    def add(self, sample: dict) -> None:
        self.nbytes += _write_sample(self.tar, sample)
        self.samples += 1

    def close(self) -> None:
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def rename(self) -> None:
        os.replace(self.tmp, self.final)
        fsync_dir(self.final.parent)

    def abandon(self) -> None:
        try:
            self.tar.close()
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# the run


def shard_prefix(name: str, partition: int = 0, num_partitions: int = 1) -> str:
    """``NAME``, or ``NAME-<i>of<N>`` when the corpus is partitioned over machines."""
    return name if num_partitions == 1 else f"{name}-{partition}of{num_partitions}"


def _settings_check(path: Path, settings: ShardSettings, corpus: dict | None) -> None:
    wanted = settings.to_json() | {"corpus": corpus or {}}
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: unreadable settings file ({e}); write to a new --name or folder") from None
        if stored != wanted:
            differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ValueError(
                f"{path}: these shards were made with other settings or another corpus ({', '.join(differ)} "
                f"differ: stored { ({k: stored.get(k) for k in differ}) }, now { ({k: wanted.get(k) for k in differ}) }); "
                "rerun with the same settings or write to a new --name or folder"
            )
    else:
        from lvmm.media import atomic_write_bytes

        atomic_write_bytes(path, (json.dumps(wanted, sort_keys=True, indent=1) + "\n").encode("utf-8"))


class _Lock:
    """An exclusive ``flock`` on ``path``: one writer per shard prefix; the kernel drops it when a run dies."""

    def __init__(self, path: Path):
        import fcntl

        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise ValueError(
                f"{path}: another run is writing these shards now (the lock is held); "
                "wait for it to finish, or write to another --name or folder"
            ) from None

    def release(self) -> None:
        os.close(self.fd)  # closing the descriptor releases the flock


def _clean_leftovers(out: Path, prefix: str, manifest: Manifest, log: Callable[[str], None]) -> None:
    """Delete what a killed run of this writer left: its temporary and spool files, and shards it
    announced and renamed but did not list. Other files, even with shard-like names, are left alone."""
    ours = re.compile(re.escape(f".{prefix}") + r"(-\d{6}\.tar|\.spool-\d{6}\.tar)\.tmp\d+$")
    for tmp in sorted(out.iterdir()):
        if ours.match(tmp.name):  # not another prefix's (NAME-0of2-...), whose run may be going on
            log(f"removing the temporary file of an interrupted run: {tmp}")
            tmp.unlink(missing_ok=True)
    listed = manifest.shard_names
    for name in sorted(manifest.writing - listed):
        shard = out / name
        if shard.exists():
            # renamed but killed before its manifest line: its inputs are redone, so it must go
            log(f"removing a shard missing from the manifest (interrupted run): {shard}")
            shard.unlink()


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"[make_shards] {message}", file=sys.stderr)  # keeps an active progress bar intact


def _results(
    pending: list[Source], settings: ShardSettings, spool_of: Callable[[int], Path], workers: int
) -> Iterator[SourceResult]:
    """:class:`SourceResult` of each pending source, in order; with ``workers > 1`` from a process pool.

    A worker that dies raises :class:`WorkerDied` here (``concurrent.futures`` notices a dead
    process; ``multiprocessing.Pool`` would wait for its result forever).
    """
    if workers <= 1 or len(pending) <= 1:
        for i, source in enumerate(pending):
            yield process_source(source, settings, spool_of(i))
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn: workers must not inherit the threads of torch or of a PyAV decoder in this process
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    futures: deque = deque()
    try:
        submitted = 0
        while submitted < len(pending) or futures:
            while (
                submitted < len(pending) and len(futures) < 2 * workers
            ):  # bounded: spools wait on disk, not in memory
                futures.append(
                    (pending[submitted], pool.submit(process_source, pending[submitted], settings, spool_of(submitted)))
                )
                submitted += 1
            source, future = futures.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise WorkerDied(
                    f"a worker process died (killed or out of memory) while the run was at {source.path}; "
                    "finished shards are kept: rerun the same command to finish the job"
                ) from None
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_shards(
    sources: list[Source],
    out_dir: str | os.PathLike,
    name: str,
    settings: ShardSettings,
    *,
    workers: int = 1,
    partition: int = 0,
    num_partitions: int = 1,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    retry_failed: bool = False,
    progress: bool = True,
    corpus: dict | None = None,
    on_shard: Callable[[Path], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Summary:
    """Write this partition's ``sources`` as shards ``out_dir/PREFIX-%06d.tar``, resuming a previous run.

    Args:
        workers: processes decoding and encoding in parallel (1: in this process).
        max_samples, max_bytes: a shard is closed at ``max_samples`` samples, or before a sample would
            take its file over ``max_bytes`` (a single larger sample gets a shard of its own).
        retry_failed: retry inputs an earlier run recorded as unreadable.
        corpus: what defines the inputs (recipe, input folder, split, ...), recorded with the settings
            so that a rerun on another corpus is refused.
        on_shard: called with the path of each shard after its manifest line is written.
        log: where messages go (default: stderr).
    Returns:
        the :class:`Summary` of this run.
    Raises:
        ValueError for other settings or a concurrent run; :class:`WorkerDied` when a worker dies.
    """
    log = log or _default_log
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = shard_prefix(name, partition, num_partitions)
    lock = _Lock(out / f".{prefix}.lock")
    try:
        return _write(
            sources,
            out,
            prefix,
            settings,
            workers,
            partition,
            num_partitions,
            max_samples,
            max_bytes,
            retry_failed,
            progress,
            corpus,
            on_shard,
            log,
            started,
        )
    finally:
        lock.release()


def _write(
    sources,
    out,
    prefix,
    settings,
    workers,
    partition,
    num_partitions,
    max_samples,
    max_bytes,
    retry_failed,
    progress,
    corpus,
    on_shard,
    log,
    started,
) -> Summary:
    _settings_check(out / f"{prefix}.settings.json", settings, corpus)
    manifest = Manifest(out / f"{prefix}.manifest.jsonl", log)
    _clean_leftovers(out, prefix, manifest, log)

    mine = partition_sources(sources, partition, num_partitions)
    done = manifest.done
    resume = manifest.open_inputs
    summary = Summary(inputs=len(mine), already_done=sum(s.rel in done for s in mine))
    pending = []
    for s in mine:
        if s.rel in done:
            continue
        if s.rel in manifest.failed and not retry_failed:
            summary.previously_failed.append((s.rel, manifest.failed[s.rel]))
            continue
        pending.append(s)
    pattern = re.compile(re.escape(prefix) + r"-(\d{6})\.tar$")
    numbers = [int(m.group(1)) for n in manifest.shard_names if (m := pattern.match(n))]
    next_index = 1 + max(numbers, default=-1)

    current: ShardFile | None = None
    empty_inputs: list[str] = []  # finished inputs without clips waiting for a manifest line
    open_input: dict | None = None  # the input whose clips continue past the current shard

    def new_shard() -> ShardFile:
        nonlocal next_index
        while (out / f"{prefix}-{next_index:06d}.tar").exists():  # not ours (ours are listed): never overwrite it
            log(f"leaving {out / f'{prefix}-{next_index:06d}.tar'} alone (not written by this run's manifest)")
            next_index += 1
        shard = ShardFile(out / f"{prefix}-{next_index:06d}.tar")
        next_index += 1
        return shard

    def commit(open_rel: str | None = None, open_samples: int = 0):
        nonlocal current, empty_inputs
        if current is None:
            return
        current.close()
        manifest.append({"writing": current.final.name})
        current.rename()
        entry = {
            "shard": current.final.name,
            "inputs": current.inputs + empty_inputs,
            "samples": current.samples,
            "bytes": current.nbytes,
        }
        if open_rel is not None:
            entry["open"] = {"rel": open_rel, "samples": open_samples}
        manifest.append(entry)
        summary.shards.append(current.final.name)
        empty_inputs = []
        path, current = current.final, None
        if on_shard is not None:
            on_shard(path)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pending), unit="input", desc=prefix, dynamic_ncols=True, file=sys.stderr)
    spool_dir = out
    try:
        spool_of = lambda i: spool_dir / f".{prefix}.spool-{i:06d}.tar.tmp{os.getpid()}"
        for result in _results(pending, settings, spool_of, workers):
            if result.error is not None:
                log(f"skipping unreadable input: {result.error}")
                summary.failed.append((result.rel, result.error))
                manifest.append({"failed": result.rel, "reason": result.error})
            elif not result.samples:
                why = "too short for one clip" if settings.clip_len else f"fewer than {MIN_CLIP_FRAMES} frames"
                summary.read += 1
                summary.empty.append((result.rel, why))
                empty_inputs.append(result.rel)
            else:
                summary.read += 1
                skip = resume.get(result.rel, 0)  # clips committed by an earlier, interrupted run
                written = skip
                try:
                    for n, sample in enumerate(iter_spool(result.spool)):
                        if n < skip:
                            continue
                        size = sum(tar_bytes(len(v)) for k, v in sample.items() if k != "__key__")
                        if (
                            current is not None
                            and current.samples
                            and tar_file_bytes(current.nbytes + size) > max_bytes
                        ):
                            commit(result.rel if written else None, written)
                        if current is None:
                            current = new_shard()
                        current.add(sample)
                        written += 1
                        summary.clips += 1
                        if current.samples >= max_samples and written < result.samples:
                            commit(result.rel, written)
                finally:
                    Path(result.spool).unlink(missing_ok=True)
                if current is None:  # its last clip closed a shard (or an earlier run committed them all)
                    empty_inputs.append(result.rel)
                else:
                    current.inputs.append(result.rel)
                    if current.samples >= max_samples:
                        commit()
            if bar is not None:
                elapsed = time.perf_counter() - started
                bar.set_postfix({"clips/s": f"{summary.clips / max(elapsed, 1e-9):.1f}", "failed": len(summary.failed)})
                bar.update(1)
        commit()
        if empty_inputs:
            manifest.append({"shard": None, "inputs": empty_inputs, "samples": 0, "bytes": 0})
    except BaseException:
        if current is not None:
            current.abandon()
        for spool in out.glob(f".{prefix}.spool-*"):
            spool.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
