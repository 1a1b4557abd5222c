"""One input's clips as webdataset samples (mp4 or npy, json, caption, fields, audio), spooled to a tar of its own.

Audio (16 kHz mono, the clip's time span): procedural clips carry their soundtrack
(:func:`lvmm.datasets.soundtrack.clip_soundtrack`), videos their first audio stream, cut to the clip's
frames; ``--format mp4`` muxes it into ``KEY.mp4`` (AAC), ``--format npy`` writes ``KEY.wav`` (16-bit PCM,
byte-deterministic). Frame folders and silent videos have none.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lvmm.media import AUDIO_RATE, MediaError, encode_mp4, iter_video, read_audio, wav_bytes

from ..recipes import PROCEDURAL_SCHEME, Source
from .decoding import Geometry, iter_clips, iter_frame_folder, resample, resample_indices
from .settings import ShardSettings, SourceResult, sample_key
from .tar_files import add_sample

log = logging.getLogger(__name__)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (never pickled)."""
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
    audio: np.ndarray | None = None,
) -> dict:
    """One clip as the byte members of a webdataset sample (see the module docstring).

    ``start`` is the clip's first frame on the output time line (the key); default: ``frame_indices[0]``.
    ``audio``: the clip's sound, mono float32 (N,) at :data:`lvmm.media.AUDIO_RATE` (None: none).
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
    if audio is not None:
        meta["audio_rate"], meta["audio_samples"] = AUDIO_RATE, int(len(audio))
    sample = {"__key__": sample_key(source.rel, frame_indices[0] if start is None else start)}
    if settings.fmt == "mp4":
        if fps is None:
            raise MediaError(f"{source.path}: unknown frame rate, cannot write mp4 (give --fps or --source-fps)")
        sample["mp4"] = encode_mp4(frames, fps, crf=settings.crf, audio=audio)
    else:
        sample["frames.npy"] = npy_bytes(frames.astype(np.uint8))
        if audio is not None:
            sample["wav"] = wav_bytes(audio, AUDIO_RATE)
    if flows is not None:
        sample["flow.npy"] = npy_bytes(flows.astype(np.float16))
    sample["json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    if labels.get("caption"):
        sample["txt"] = str(labels["caption"]).encode("utf-8")
    return sample


def _procedural(source: Source, settings: ShardSettings) -> Iterator[dict]:
    from ..procedural import make_clip
    from ..soundtrack import clip_soundtrack

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
    sound = clip_soundtrack(clip, int(seed), int(index), AUDIO_RATE)  # the span of the clip's frames
    yield encode_sample(
        source, clip.frames, list(range(num_frames)), clip.fps, settings, clip.flows, extra, audio=sound
    )


def _video_audio(path: str) -> np.ndarray | None:
    """A video's first audio stream at 16 kHz mono, or None (no stream; an undecodable one is warned and left out:
    the frames are still good)."""
    try:
        return read_audio(path, AUDIO_RATE)
    except MediaError as e:
        log.warning("%s; its clips are written without audio", e)
        return None


def audio_span(audio: np.ndarray | None, start: int, num_frames: int, fps: float | None) -> np.ndarray | None:
    """The samples of output frames ``start .. start + num_frames - 1`` (frame j plays from j / fps), zero-padded
    where the track ends early; None without audio or frame rate."""
    if audio is None or not fps:
        return None
    a, b = round(start / fps * AUDIO_RATE), round((start + num_frames) / fps * AUDIO_RATE)
    cut = audio[a:b]
    return np.pad(cut, (0, (b - a) - len(cut))) if len(cut) < b - a else cut


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
    audio = None
    if source.kind == "video":
        fps_in, raw = iter_video(source.path)
        fps_in = fps_in or source.fps
        audio = _video_audio(source.path)
    elif source.kind == "frames":
        if not os.path.isdir(source.path):
            raise MediaError(f"{source.path}: frame folder not found")
        fps_in, raw = source.fps, iter_frame_folder(source.path)
    else:
        raise ValueError(f"{source.path}: unknown source kind {source.kind!r}")
    if settings.fps is not None and fps_in is None:
        raise MediaError(f"{source.path}: unknown frame rate, cannot resample to {settings.fps} fps")
    fps_out = settings.fps or fps_in
    geometry = None
    shape = None

    def fitted():
        nonlocal geometry, shape
        for i, frame in resample(raw, resample_indices(fps_in, settings.fps)):
            if geometry is None:
                geometry, shape = Geometry(frame.shape[:2], settings.size, settings.fit, source.crop), frame.shape
            elif frame.shape != shape:  # a frame folder of mixed sizes
                raise MediaError(
                    f"{source.path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"the first was {shape[1]}x{shape[0]}"
                )
            yield i, geometry(frame)

    for clip, indices, start in iter_clips(fitted(), settings.clip_len, settings.step, settings.max_clips):
        sound = audio_span(audio, start, len(clip), fps_out)
        yield encode_sample(source, clip, indices, fps_out, settings, start=start, audio=sound)
    if hasattr(raw, "close"):
        raw.close()


def process_source(source: Source, settings: ShardSettings, spool: str | os.PathLike) -> SourceResult:
    """Encode one source's samples into the tar ``spool``; failures become ``error`` (and leave no spool)."""
    n = 0
    try:
        with open(spool, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in iter_source_samples(source, settings):
                add_sample(tar, sample)
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
