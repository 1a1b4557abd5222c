"""Attention blocks of the factorised space-time U-Net (:mod:`lvmm.nets.unet3d`).

Every block maps a video feature ``(B, C, T, H, W)`` to the same shape with a residual connection;
the space/time factorisation is only a matter of which axis is folded into the batch:

* :class:`SpatialAttention`: each frame attends over its own ``H * W`` positions (Ho et al.);
* :class:`CrossAttention`: every position of every frame attends to a few condition tokens;
* :class:`TemporalAttention`: each position attends over the ``T`` frames, with a learned bias per
  head and relative frame offset (the relative positions of Ho et al.), so the block knows the
  order of the frames while the number of frames stays free at inference.

All of them use :func:`torch.nn.functional.scaled_dot_product_attention`, except temporal attention at
inference on CPU over a few frames with narrow heads (:data:`IN_LAYOUT_MAX`), computed in the video's own
layout (:meth:`TemporalAttention._in_layout`): there the fused kernel runs B*H*W tiny T x T problems,
and folding positions into the batch and back copies the activations twice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvmm.nets.layers import UNET_NORM_EPS, group_norm


class MultiHeadAttention(nn.Module):
    """Multi-head attention over token sequences ``(N, L, C)``, optionally to a context ``(N, S, Cc)``."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        # Zero-initialised output: each attention block starts as the identity of its residual branch.
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        context = x if context is None else context
        q = rearrange(self.to_q(x), "n l (h d) -> n h l d", h=self.heads)  # (N, heads, L, d)
        k = rearrange(self.to_k(context), "n s (h d) -> n h s d", h=self.heads)  # (N, heads, S, d)
        v = rearrange(self.to_v(context), "n s (h d) -> n h s d", h=self.heads)
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (N, heads, L, d)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))

    def project(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """``layer`` on the channels of a channels-first ``(B, C, *)`` tensor: ``(B, heads, d, *)``, no transpose."""
        b, c, *rest = x.shape
        out = torch.matmul(layer.weight, x.reshape(b, c, -1))  # (B, heads * d, prod(rest))
        return out.view(b, self.heads, -1, *rest)

    def output(self, out: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """``to_out`` on channels-first heads ``(B, heads, d, *)``, reshaped to ``shape`` (B, C, *)."""
        out = torch.matmul(self.to_out.weight, out.reshape(shape[0], -1, math.prod(shape[2:])))  # (B, C, prod(*))
        return (out + self.to_out.bias[:, None]).view(shape)


class SpatialAttention(nn.Module):
    """Self-attention over the positions of each frame: ``(B, C, T, H, W) -> (B, C, T, H, W)``."""

    def __init__(self, channels: int, heads: int, head_dim: int, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups, UNET_NORM_EPS)
        self.attn = MultiHeadAttention(channels, heads, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        tokens = rearrange(self.norm(x), "b c t h w -> (b t) (h w) c")
        out = self.attn(tokens)
        return x + rearrange(out, "(b t) (h w) c -> b c t h w", b=b, t=t, h=h, w=w)


class CrossAttention(nn.Module):
    """Attention from every position to the condition tokens ``(B, S, D)``; the tokens are shared by all frames."""

    def __init__(self, channels: int, context_dim: int, heads: int, head_dim: int, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups, UNET_NORM_EPS)
        self.attn = MultiHeadAttention(channels, heads, head_dim, context_dim=context_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        # Frames of one clip share the tokens: fold time into the query length, not the batch, so the
        # tokens' keys and values are computed once per clip.
        tokens = rearrange(self.norm(x), "b c t h w -> b (t h w) c")
        out = self.attn(tokens, context)  # (B, T*H*W, C)
        return x + rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h, w=w)


class RelativePositionBias(nn.Module):
    """A learned attention bias per head and relative frame offset, clipped at ``max_distance``."""

    def __init__(self, heads: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Embedding(2 * max_distance + 1, heads)
        nn.init.zeros_(self.table.weight)

    def forward(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, device=self.table.weight.device)
        offset = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance) + self.max_distance
        return rearrange(self.table(offset), "i j h -> h i j")  # (heads, T, T)


IN_LAYOUT_MAX = 64
"""Largest frames x head width for which CPU inference takes :meth:`TemporalAttention._in_layout`. Measured on
two 2-core machines (the whole block forward, 18 clips, 64 channels, 4 heads): T = 8, d = 8 1.1-2.1x faster than
the fused kernel at 16 x 16 positions and 1.3-1.8x at 8 x 8; T x d = 128 (8 x 16, 16 x 8) 0.65-1.2x, slower
beyond, as is its backward at every size, so training keeps the fused kernel."""


class TemporalAttention(nn.Module):
    """Self-attention over the frames at each position, with relative-position biases."""

    def __init__(self, channels: int, heads: int, head_dim: int, max_distance: int, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups, UNET_NORM_EPS)
        self.attn = MultiHeadAttention(channels, heads, head_dim)
        self.relative_bias = RelativePositionBias(heads, max_distance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        bias = self.relative_bias(t)  # (heads, T, T)
        head_dim = self.attn.to_q.out_features // self.attn.heads
        if x.device.type == "cpu" and not torch.is_grad_enabled() and t * head_dim <= IN_LAYOUT_MAX:
            return x + self._in_layout(self.norm(x), bias)
        tokens = rearrange(self.norm(x), "b c t h w -> (b h w) t c")
        out = self.attn(tokens, bias=bias[None])  # (B*H*W, T, C)
        return x + rearrange(out, "(b h w) t c -> b c t h w", b=b, h=h, w=w)

    def _in_layout(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The attention of ``forward`` on the normalised video ``y`` (B, C, T, H, W) without leaving its layout:
        scores and mixing as d + T elementwise products over the positions (the innermost axis). Returns the
        residual branch (B, C, T, H, W)."""
        attn = self.attn
        # (B, heads, d, T, P): the positions flattened innermost
        q, k, v = (attn.project(layer, y).flatten(4) for layer in (attn.to_q, attn.to_k, attn.to_v))
        d, t = q.shape[2], q.shape[3]
        q = q * d**-0.5
        # scores[b, h, t, s, p] = bias[h, t, s] + sum_i q[b, h, i, t, p] k[b, h, i, s, p]
        scores = q[:, :, 0, :, None] * k[:, :, 0, None, :] + bias[None, :, :, :, None].to(
            q.dtype
        )  # (B, heads, T, S, P)
        for i in range(1, d):
            scores.addcmul_(q[:, :, i, :, None], k[:, :, i, None, :])
        weights = scores.softmax(dim=3)
        # out[b, h, i, t, p] = sum_s weights[b, h, t, s, p] v[b, h, i, s, p]
        out = weights[:, :, None, :, 0] * v[:, :, :, None, 0]  # (B, heads, d, T, P)
        for s in range(1, t):
            out.addcmul_(weights[:, :, None, :, s], v[:, :, :, None, s])
        return attn.output(out, y.shape)
