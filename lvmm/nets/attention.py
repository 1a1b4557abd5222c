"""Attention blocks of the factorised space-time U-Net (:mod:`lvmm.nets.unet3d`).

Every block maps a video feature ``(B, C, T, H, W)`` to the same shape with a residual connection;
the space/time factorisation is only a matter of which axis is folded into the batch:

* :class:`SpatialAttention`: each frame attends over its own ``H * W`` positions (Ho et al.);
* :class:`CrossAttention`: every position of every frame attends to a few condition tokens;
* :class:`TemporalAttention`: each position attends over the ``T`` frames, with a learned bias per
  head and relative frame offset (the relative positions of Ho et al.), so the block knows the
  order of the frames while the number of frames stays free at inference.

All of them use :func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

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


class TemporalAttention(nn.Module):
    """Self-attention over the frames at each position, with relative-position biases."""

    def __init__(self, channels: int, heads: int, head_dim: int, max_distance: int, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups, UNET_NORM_EPS)
        self.attn = MultiHeadAttention(channels, heads, head_dim)
        self.relative_bias = RelativePositionBias(heads, max_distance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        tokens = rearrange(self.norm(x), "b c t h w -> (b h w) t c")
        out = self.attn(tokens, bias=self.relative_bias(t)[None])  # (B*H*W, T, C)
        return x + rearrange(out, "(b h w) t c -> b c t h w", b=b, h=h, w=w)
