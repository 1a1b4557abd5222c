"""Procedural soundtracks (lvmm.datasets.soundtrack): tempo and loudness follow the motion, timbre the family."""

import numpy as np
import pytest

from lvmm.datasets.procedural import FAMILIES, make_clip
from lvmm.datasets.soundtrack import SAMPLE_RATE, clip_soundtrack, make_soundtrack

PARAMS = {"frequency_hz": 0.5, "phase": 0.3, "amplitude_fraction": 0.6}


def _envelope(x, hop=320):
    """RMS per 20 ms: (N / hop,)."""
    n = len(x) // hop
    return np.sqrt((x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(1))


def _centroid(x):
    mag = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float((mag * freqs).sum() / mag.sum())


@pytest.mark.parametrize("family", ["sway", "ripple", "zoom", "drift", "rotation"])
def test_the_sound_swells_at_the_motion_frequency(family):
    for f in (0.4, 0.8):
        x = make_soundtrack(family, dict(PARAMS, frequency_hz=f), duration=10.0)
        assert x.dtype == np.float32 and len(x) == 10 * SAMPLE_RATE and np.abs(x).max() <= 1
        env = _envelope(x)
        spectrum = np.abs(np.fft.rfft(env - env.mean()))
        freqs = np.fft.rfftfreq(len(env), 0.02)
        assert freqs[1:][spectrum[1:].argmax()] == pytest.approx(f, abs=0.11)  # the envelope's tempo


def test_families_sound_different_and_still_is_quiet():
    sounds = {fam: make_soundtrack(fam, PARAMS, duration=4.0) for fam in FAMILIES}
    rms = {fam: float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) for fam, x in sounds.items()}
    assert all(rms["still"] < 0.2 * rms[f] for f in FAMILIES if f != "still")
    assert _centroid(sounds["drift"]) < _centroid(sounds["sway"]) < _centroid(sounds["ripple"])
    loud = make_soundtrack("sway", dict(PARAMS, amplitude_fraction=1.0), duration=4.0)
    soft = make_soundtrack("sway", dict(PARAMS, amplitude_fraction=0.0), duration=4.0)
    assert np.abs(loud).max() > 3 * np.abs(soft).max()  # larger motion, louder sound


def test_a_clip_has_its_soundtrack_deterministically():
    clip = make_clip(seed=0, index=3, num_frames=16)
    a, b = clip_soundtrack(clip, 0, 3), clip_soundtrack(clip, 0, 3)
    assert np.array_equal(a, b) and len(a) == int(round(16 / clip.fps * SAMPLE_RATE))
    assert not np.array_equal(a, clip_soundtrack(clip, 0, 4)) or clip.family in ("drift", "rotation")
    with pytest.raises(ValueError, match="family"):
        make_soundtrack("dance", PARAMS, 1.0)
