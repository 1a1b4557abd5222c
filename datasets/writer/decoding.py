"""Decoding inputs one frame at a time (videos through PyAV, frame folders), resampling in time, and the geometry
(crop or pad, resize) that brings frames to the shard size; :func:`iter_clips` cuts the stream into clips."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from lvmm.media import MediaError, read_image

from ..recipes import frame_files
from .settings import MIN_CLIP_FRAMES


def iter_frame_folder(path: str) -> Iterator[np.ndarray]:
    """The images of a frame folder in name order, as RGB uint8 frames; errors name the folder or file."""
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


def resample(frames: Iterator[np.ndarray], pick: Callable[[int], int]) -> Iterator[tuple[int, np.ndarray]]:
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
