"""A corpus of bad inputs beside good ones, for the bad-corpus drill: every kind of file that broke a run."""

from __future__ import annotations

import struct
import wave
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from lvmm.media import encode_mp4
from tests.helpers.video import moving_pattern, write_video


def faststart_mp4(path: Path, frames: np.ndarray, fps: float = 8.0) -> bytes:
    """H.264 mp4 with its index (moov) first, so that a truncated copy still declares every frame."""
    import av

    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for a in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path.read_bytes()


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width x height`` (a decompression bomb's calling card)."""

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def write_good(root: Path) -> dict[str, np.ndarray]:
    """Good inputs: two mp4s (one captioned), a gif, and a frame folder of 16-bit grey PNGs; returns their frames."""
    good = {
        "good/a.mp4": moving_pattern(8, 32, 32, seed=1),
        "good/b.mp4": moving_pattern(8, 32, 32, seed=2),
        "good/c.gif": moving_pattern(6, 32, 32, seed=3),
    }
    for rel, frames in good.items():
        write_video(root / rel, frames, fps=8.0)
    (root / "good" / "a.txt").write_text("a good caption\n")
    grey16 = (np.linspace(0, 65535, 6 * 32 * 32).reshape(6, 32, 32)).astype(np.uint16)
    folder = root / "good" / "grey16"
    folder.mkdir(parents=True)
    for i, g in enumerate(grey16):
        Image.fromarray(g).save(folder / f"{i:03d}.png")
    grey8 = np.clip(grey16 / 257.0 + 0.5, 0, 255).astype(np.uint8)
    good["good/grey16"] = np.repeat(grey8[..., None], 3, axis=-1)
    return good


def write_bad(root: Path) -> dict[str, str]:
    """Bad inputs; returns ``{rel: a word the failure reason must contain}``."""
    bad = root / "bad"
    bad.mkdir(parents=True)
    clip = moving_pattern(40, 32, 32, seed=9)
    full = faststart_mp4(bad / "truncated_after_index.mp4", clip)
    (bad / "truncated_after_index.mp4").write_bytes(full[: int(len(full) * 0.8)])
    half = encode_mp4(clip, 8.0)
    (bad / "truncated_half.mp4").write_bytes(half[: len(half) // 2])
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "text.mp4").write_text("this is not a video\n")
    (bad / "random.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (bad / "random.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 8)
    (bad / "html.mkv").write_text("<html><body>404 not found</body></html>")
    with wave.open(str(bad / "audio_only.mov"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    gif = bad / "cut.gif"
    write_video(gif, moving_pattern(12, 32, 32, seed=4), fps=8.0)
    gif.write_bytes(gif.read_bytes()[:200])
    mixed = bad / "mixed_sizes"
    write_video(mixed, moving_pattern(4, 32, 32, seed=5))
    Image.fromarray(moving_pattern(1, 24, 40, seed=5)[0]).save(mixed / "img_0009.png")
    corrupt = bad / "corrupt_frame"
    write_video(corrupt, moving_pattern(4, 32, 32, seed=6))
    (corrupt / "img_0002.png").write_bytes((corrupt / "img_0002.png").read_bytes()[:60])
    garbage = bad / "garbage_frame"
    write_video(garbage, moving_pattern(4, 32, 32, seed=7))
    (garbage / "img_0001.png").write_bytes(b"definitely not a png")
    bomb = bad / "bomb_frame"
    write_video(bomb, moving_pattern(3, 32, 32, seed=8))
    png_header_only(bomb / "img_0001.png", 100_000, 100_000)
    write_video(bad / "latin1_caption.mp4", moving_pattern(8, 32, 32, seed=10), fps=8.0)
    (bad / "latin1_caption.txt").write_bytes(b"caf\xe9 cr\xe8me")
    write_video(bad / "huge_caption.mp4", moving_pattern(8, 32, 32, seed=11), fps=8.0)
    (bad / "huge_caption.txt").write_text("word " * 40_000)
    return {
        "bad/truncated_after_index.mp4": "decode",
        "bad/truncated_half.mp4": "cannot open",
        "bad/empty.mp4": "empty file",
        "bad/text.mp4": "cannot open",
        "bad/random.avi": "cannot open",
        "bad/random.webm": "cannot open",
        "bad/html.mkv": "cannot open",
        "bad/audio_only.mov": "no video stream",
        "bad/cut.gif": "decode",
        "bad/mixed_sizes": "the first was",
        "bad/corrupt_frame": "img_0002.png",
        "bad/garbage_frame": "img_0001.png",
        "bad/bomb_frame": "limit",
        "bad/latin1_caption.mp4": "not UTF-8",
        "bad/huge_caption.mp4": "limit",
    }
