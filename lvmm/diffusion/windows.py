"""Long sequences from a network of short windows, denoised jointly (MultiDiffusion).

A U-Net trained on K frames denoises a sequence of N > K frames as overlapping windows of K frames at
every step, and each frame's output is the weighted mean of the windows that cover it: the
least-squares fusion of Bar-Tal et al. 2023 (MultiDiffusion, eq. 3-5) applied to the network's output
rather than to x_{t-1} (the same thing for the first-order samplers, whose update is linear in it).
Every window sees the same x_t, so the windows agree as the noise falls and no window is conditioned
on an earlier one's finished frames: there is nothing to drift from and nothing to join, and all
windows of a step run as one batch. Weights fall linearly to almost nothing at each window's ends
(:func:`window_weights`), so a frame is mostly decided by the windows in which it sits in the middle and
a window entering or leaving the mean changes nothing abruptly.

:class:`WindowedDenoiser` has the network's call signature, so the sampling loop, classifier-free
guidance and the energy terms (which see the whole sequence) work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def window_starts(total: int, window: int, stride: int) -> list[int]:
    """Offsets of the windows ``s .. s + window - 1`` that cover frames ``0 .. total - 1``, ``stride`` apart,
    the last one ending at the last frame (so it may sit closer to the one before)."""
    if not 1 <= stride <= window:
        raise ValueError(f"window stride must be between 1 and the window ({window}), got {stride}")
    if total <= window:
        return [0]
    starts = list(range(0, total - window + 1, stride))
    if starts[-1] != total - window:
        starts.append(total - window)
    return starts


EDGE_WEIGHT = 0.01
"""Weight of a window's first and last frame, against 1 per frame inwards. Not 0, so the clip's first and last
frames (in one window only) are defined; small, because a frame's mean loses one window and gains another
at every window start. On the demo model (120-frame clips, K = 8 half a window apart, seeds 0-2, DDIM-50 and
DPM-Solver++ 20) a tent with weight 1 at the ends made the step into a window's first frame 1.37-1.38x the
median step (1.62-1.65x in the fields); this, 1.13-1.16x (1.26-1.30x)."""


def window_weights(window: int) -> torch.Tensor:
    """(window,) weights of a window's frames: :data:`EDGE_WEIGHT` at both ends, rising by 1 per frame inwards."""
    k = torch.arange(window, dtype=torch.float32)
    return torch.minimum(k, window - 1 - k) + EDGE_WEIGHT


class WindowedDenoiser:
    """``model`` over sequences longer than its window: ``x`` (B, C, N, h, w) -> output of the same shape.

    Args:
        model: the network, ``model(x_t, t, **conditions)`` on windows (B', C, window, h, w); every
            condition is per sample (batched along dim 0) and shared by all windows of a sample.
        window: frames per window (the network's K).
        stride: frames between window starts (window - stride frames are shared by neighbours).
        max_batch: at most this many windows (times the batch) per network call, bounding memory;
            the result does not depend on it.
    """

    def __init__(self, model: Callable[..., torch.Tensor], window: int, stride: int, max_batch: int = 16):
        self.model, self.window, self.stride, self.max_batch = model, int(window), int(stride), max(1, int(max_batch))
        self.cond_dim = getattr(model, "cond_dim", None)
        self.weights = window_weights(self.window)

    def starts(self, frames: int) -> list[int]:
        """Window offsets for a sequence of ``frames`` frames (:func:`window_starts`)."""
        return window_starts(frames, self.window, self.stride)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        b, n = x.shape[0], x.shape[2]
        if n <= self.window:
            return self.model(x, t, **cond)
        starts = self.starts(n)
        weights = self.weights.to(x)
        total = torch.zeros_like(x)  # (B, C, N, h, w): weighted sum of the windows' outputs
        norm = torch.zeros(n, dtype=x.dtype, device=x.device)  # (N,): sum of the weights per frame
        for i in range(0, len(starts), self.max_batch):
            chunk = starts[i : i + self.max_batch]
            m = len(chunk)
            xs = torch.cat([x[:, :, s : s + self.window] for s in chunk])  # (m * B, C, window, h, w), window-major
            reps = {k: None if v is None else torch.cat([v] * m) for k, v in cond.items()}
            out = self.model(xs, t.expand(b).repeat(m), **reps).chunk(m)  # m x (B, C, window, h, w)
            for s, o in zip(chunk, out):
                total[:, :, s : s + self.window] += weights.view(1, 1, -1, 1, 1) * o
                norm[s : s + self.window] += weights
        return total / norm.view(1, 1, n, 1, 1)
