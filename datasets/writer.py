"""Video shard writing: one generic pipeline from recipe sources to webdataset shards.

Each :class:`~lvmm.datasets.recipes.Source` is decoded (streaming, so a long video never sits in
memory at its source size), resampled in time, cropped and resized, cut into clips, and each clip is
encoded as a sample (DESIGN.md section 3)::

    <key>.mp4 | <key>.frames.npy   the clip: H.264, or uint8 (T, H, W, 3)
    <key>.flow.npy                 float16 (T, 2, H, W) ground-truth fields (procedural data only)
    <key>.json                     source, fps, frame_indices, width, height, labels of the recipe
    <key>.txt                      the caption, where there is one

Keys are ``<sha1(rel)[:16]>_f<start:06d>``: the source's relative id and the source frame index
where the clip starts, so a key never changes between runs or machines.

Robustness, in the order a run does things:

* Partitioning: ``partition``/``num_partitions`` keep the sources whose sha1 of ``rel`` falls in
  this partition, so machines sharing one source list cover it exactly once; each partition has
  its own shard names (``NAME-<i>of<N>-%06d.tar``) and manifest, so they can share a folder.
* Resuming: ``NAME[...].manifest.jsonl`` lists, for every finished shard, the inputs it holds; a
  shard is written under a hidden temporary name and renamed when complete, then its line is
  appended and fsynced. A rerun skips the inputs listed, numbers new shards after the listed ones,
  and deletes temporary files and shards that a kill left out of the manifest. A shard holds whole
  inputs only, so an input is either entirely in one listed shard or redone.
* Honesty: an input that cannot be read is reported with its path and reason, recorded in the
  manifest (so a rerun does not retry it unless asked) and counted in the :class:`Summary`.
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
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lvmm.media import DEFAULT_CRF, MediaError, encode_mp4, read_image

from .recipes import PROCEDURAL_SCHEME, Source, frame_files

KEY_HASH_CHARS = 16          # hex characters of sha1(rel) in a key: 64 bits, collisions are negligible
DEFAULT_MAX_SAMPLES = 1000   # samples per shard before a new one is started (whole inputs are never split)
DEFAULT_MAX_BYTES = 1 << 30  # bytes per shard before a new one is started
MIN_CLIP_FRAMES = 2          # a sample needs at least a pair of frames
TAR_MTIME = 0.0              # fixed member times: the same inputs give byte-identical shards
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
    """What a worker returns for one source: encoded samples, or the reason it failed."""

    rel: str
    samples: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def nbytes(self) -> int:
        return sum(len(v) for s in self.samples for k, v in s.items() if k != "__key__")


@dataclass
class Summary:
    """The closing account of a run (``this run`` counts exclude inputs finished by earlier runs)."""

    inputs: int = 0                 # inputs of this partition
    already_done: int = 0           # finished by an earlier run (manifest)
    previously_failed: list[tuple[str, str]] = field(default_factory=list)
    read: int = 0                   # inputs read in this run
    empty: list[tuple[str, str]] = field(default_factory=list)    # readable but too short for one clip
    failed: list[tuple[str, str]] = field(default_factory=list)   # (rel, reason) unreadable in this run
    clips: int = 0
    shards: list[str] = field(default_factory=list)               # shards written in this run
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """False when no input of the corpus could be read, in this run or an earlier one."""
        return self.read > 0 or self.already_done > 0

    def report(self) -> str:
        lines = [f"{self.inputs} inputs: {self.already_done} already done, {self.read} read, "
                 f"{len(self.failed)} failed, {len(self.empty)} without a full clip; "
                 f"{self.clips} clips in {len(self.shards)} new shards in {self.seconds:.1f} s"
                 + (f" ({self.clips / self.seconds:.1f} clips/s)" if self.seconds > 0 else "")]
        lines += [f"  FAILED {rel}: {why}" for rel, why in self.failed]
        lines += [f"  failed in an earlier run (use --retry-failed): {rel}: {why}" for rel, why in self.previously_failed]
        lines += [f"  skipped {rel}: {why}" for rel, why in self.empty]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# keys and partitions


def source_hash(rel: str) -> str:
    return hashlib.sha1(rel.encode("utf-8")).hexdigest()


def sample_key(rel: str, start: int) -> str:
    """The stable key of the clip of ``rel`` starting at source frame ``start`` (no dots: webdataset splits on them)."""
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
    """Open a video and return its frame rate and an iterator of RGB frames; errors name the file."""
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
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate or stream.guessed_rate or 0) or None

    def frames():
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except Exception as e:
            raise MediaError(f"{path}: cannot decode video ({type(e).__name__}: {e})") from e
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

    def __init__(self, in_hw: tuple[int, int], size: tuple[int, int], fit: str,
                 crop: tuple[float, float, float, float] | None = None):
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
        out[y:y + self.inner[1], x:x + self.inner[0]] = np.asarray(img)
        return out


def iter_clips(frames: Iterator[tuple[int, np.ndarray]], clip_len: int | None, step: int,
               max_clips: int | None = None) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Cut ``(source_index, frame)`` into clips of ``clip_len`` every ``step`` frames (None: one whole clip)."""
    if clip_len is None:
        items = list(frames)
        if len(items) >= MIN_CLIP_FRAMES:
            yield np.stack([f for _, f in items]), [i for i, _ in items]
        return
    window: deque = deque(maxlen=clip_len)
    emitted = 0
    for n, item in enumerate(frames):
        window.append(item)
        start = n - clip_len + 1
        if start >= 0 and start % step == 0:
            yield np.stack([f for _, f in window]), [i for i, _ in window]
            emitted += 1
            if max_clips is not None and emitted >= max_clips:
                return


