"""Audio preprocessing of ImageBind's ``load_and_transform_audio_data``.

A waveform at 16 kHz is cut into 3 clips of 2 s spread evenly over its length, each clip becomes a
128-bin Kaldi-style log-mel filter bank padded/cut to 204 frames, and the result is normalised with
ImageBind's dataset statistics: ``(3, 1, 128, 204)`` per input.

Two upstream behaviours are reproduced on purpose, because the checkpoint was trained with them:

* the clip sampler is pytorchvideo's ``ConstantClipsPerVideoSampler`` at the commit ImageBind pins
  (step ``max_start / (clips - 1)``, exact fractions; the PyPI release 0.1.5 differs);
* each clip's mean is subtracted *in place on a view of the whole waveform*, clip after clip, so a
  later clip that overlaps an earlier one sees samples already shifted by that clip's mean.

The filter bank is computed in float32 with torch, following Kaldi's (and
``torchaudio.compliance.kaldi.fbank``'s) steps in the same order, which reproduces the official
result to float32 rounding. Resampling to 16 kHz uses ``scipy.signal.resample_poly`` (a
polyphase Kaiser-windowed FIR filter); the official code uses ``torchaudio.functional.resample``
(a windowed-sinc filter), so audio that is not already at 16 kHz gives slightly different inputs.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
TARGET_FRAMES = 204
CLIP_DURATION_S = 2
CLIPS_PER_AUDIO = 3
# ImageBind's dataset statistics of the log-mel values (AudioSet).
FBANK_MEAN = -4.268
FBANK_STD = 9.138
# Kaldi framing and filter-bank settings used by ImageBind.
FRAME_LENGTH_MS = 25
FRAME_SHIFT_MS = 10
PREEMPHASIS = 0.97
LOW_FREQ_HZ = 20.0
MEL_BREAK_HZ = 700.0
MEL_HIGH_FREQ_Q = 1127.0
LOG_FLOOR = torch.finfo(torch.float32).eps  # Kaldi floors energies at float epsilon before the log

AudioInput = str | os.PathLike | tuple


# ----------------------------------------------------------------------------------------------
# Decoding and resampling
# ----------------------------------------------------------------------------------------------


def _frame_to_array(frame) -> np.ndarray:
    """One decoded PyAV frame as float32 ``(channels, samples)`` in [-1, 1]."""
    a = frame.to_ndarray()
    fmt = frame.format
    channels = frame.layout.nb_channels
    if not fmt.is_planar:  # packed: (1, samples * channels), interleaved
        a = a.reshape(-1, channels).T
    if a.dtype == np.uint8:  # unsigned 8-bit PCM is offset by 128
        return (a.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(a.dtype, np.integer):
        # Integer PCM scaled by 2**(bits-1), as torchaudio.load does (int16 / 32768).
        return a.astype(np.float32) / float(2 ** (8 * a.dtype.itemsize - 1))
    return a.astype(np.float32)


def load_audio(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of a file (wav, flac, mp3, or a video's track) with PyAV.

    Returns ``(waveform (C, N) float32, sample_rate)`` at the file's own rate.
    """
    import av

    from lvmm.media import MediaError

    chunks = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            for frame in container.decode(stream):
                chunks.append(_frame_to_array(frame))
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"{path}: cannot decode audio ({type(e).__name__}: {e})") from e
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise MediaError(f"{path}: the audio stream has no samples")
    return torch.from_numpy(np.concatenate(chunks, axis=1)), int(rate)


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Resample ``(C, N)`` audio with ``scipy.signal.resample_poly`` (float64 inside, float32 out)."""
    if orig_sr == new_sr:
        return waveform
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(new_sr))
    out = resample_poly(waveform.double().numpy(), new_sr // g, orig_sr // g, axis=-1)
    return torch.from_numpy(out.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# Clip sampling
# ----------------------------------------------------------------------------------------------


def clip_spans(
    num_samples: int,
    sample_rate: int = SAMPLE_RATE,
    clip_duration: int = CLIP_DURATION_S,
    num_clips: int = CLIPS_PER_AUDIO,
) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of the clips, as the official constant-clips sampler picks them.

    The duration is a Python float, the latest start ``max(duration - clip, 0)`` becomes an exact
    ``Fraction``, clips start at ``i * max_start / (num_clips - 1)``, and sample indices are
    truncated. Audio shorter than a clip gives ``num_clips`` identical clips from 0.
    """
    duration = num_samples / sample_rate
    max_start = Fraction(max(duration - clip_duration, 0))
    step = max_start / max(num_clips - 1, 1)
    spans = []
    for i in range(num_clips):
        start = i * step
        end = start + clip_duration
        spans.append((int(start * sample_rate), int(end * sample_rate)))
    return spans


# ----------------------------------------------------------------------------------------------
# Kaldi filter bank
# ----------------------------------------------------------------------------------------------


def _mel(freq):
    """Kaldi's mel scale, ``1127 ln(1 + f / 700)``, for a float or a tensor."""
    if isinstance(freq, torch.Tensor):
        return MEL_HIGH_FREQ_Q * (1.0 + freq / MEL_BREAK_HZ).log()
    return MEL_HIGH_FREQ_Q * math.log(1.0 + freq / MEL_BREAK_HZ)


