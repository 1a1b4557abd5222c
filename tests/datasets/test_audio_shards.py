"""Audio in video shards: procedural soundtracks (npy: KEY.wav, mp4: an AAC stream), user videos' sound, the reader."""

from __future__ import annotations

import numpy as np
import pytest

from lvmm.datasets.procedural import make_clip
from lvmm.datasets.readers import decode
from lvmm.datasets.recipes import FolderRecipe, ProceduralRecipe
from lvmm.datasets.soundtrack import SAMPLE_RATE, clip_soundtrack
from lvmm.datasets.writer import ShardSettings, write_shards
from lvmm.media import MediaError, encode_mp4, read_audio, wav_bytes, wav_from_bytes
from tests.helpers.shards import load_samples, shards_of
from tests.helpers.video import moving_pattern

PCM_STEP = 1 / 32767  # one 16-bit step


def _write(sources, out, fmt, clip_len=5):
    write_shards(
        sources, out, "t", ShardSettings(size=(32, 32), clip_len=clip_len, fmt=fmt), progress=False, log=lambda m: None
    )
    return load_samples(shards_of(out, "t"))


def test_wav_round_trip_and_corrupt_wav():
    x = np.sin(np.linspace(0, 40, 1000)).astype(np.float32) * 0.9
    y, rate = wav_from_bytes(wav_bytes(x))
    assert rate == SAMPLE_RATE and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=PCM_STEP)
    with pytest.raises(MediaError, match="clipX"):
        wav_from_bytes(b"RIFF not a wav at all", "clipX")
    with pytest.raises(MediaError, match="truncated"):
        wav_from_bytes(wav_bytes(x)[:-100], "clipY")


def test_procedural_npy_shards_carry_the_soundtrack_deterministically(tmp_path):
    recipe = ProceduralRecipe(num_clips=3, seed=5)
    samples = _write(recipe.sources(), tmp_path / "a", "npy")
    assert len(samples) == 3
    for raw in samples.values():
        s = decode(raw)
        assert "wav" in raw and s.has_audio
        clip = make_clip(5, s.meta["index"], height=32, width=32, num_frames=5)
        want = clip_soundtrack(clip, 5, s.meta["index"])
        assert len(want) == round(5 / clip.fps * SAMPLE_RATE)  # the span of the clip's 5 frames
        got = s.audio()
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=PCM_STEP)
        assert s.meta["audio_rate"] == SAMPLE_RATE and s.meta["audio_samples"] == len(want)
    again = _write(recipe.sources(), tmp_path / "b", "npy")
    assert [p.read_bytes() for p in shards_of(tmp_path / "a", "t")] == [
        p.read_bytes() for p in shards_of(tmp_path / "b", "t")
    ]
    assert again.keys() == samples.keys()


def test_procedural_mp4_shards_carry_an_audio_stream(tmp_path):
    samples = _write(ProceduralRecipe(num_clips=2, seed=5).sources(), tmp_path, "mp4", clip_len=9)
    for raw in samples.values():
        s = decode(raw)
        assert "wav" not in raw
        clip = make_clip(5, s.meta["index"], height=32, width=32, num_frames=9)
        want = clip_soundtrack(clip, 5, s.meta["index"])
        got = s.audio()
        assert got is not None and got.dtype == np.float32
        # AAC adds its priming delay and pads to whole 1024-sample frames
        assert len(want) <= len(got) <= len(want) + 3 * 1024
        rms = lambda a: float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
        assert rms(got) == pytest.approx(rms(want), rel=0.25)
        assert s.frames(None).shape == (9, 32, 32, 3)


def test_user_video_keeps_its_audio_per_clip(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    fps, n = 8.0, 16
    t = np.arange(int(n / fps * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * (t > 1.0)).astype(np.float32)  # silent for 1 s, then a tone
    (src / "a.mp4").write_bytes(encode_mp4(moving_pattern(n, seed=1), fps, audio=tone))
    (src / "b.mp4").write_bytes(encode_mp4(moving_pattern(n, seed=2), fps))  # no audio stream
    assert read_audio(src / "b.mp4") is None
    samples = _write(FolderRecipe(str(src)).sources(), tmp_path / "out", "npy", clip_len=8)
    by_video = {}
    for raw in samples.values():
        s = decode(raw)
        by_video.setdefault(s.meta["source"], []).append(s)
    assert all(s.audio() is None for s in by_video["b.mp4"])
    clips = sorted(by_video["a.mp4"], key=lambda s: s.key)
    assert len(clips) >= 2
    first, later = clips[0].audio(), clips[-1].audio()
    assert len(first) == len(later) == 8 / fps * SAMPLE_RATE
    assert np.abs(first[: SAMPLE_RATE // 2]).max() < 0.05  # the first clip starts in the silence
    assert np.sqrt(np.mean(later**2)) > 0.2  # a clip 1 s later hears the tone


def test_reader_audio_accessor_names_a_corrupt_member():
    raw = {"__key__": "k1", "__url__": "shard.tar", "wav": b"garbage", "json": b"{}"}
    with pytest.raises(MediaError, match="k1"):
        decode(raw).audio()
    assert decode({"__key__": "k2", "json": b"{}", "frames.npy": b""}).audio() is None


def test_a_corrupt_wav_is_skipped_and_counted_by_the_latent_encoder_input(tmp_path):
    import io
    import tarfile

    from lvmm.datasets.latent_encoding import VideoClipBatches, clip_audio

    _write(ProceduralRecipe(num_clips=3, seed=5).sources(), tmp_path / "a", "npy", clip_len=9)
    (shard,) = shards_of(tmp_path / "a", "t")
    bad = tmp_path / "bad.tar"
    corrupted = None
    with tarfile.open(shard) as src, tarfile.open(bad, "w") as dst:
        for m in src:
            data = src.extractfile(m).read()
            if m.name.endswith(".wav") and corrupted is None:
                corrupted, data = m.name[: -len(".wav")], b"RIFF\x00\x00"
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    batches = list(VideoClipBatches([str(bad)], num_frames=9, batch_size=8, rank=0, world_size=1))
    keys = [k for b in batches for k in b["keys"]]
    failed = [f for b in batches for f in b["failed"]]
    assert len(keys) == 2 and len(failed) == 1 and corrupted in failed[0] and "wav" in failed[0]
    metas = [m for b in batches for m in b["meta"]]
    assert all(m["audio"] is not None and len(m["audio"]) == round(9 / 8 * SAMPLE_RATE) for m in metas)
    # a sub-clip hears its own frames' span
    wave = np.arange(9000, dtype=np.float32)
    np.testing.assert_array_equal(clip_audio(wave, 9, 2, 4), wave[2000:5000])
    assert clip_audio(None, 9, 0, 8) is None and clip_audio(wave[:9], 9, 0, 8) is None  # too short to embed
