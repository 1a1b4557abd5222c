"""Small synthetic videos for the data tests: a textured pattern that moves, in several containers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from lvmm.media import atomic_write_bytes, encode_gif, encode_mp4, write_image


def moving_pattern(
    num_frames: int = 16, height: int = 64, width: int = 64, seed: int = 0, speed: tuple[float, float] = (1.0, 0.5)
) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: smooth colour blobs translating ``speed`` px/frame (codec friendly)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    freqs = rng.uniform(0.05, 0.2, size=(3, 2))
    phases = rng.uniform(0, 2 * np.pi, size=3)
    frames = []
    for t in range(num_frames):
        x, y = xs - speed[0] * t, ys - speed[1] * t
        chans = [0.5 + 0.45 * np.sin(fx * x + fy * y + p) for (fx, fy), p in zip(freqs, phases)]
        frames.append(np.stack(chans, -1))
    return (np.stack(frames) * 255 + 0.5).astype(np.uint8)


def write_avi(path: Path, frames: np.ndarray, fps: float) -> Path:
    """MPEG-4 part 2 in AVI (what old datasets like UTD-MHAD and NATOPS ship)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_video(path: Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write by suffix: .mp4 (H.264), .gif, .avi; a path without suffix becomes a PNG frame folder."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        return atomic_write_bytes(path, encode_mp4(frames, fps))
    if suffix == ".gif":
        return atomic_write_bytes(path, encode_gif(frames, fps))
    if suffix == ".avi":
        return write_avi(path, frames, fps)
    if suffix == "":
        for i, f in enumerate(frames):
            write_image(path / f"img_{i:04d}.png", f)
        return path
    raise ValueError(f"{path}: no synthetic writer for {suffix!r}")


def write_bad_files(folder: Path, good: np.ndarray) -> list[Path]:
    """A truncated mp4, a zero-byte mp4 and a text file named .mp4; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    truncated = folder / "truncated.mp4"
    data = encode_mp4(good, 8.0)
    truncated.write_bytes(data[: len(data) // 2])
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    return [truncated, empty, text]