# ----------------------------------------------------------------------------------------------
# sample encoding


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_sample(source: Source, frames: np.ndarray, frame_indices: list[int], fps: float | None,
                  settings: ShardSettings, flows: np.ndarray | None = None, extra: dict | None = None) -> dict:
    """One clip as the byte members of a webdataset sample (see the module docstring)."""
    t, h, w, _ = frames.shape
    labels = dict(source.labels) | (extra or {})
    meta = {"source": source.rel, "fps": fps, "frame_indices": [int(i) for i in frame_indices],
            "num_frames": int(t), "width": int(w), "height": int(h)} | labels
    sample = {"__key__": sample_key(source.rel, frame_indices[0])}
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


def _procedural(source: Source, settings: ShardSettings) -> list[dict]:
    from .procedural import make_clip

    split, seed, index = source.path[len(PROCEDURAL_SCHEME):].split(":")
    h, w = settings.size
    num_frames = settings.clip_len or 9
    clip = make_clip(int(seed), int(index), height=h, width=w, num_frames=num_frames, split=split,
                     fps=settings.fps or source.fps)
    extra = {"caption": clip.caption, "class": clip.label, "class_name": clip.family, "family": clip.family,
             "photo": clip.photo, "seed": int(seed), "index": int(index), "flow_units": "normalised"}
    return [encode_sample(source, clip.frames, list(range(num_frames)), clip.fps, settings, clip.flows, extra)]


def process_source(source: Source, settings: ShardSettings) -> SourceResult:
    """Decode, resample, fit and cut one source into encoded samples; failures become ``error``."""
    try:
        if source.kind == "procedural":
            return SourceResult(source.rel, _procedural(source, settings))
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

        def fitted():
            nonlocal geometry
            for i, frame in _resample(raw, resample_indices(fps_in, settings.fps)):
                if geometry is None:
                    geometry = Geometry(frame.shape[:2], settings.size, settings.fit, source.crop)
                yield i, geometry(frame)

        samples = [encode_sample(source, clip, indices, fps_out, settings)
                   for clip, indices in iter_clips(fitted(), settings.clip_len, settings.step, settings.max_clips)]
        return SourceResult(source.rel, samples)
    except MediaError as e:
        return SourceResult(source.rel, error=str(e))
    except Exception as e:  # keep the run going; the reason names the file and the exception
        return SourceResult(source.rel, error=f"{source.path}: {type(e).__name__}: {e}")


def _process_in_worker(source: Source, settings: ShardSettings) -> SourceResult:
    return process_source(source, settings)


def _init_worker():
    # the pool is the parallelism: one compute thread per process (read by torch when the procedural
    # recipe imports it; decoding-only workers never pay for importing torch)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# ----------------------------------------------------------------------------------------------
# manifest and shard files


