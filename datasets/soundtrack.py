"""Procedural soundtracks for the built-in corpus: synthetic audio that follows a clip's motion.

Each motion family of :mod:`lvmm.datasets.procedural` has a timbre, and the sound's loudness follows
the motion's own phase ``theta(t) = 2 pi f t + phase`` (the clip's ``frequency_hz`` and ``phase``), so
sound and motion share their tempo; louder for larger motion (``amplitude_fraction``):

=========  ==========================================================================
family     sound
=========  ==========================================================================
still      faint room tone (broadband noise at a constant, low level)
sway       wind: noise band-passed to 200-1200 Hz, swelling once per cycle
ripple     water: noise in 500-3000 Hz with droplets (decaying 600-1800 Hz tones), once per cycle
zoom       breathing: low noise (100-600 Hz), envelope squared (inhale, exhale)
drift      a low hum (110 Hz and its harmonics) that swells with the drift
rotation   a tone whose pitch rises and falls with the rotation angle (220 Hz +- 20 %)
=========  ==========================================================================

Deterministic per (seed, index). Not yet written into shards (``tools/make_shards.py`` would add
``KEY.wav`` beside the frames); ImageBind's audio encoder takes 16 kHz mono, the default rate here.
"""

from __future__ import annotations

import math

import numpy as np

from lvmm.datasets.procedural import FAMILIES, MotionClip

SAMPLE_RATE = 16000
"""ImageBind's audio rate (:data:`lvmm.imagebind.audio.SAMPLE_RATE`)."""

STILL_LEVEL = 0.02  # peak level of a still clip's room tone
BANDS_HZ = {"still": (50, 6000), "sway": (200, 1200), "ripple": (500, 3000), "zoom": (100, 600)}


def _band_noise(rng: np.random.Generator, n: int, band: tuple[float, float], rate: int) -> np.ndarray:
    """White noise band-passed (in the frequency domain) to ``band`` Hz, unit RMS: (n,)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum[(freqs < band[0]) | (freqs > band[1])] = 0
    x = np.fft.irfft(spectrum, n)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def make_soundtrack(
    family: str,
    params: dict,
    duration: float,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    index: int = 0,
) -> np.ndarray:
    """Mono audio (N,) float32 in [-1, 1] of ``duration`` seconds for a clip of ``family`` with ``params``.

    ``params`` are the clip's (:class:`~lvmm.datasets.procedural.MotionClip` ``params``): ``frequency_hz``,
    ``phase`` and ``amplitude_fraction`` are used.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; the families are {FAMILIES}")
    n = int(round(duration * sample_rate))
    if n < 1:
        raise ValueError(f"duration {duration} s gives no samples at {sample_rate} Hz")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x50D]))
    t = np.arange(n) / sample_rate
    theta = 2 * math.pi * float(params["frequency_hz"]) * t + float(params["phase"])
    swell = 0.5 * (1 + np.sin(theta))  # the motion's phase: 0 .. 1 once per cycle
    level = 0.2 + 0.8 * float(params["amplitude_fraction"])
    if family == "still":
        return (STILL_LEVEL * np.clip(_band_noise(rng, n, BANDS_HZ["still"], sample_rate) / 4, -1, 1)).astype(
            np.float32
        )
    if family in ("sway", "zoom"):
        env = swell if family == "sway" else swell**2
        x = _band_noise(rng, n, BANDS_HZ[family], sample_rate) * (0.1 + 0.9 * env)
    elif family == "ripple":
        x = 0.5 * _band_noise(rng, n, BANDS_HZ["ripple"], sample_rate) * (0.2 + 0.8 * swell)
        drops = rng.poisson(8 * float(params["frequency_hz"]) * duration)
        for _ in range(drops):  # droplets, more of them where the ripple swells
            start = int(rng.integers(0, n))
            if rng.random() > swell[start]:
                continue
            m = min(n - start, int(0.06 * sample_rate))
            tt = np.arange(m) / sample_rate
            x[start : start + m] += np.sin(2 * math.pi * rng.uniform(600, 1800) * tt) * np.exp(-tt / 0.015) * 3
    elif family == "drift":
        hum = sum(np.sin(2 * math.pi * 110 * h * t) / h for h in (1, 2, 3))
        x = hum * (0.2 + 0.8 * swell)
    else:  # rotation: frequency modulation by the angle
        freq = 220 * (1 + 0.2 * np.sin(theta))
        x = np.sin(2 * math.pi * np.cumsum(freq) / sample_rate) * (0.5 + 0.5 * swell)
    x = x / max(float(np.abs(x).max()), 1e-12)
    return (level * x).astype(np.float32)


def clip_soundtrack(clip: MotionClip, seed: int = 0, index: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The soundtrack of a procedural clip, as long as its frames play at its fps."""
    return make_soundtrack(clip.family, clip.params, len(clip.frames) / clip.fps, sample_rate, seed, index)
