"""Attention blocks: the in-layout temporal attention of CPU inference equals the fused-kernel path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lvmm.nets import attention
from lvmm.nets.attention import TemporalAttention


def _block(channels: int, heads: int, head_dim: int) -> TemporalAttention:
    torch.manual_seed(0)
    block = TemporalAttention(channels, heads, head_dim, max_distance=32, groups=4)
    # Random output projection and biases: the zero initialisation would hide any difference.
    for p in block.parameters():
        nn.init.normal_(p, std=0.3)
    return block.eval()


def _fused(block: TemporalAttention, x: torch.Tensor, monkeypatch) -> torch.Tensor:
    with monkeypatch.context() as m:
        m.setattr(attention, "IN_LAYOUT_MAX", 0)
        return block(x)


@pytest.mark.parametrize("heads, head_dim, t", [(2, 8, 8), (4, 4, 5), (1, 16, 3)])
def test_in_layout_path_equals_the_fused_kernel(heads, head_dim, t, monkeypatch):
    assert t * head_dim <= attention.IN_LAYOUT_MAX  # these shapes take the in-layout path
    block = _block(16, heads, head_dim)
    x = torch.randn(3, 16, t, 5, 6)
    calls = []
    original = TemporalAttention._in_layout
    monkeypatch.setattr(TemporalAttention, "_in_layout", lambda self, *a: calls.append(1) or original(self, *a))
    with torch.no_grad():
        native = block(x)
        assert calls, "CPU inference within IN_LAYOUT_MAX should take the in-layout path"
        fused = _fused(block, x, monkeypatch)
    assert len(calls) == 1  # the patched limit sent the second call to the fused kernel
    assert native.shape == x.shape
    torch.testing.assert_close(native, fused, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(native, x, atol=1e-2)  # the branch is not the identity here


def test_training_and_long_clips_take_the_fused_kernel(monkeypatch):
    block = _block(16, 2, 8)
    calls = []
    monkeypatch.setattr(TemporalAttention, "_in_layout", lambda self, *a: calls.append(1))
    block(torch.randn(1, 16, 8, 3, 3))  # gradients enabled: training
    with torch.no_grad():
        block(torch.randn(1, 16, attention.IN_LAYOUT_MAX // 8 + 1, 3, 3))  # T x d beyond the limit
    assert not calls