class Manifest:
    """The JSONL record of finished work in ``path``.

    Lines: ``{"shard": name | null, "inputs": [rel, ...], "samples": n, "bytes": b}`` for every
    committed shard (``null``: inputs that yielded no clip), and ``{"failed": rel, "reason": why}``
    for unreadable inputs. Each line is appended and fsynced after the shard it names was renamed
    into place; a torn last line (a kill mid-write) is ignored.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.shards: list[dict] = []
        self.failed: dict[str, str] = {}
        if self.path.exists():
            for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines()):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    print(f"[make_shards] {self.path}:{n + 1}: ignoring a torn line", file=sys.stderr)
                    continue
                if "failed" in entry:
                    self.failed[entry["failed"]] = entry.get("reason", "")
                elif "inputs" in entry:
                    self.shards.append(entry)

    @property
    def done(self) -> set[str]:
        return {rel for entry in self.shards for rel in entry["inputs"]}

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
        else:
            self.shards.append(entry)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ShardFile:
    """A shard being written under a hidden temporary name; :meth:`commit` renames it into place."""

    def __init__(self, final: Path):
        import webdataset as wds

        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        self.file = open(self.tmp, "wb")
        self.writer = wds.TarWriter(self.file, encoder=False, mtime=TAR_MTIME)
        self.inputs: list[str] = []
        self.samples = 0
        self.nbytes = 0

    def add(self, result: SourceResult) -> None:
        for sample in result.samples:
            self.writer.write(sample)
        self.inputs.append(result.rel)
        self.samples += len(result.samples)
        self.nbytes += result.nbytes

    def commit(self) -> None:
        self.writer.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.final)
        _fsync_dir(self.final.parent)

    def abandon(self) -> None:
        try:
            self.writer.close()
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# the run


def shard_prefix(name: str, partition: int = 0, num_partitions: int = 1) -> str:
    """``NAME``, or ``NAME-<i>of<N>`` when the corpus is partitioned over machines."""
    return name if num_partitions == 1 else f"{name}-{partition}of{num_partitions}"


def _settings_check(path: Path, settings: ShardSettings) -> None:
    wanted = settings.to_json()
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            raise ValueError(f"{path}: these shards were made with other settings ({stored}); "
                             f"rerun with the same settings or write to a new --name or folder (now {wanted})")
    else:
        from lvmm.media import atomic_write_bytes

        atomic_write_bytes(path, (json.dumps(wanted, sort_keys=True, indent=1) + "\n").encode("utf-8"))


def _clean_leftovers(out: Path, prefix: str, manifest: Manifest, log: Callable[[str], None]) -> None:
    """Delete temporary shards of killed runs and finished shards the manifest does not list."""
    for tmp in out.glob(f".{prefix}-*.tar.tmp*"):
        log(f"removing the temporary file of an interrupted run: {tmp}")
        tmp.unlink(missing_ok=True)
    pattern = re.compile(re.escape(prefix) + r"-(\d{6})\.tar$")
    listed = manifest.shard_names
    for shard in out.glob(f"{prefix}-*.tar"):
        if pattern.match(shard.name) and shard.name not in listed:
            # renamed but killed before its manifest line: its inputs are redone, so it must go
            log(f"removing a shard missing from the manifest (interrupted run): {shard}")
            shard.unlink()


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"[make_shards] {message}", file=sys.stderr)  # keeps an active progress bar intact


def write_shards(sources: list[Source], out_dir: str | os.PathLike, name: str, settings: ShardSettings, *,
                 workers: int = 1, partition: int = 0, num_partitions: int = 1,
                 max_samples: int = DEFAULT_MAX_SAMPLES, max_bytes: int = DEFAULT_MAX_BYTES,
                 retry_failed: bool = False, progress: bool = True,
                 on_shard: Callable[[Path], None] | None = None, log: Callable[[str], None] | None = None) -> Summary:
    """Write this partition's ``sources`` as shards ``out_dir/PREFIX-%06d.tar``, resuming a previous run.

    Args:
        workers: processes decoding and encoding in parallel (1: in this process).
        max_samples, max_bytes: a shard is closed once it reaches either (whole inputs only).
        retry_failed: retry inputs an earlier run recorded as unreadable.
        on_shard: called with the path of each shard after its manifest line is written.
        log: where messages go (default: stderr).
    Returns:
        the :class:`Summary` of this run.
    """
    log = log or _default_log
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = shard_prefix(name, partition, num_partitions)
    _settings_check(out / f"{prefix}.settings.json", settings)
    manifest = Manifest(out / f"{prefix}.manifest.jsonl")
    _clean_leftovers(out, prefix, manifest, log)

    mine = partition_sources(sources, partition, num_partitions)
    done = manifest.done
    summary = Summary(inputs=len(mine), already_done=sum(s.rel in done for s in mine))
    pending = []
    for s in mine:
        if s.rel in done:
            continue
        if s.rel in manifest.failed and not retry_failed:
            summary.previously_failed.append((s.rel, manifest.failed[s.rel]))
            continue
        pending.append(s)
    next_index = 1 + max((int(n[len(prefix) + 1:len(prefix) + 7]) for n in manifest.shard_names), default=-1)

    current: ShardFile | None = None
    empty_inputs: list[str] = []  # finished inputs without clips waiting for a manifest line

    def commit():
        nonlocal current, next_index, empty_inputs
        if current is None:
            return
        current.commit()
        manifest.append({"shard": current.final.name, "inputs": current.inputs + empty_inputs,
                         "samples": current.samples, "bytes": current.nbytes})
        summary.shards.append(current.final.name)
        empty_inputs = []
        path, current = current.final, None
        next_index += 1
        if on_shard is not None:
            on_shard(path)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pending), unit="input", desc=prefix, dynamic_ncols=True, file=sys.stderr)
    pool = None
    try:
        if workers > 1 and len(pending) > 1:
            # spawn: workers must not inherit the threads of torch or of a PyAV decoder in this process
            pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
            from functools import partial

            results = pool.imap(partial(_process_in_worker, settings=settings), pending, chunksize=1)
        else:
            results = (process_source(s, settings) for s in pending)
        for result in results:
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
                summary.clips += len(result.samples)
                if current is None:
                    current = ShardFile(out / f"{prefix}-{next_index:06d}.tar")
                current.add(result)
                if current.samples >= max_samples or current.nbytes >= max_bytes:
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
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
