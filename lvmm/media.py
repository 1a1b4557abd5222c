"""Thin video/image readers and writers over PyAV and Pillow.

Frames are ``uint8`` arrays of shape ``(T, H, W, 3)`` everywhere in this module. Errors name the file
and the problem, so that callers can report and skip a bad input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_CRF = 18
AUDIO_RATE = 16000
"""Sample rate of the audio written into shards (ImageBind's: :data:`lvmm.imagebind.audio.SAMPLE_RATE`)."""
MAX_IMAGE_PIXELS = 100_000_000
"""Largest image (width x height) read: a 10000 x 10000 photo; a header claiming more is refused before decoding."""


class MediaError(RuntimeError):
    """An input file could not be read or decoded; the message names the file and the reason."""


def video_info(path: str | os.PathLike) -> dict:
    """Frame rate, frame count (if the container knows it), width and height of a video file."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            s = container.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0) or None
            return {
                "fps": fps,
                "frames": s.frames or None,
                "width": s.codec_context.width,
                "height": s.codec_context.height,
            }
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"{path}: cannot open video ({type(e).__name__}: {e})") from e


def iter_video(source) -> tuple[float | None, Iterator[np.ndarray]]:
    """Open a video (a file path or bytes): its frame rate and an iterator of its RGB frames, decoded one at a time.

    Errors name the file. The iterator raises :class:`MediaError` at its end when fewer frames decoded than the
    container declares (a truncated file), and closes the container when it ends or is closed.
    """
    import av

    is_path = isinstance(source, (str, os.PathLike))
    name = str(source) if is_path else "<bytes>"
    if is_path and not os.path.exists(source):
        raise MediaError(f"{name}: file not found")
    if is_path and os.path.getsize(source) == 0:
        raise MediaError(f"{name}: empty file (0 bytes)")
    try:
        container = av.open(name if is_path else io.BytesIO(source))
    except Exception as e:
        raise MediaError(f"{name}: cannot open video ({type(e).__name__}: {e})") from e
    if not container.streams.video:
        container.close()
        raise MediaError(f"{name}: no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0) or None
    declared = stream.frames or None

    def frames():
        n = 0
        try:
            for frame in decode_frames(container, stream, name):
                n += 1
                yield frame
            check_frame_count(name, n, declared)
        finally:
            container.close()

    return fps, frames()


def read_video(source, max_frames: int | None = None) -> tuple[np.ndarray, float | None]:
    """Decode every frame (or the first ``max_frames``) of a file path or bytes; returns (frames, fps)."""
    fps, stream = iter_video(source)
    frames = []
    try:
        for frame in stream:
            frames.append(frame)
            if max_frames is not None and len(frames) >= max_frames:
                break
    finally:
        stream.close()
    if not frames:
        raise MediaError(f"{source if isinstance(source, (str, os.PathLike)) else '<bytes>'}: no decodable frames")
    return np.stack(frames), fps


def decode_frames(container, stream, name) -> Iterator[np.ndarray]:
    """RGB frames of ``stream``, decoded on one thread.

    Frame threading is left off on purpose: with it FFmpeg drops the frames it cannot decode without
    an error, so a truncated file looked like a short, valid video.
    """
    stream.thread_type = "SLICE"
    try:
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"{name}: cannot decode video ({type(e).__name__}: {e})") from e


def check_frame_count(name, decoded: int, declared: int | None) -> None:
    """Raise when fewer frames decoded than the container declares (a truncated or corrupt file)."""
    if declared and decoded < declared:
        raise MediaError(
            f"{name}: truncated or corrupt video: decoded {decoded} of the {declared} frames the container declares"
        )


def _even(x: int) -> int:
    return x + (x % 2)


def encode_mp4(
    frames: np.ndarray,
    fps: float,
    crf: int = DEFAULT_CRF,
    audio: np.ndarray | None = None,
    sample_rate: int = AUDIO_RATE,
) -> bytes:
    """Encode ``(T, H, W, 3)`` uint8 frames as H.264 mp4 bytes (yuv420p; odd sizes are padded by one).

    ``audio``: optional mono float32 samples (N,) in [-1, 1] at ``sample_rate``, muxed as an AAC
    stream (AAC adds its encoder delay: the decoded track is a few milliseconds longer).

    One encoder thread: x264's frame threads made the bytes depend on timing, and callers that
    encode many clips run them in parallel processes anyway; the same frames give the same bytes.
    """
    import av

    frames = np.asarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    if (h % 2) or (w % 2):  # yuv420p needs even sizes: pad by edge replication
        frames = np.pad(frames, ((0, 0), (0, _even(h) - h), (0, _even(w) - w), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        stream.thread_count = 1
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=int(sample_rate))
            sound.layout, sound.format = "mono", "fltp"
            sound.thread_count = 1
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _encode_audio(container, sound, np.asarray(audio, dtype=np.float32).reshape(-1), int(sample_rate))
    return buf.getvalue()


def _encode_audio(container, stream, samples: np.ndarray, sample_rate: int) -> None:
    """Mux mono ``samples`` into ``stream`` in frames of the encoder's size (1024 for AAC)."""
    import av

    size = stream.codec_context.frame_size or 1024
    for start in range(0, len(samples), size):
        chunk = np.ascontiguousarray(np.clip(samples[start : start + size], -1, 1)[None])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = sample_rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def read_audio(source, sample_rate: int = AUDIO_RATE) -> np.ndarray | None:
    """The first audio stream of a video or audio file (a path or bytes) as mono float32 (N,) at ``sample_rate``.

    None when the file has no audio stream; :class:`MediaError` naming the file when it does not decode.
    Channels are averaged; other rates are resampled (:func:`lvmm.imagebind.audio.resample`).
    """
    import av
    import torch

    from lvmm.imagebind.audio import _frame_to_array, resample

    name = str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
    chunks, rate = [], None
    try:
        with av.open(name if name != "<bytes>" else io.BytesIO(source)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            for frame in container.decode(stream):
                chunks.append(_frame_to_array(frame))
    except Exception as e:
        raise MediaError(f"{name}: cannot decode audio ({type(e).__name__}: {e})") from e
    if not chunks:
        return np.zeros(0, np.float32)
    wave = torch.from_numpy(np.concatenate(chunks, axis=1).mean(0, keepdims=True))
    return resample(wave, int(rate), sample_rate)[0].numpy().astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = AUDIO_RATE) -> bytes:
    """Mono float samples in [-1, 1] as the bytes of a 16-bit PCM ``.wav`` (clipped, rounded: deterministic)."""
    import wave

    pcm = np.round(np.clip(np.asarray(samples, dtype=np.float64).reshape(-1), -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def wav_from_bytes(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """A 16-bit PCM ``.wav`` as (mono float32 (N,) in [-1, 1], sample rate); channels are averaged.

    Raises :class:`MediaError` naming ``name`` for anything else (not a wav, truncated, another sample width).
    """
    import wave

    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, ValueError) as e:
        raise MediaError(f"{name}: not a readable wav ({e})") from e
    if width != 2:
        raise MediaError(f"{name}: {8 * width}-bit wav, expected 16-bit PCM")
    if len(raw) != n * channels * 2:
        raise MediaError(f"{name}: truncated wav ({len(raw)} of {n * channels * 2} bytes of samples)")
    pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).astype(np.float32) / 32767.0
    return pcm.mean(1), int(rate)


def encode_gif(frames: np.ndarray, fps: float, loop: int = 0) -> bytes:
    """Encode frames as an animated GIF (Pillow, adaptive palette per frame)."""
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000 / fps)),
        loop=loop,
        disposal=2,
    )
    return buf.getvalue()


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that a rename inside it survives a crash (a no-op where unsupported)."""
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


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Make a finished temporary file ``tmp`` the file ``path``: fsync it, rename it over ``path`` and fsync the
    folder, so that a crash leaves the old file or the new one, never half of one."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary name beside it, then :func:`commit_file`.

    A reader never sees half a file, and a failed write leaves no temporary behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        commit_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = DEFAULT_CRF, fmt: str | None = None
) -> Path:
    """Write frames as ``.mp4`` (H.264) or ``.gif``, or as numbered PNGs when ``path`` has no suffix.

    ``fmt`` (``"mp4"``, ``"gif"`` or ``"frames"``) overrides the suffix, for names with dots in them.
    """
    path = Path(path)
    if fmt is not None and fmt not in ("mp4", "gif", "frames"):
        raise ValueError(f"{path}: unsupported output format {fmt!r} (use mp4, gif or frames)")
    suffix = {"mp4": ".mp4", "gif": ".gif", "frames": ""}[fmt] if fmt else path.suffix.lower()
    if suffix == ".mp4":
        return atomic_write_bytes(path, encode_mp4(frames, fps, crf))
    if suffix == ".gif":
        return atomic_write_bytes(path, encode_gif(frames, fps))
    if suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            write_image(path / f"{i:05d}.png", f)
        return path
    raise ValueError(f"{path}: unsupported output format {suffix!r} (use .mp4, .gif, or a folder)")


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB; raises :class:`MediaError` naming the file.

    16-bit and 32-bit images are scaled to 8 bits (not clipped); images over ``max_pixels`` are
    refused from their header, before decoding.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise MediaError(f"{path}: image of {w}x{h} pixels is larger than the limit of {max_pixels:,} pixels")
            return _to_rgb8(im)
    except MediaError:
        raise
    except FileNotFoundError as e:
        raise MediaError(f"{path}: file not found") from e
    except Image.DecompressionBombError as e:
        raise MediaError(f"{path}: image larger than the limit of {max_pixels:,} pixels ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError(f"{path}: not a readable image ({e})") from e


def _to_rgb8(im) -> np.ndarray:
    """RGB uint8 of a Pillow image; wide integer modes (I;16, I) are scaled by their bit depth."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) <= 65535 else float(2**32 - 1)
        grey = np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if im.mode == "F":
        grey = np.clip(np.asarray(im) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"))


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 image (format from the suffix), atomically."""
    from PIL import Image

    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), "PNG")
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format=fmt)
    return atomic_write_bytes(path, buf.getvalue())


def to_uint8(frames) -> np.ndarray:
    """Float tensor/array in [0, 1] with channels first ``(..., 3, H, W)`` to uint8 channels last."""
    import torch

    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    arr = np.clip(np.asarray(frames) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(arr, -3, -1)


def to_float(frames: np.ndarray):
    """uint8 ``(..., H, W, 3)`` to a float tensor in [0, 1] with channels first ``(..., 3, H, W)``."""
    import torch

    return torch.from_numpy(np.moveaxis(np.asarray(frames), -1, -3).copy()).float().div_(255.0)