def mel_filter_bank(
    num_bins: int, fft_size: int, sample_rate: int, low_freq: float = LOW_FREQ_HZ, high_freq: float | None = None
) -> torch.Tensor:
    """Triangular filters ``(num_bins, fft_size // 2 + 1)``, evenly spaced on the mel scale.

    Evaluated at the FFT bin frequencies ``k * sr / fft_size``; the Nyquist bin gets weight 0, as
    in Kaldi. Kaldi's order of operations, but in float64: torchaudio evaluates the mel scale in
    float32, where the vectorised log differs by an ulp between CPUs (AVX2 and AVX-512 kernels), and
    that moves a weight by up to ~1e-5. In float64 the filters are the same on every machine.
    """
    high_freq = sample_rate / 2 if high_freq is None else high_freq
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    k = torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)  # (M, 1)
    left = mel_low + k * delta
    center = mel_low + (k + 1.0) * delta
    right = mel_low + (k + 2.0) * delta
    mel = _mel((sample_rate / fft_size) * torch.arange(fft_size // 2, dtype=torch.float64)).unsqueeze(0)  # (1, K)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.min(up, down).clamp(min=0.0)  # (M, K)
    return F.pad(banks, (0, 1))  # (M, K + 1): zero weight on the Nyquist bin


def kaldi_fbank(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS) -> torch.Tensor:
    """Log-mel filter bank ``(frames, num_mel_bins)`` of a 1-D float32 waveform.

    Matches ``torchaudio.compliance.kaldi.fbank(w, htk_compat=True, sample_frequency=sr,
    use_energy=False, window_type="hanning", num_mel_bins=..., dither=0.0, frame_length=25,
    frame_shift=10)``: frames with ``snip_edges``, per-frame DC removal, pre-emphasis 0.97, a
    symmetric Hann window, zero-padding to a power of two, power spectrum, mel filters, log.
    """
    window = int(sample_rate * FRAME_LENGTH_MS / 1000)
    shift = int(sample_rate * FRAME_SHIFT_MS / 1000)
    fft_size = 1 << (window - 1).bit_length()  # next power of two
    if wave.ndim != 1 or wave.numel() < window:
        raise ValueError(f"fbank needs a 1-D waveform of at least {window} samples, got shape {tuple(wave.shape)}")
    frames = wave.unfold(0, window, shift)  # (T, W), T = 1 + (N - W) // shift
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # x[-1] := x[0]
    frames = frames - PREEMPHASIS * previous
    frames = frames * torch.hann_window(window, periodic=False, dtype=frames.dtype).unsqueeze(0)
    frames = F.pad(frames, (0, fft_size - window))  # (T, fft_size)
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (T, fft_size // 2 + 1)
    banks = mel_filter_bank(num_mel_bins, fft_size, sample_rate).to(power.dtype)
    energies = torch.mm(power, banks.T)  # (T, M)
    return torch.max(energies, torch.tensor(LOG_FLOOR, dtype=energies.dtype)).log()


# ----------------------------------------------------------------------------------------------
# The official transform
# ----------------------------------------------------------------------------------------------


def waveform_to_clips(
    waveform: torch.Tensor,
    sample_rate: int,
    num_mel_bins: int = NUM_MEL_BINS,
    target_frames: int = TARGET_FRAMES,
    clip_duration: int = CLIP_DURATION_S,
    num_clips: int = CLIPS_PER_AUDIO,
) -> torch.Tensor:
    """The audio model's input for one waveform ``(C, N)`` (or ``(N,)``): ``(clips, 1, mels, frames)``.

    Resamples to 16 kHz first when needed. The caller's tensor is not modified.
    """
    waveform = torch.as_tensor(waveform, dtype=torch.float32)
    if waveform.ndim == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.ndim != 2 or waveform.shape[1] == 0:
        raise ValueError(f"audio waveform must be (channels, samples) with samples > 0, got {tuple(waveform.shape)}")
    waveform = resample(waveform, sample_rate, SAMPLE_RATE)
    # A private copy: the in-place per-clip mean subtraction below must not reach the caller.
    waveform = waveform.clone()
    mean, std = torch.tensor(FBANK_MEAN), torch.tensor(FBANK_STD)
    clips = []
    for start, end in clip_spans(waveform.shape[1], SAMPLE_RATE, clip_duration, num_clips):
        clip = waveform[:, start:end]  # a view: the subtraction shifts later overlapping clips too
        clip -= clip.mean()
        mel = kaldi_fbank(clip[0], SAMPLE_RATE, num_mel_bins).T  # (M, T), channel 0 only
        pad = target_frames - mel.shape[1]
        mel = F.pad(mel, (0, pad)) if pad > 0 else mel[:, :target_frames]  # (M, target_frames)
        clips.append((mel.unsqueeze(0) - mean) / std)  # (1, M, target_frames)
    return torch.stack(clips)  # (clips, 1, M, target_frames)


def preprocess_audio(item: AudioInput) -> torch.Tensor:
    """``(3, 1, 128, 204)`` from a file path or a ``(waveform, sample_rate)`` pair."""
    if isinstance(item, (str, os.PathLike)):
        waveform, sr = load_audio(item)
        try:
            return waveform_to_clips(waveform, sr)
        except ValueError as e:
            raise ValueError(f"{item}: {e}") from e
    if isinstance(item, tuple) and len(item) == 2:
        waveform, sr = item
        return waveform_to_clips(
            torch.as_tensor(np.asarray(waveform) if not isinstance(waveform, torch.Tensor) else waveform), int(sr)
        )
    raise TypeError(f"expected an audio path or a (waveform, sample_rate) pair, got {type(item).__name__}")
