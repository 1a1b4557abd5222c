"""The one residual block of both stages (lvmm.nets.layers.ResBlock) against the two it replaced.

The ``Legacy*`` classes are frozen copies of the blocks as they were before the merge (stage one's
``body.*`` Sequential, the U-Net's own embedding-modulated block): the same weights must give the same
outputs, and state dicts with the old key names must load strictly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvmm.checkpoint import CheckpointError, check_state_dict, load_networks
from lvmm.nets.layers import GROUP_NORM_EPS, UNET_NORM_EPS, ResBlock, group_norm, norm, per_frame
from lvmm.nets.renderer import Renderer
from tests.helpers.stage2 import tiny_unet, unet_inputs


class LegacyStageOneResBlock(nn.Module):
    """Stage one's block before the merge (keys ``body.0/2/3/5``, ``skip``)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, normalise: bool = True):
        super().__init__()
        out_channels = out_channels or in_channels
        self.body = nn.Sequential(
            norm(in_channels, normalise),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            norm(out_channels, normalise),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        return self.skip(x) + self.body(x)


class LegacyUNetResBlock(nn.Module):
    """The U-Net's block before the merge (keys ``norm1``, ``conv1``, ``emb``, ``norm2``, ``conv2``, ``skip``)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups, UNET_NORM_EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels, groups, UNET_NORM_EPS)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x, emb):
        h = per_frame(self.conv1, F.silu(self.norm1(x)))
        scale, shift = rearrange(self.emb(F.silu(emb)), "b (two c) -> two b c 1 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = per_frame(self.conv2, self.dropout(F.silu(h)))
        return per_frame(self.skip, x) + h


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (GroupNorm affine too), so every path and parameter shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module.eval()


def legacy_names(state: dict, net: nn.Module) -> dict:
    """``state`` of ``net`` with every ResBlock's keys under the names of the old stage-one block."""
    old = {new: legacy for legacy, new in ResBlock.LEGACY_KEYS.items()}
    blocks = [f"{n}." for n, m in net.named_modules() if isinstance(m, ResBlock)]
    renamed = {}
    for key, value in state.items():
        prefix = max((b for b in blocks if key.startswith(b)), key=len, default=None)
        rest = key[len(prefix) :] if prefix else key
        head = next((n for n in old if rest.startswith(n)), None)
        renamed[key if head is None else prefix + old[head] + rest[len(head) :]] = value
    return renamed


@pytest.mark.parametrize("in_channels,out_channels,normalise", [(8, None, True), (6, 12, True), (8, 4, False)])
def test_old_stage_one_state_dict_loads_with_identical_outputs(in_channels, out_channels, normalise):
    old = randomise(LegacyStageOneResBlock(in_channels, out_channels, normalise))
    assert any(k.startswith("body.") for k in old.state_dict())
    new = ResBlock(in_channels, out_channels, normalise=normalise).eval()
    new.load_state_dict(old.state_dict(), strict=True)
    x = torch.randn(2, in_channels, 9, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(new(x), old(x))
    for key in new.state_dict():  # the new names, nothing under body.
        assert not key.startswith("body.")


def test_unet_block_gives_the_old_blocks_outputs():
    old = randomise(LegacyUNetResBlock(8, 12, emb_dim=10, dropout=0.0, groups=4))
    new = ResBlock(8, 12, emb_dim=10, groups=4, eps=UNET_NORM_EPS, zero_init=True).eval()
    assert list(new.state_dict()) == list(old.state_dict())  # same keys: stage-two checkpoints load as they are
    new.load_state_dict(old.state_dict(), strict=True)
    g = torch.Generator().manual_seed(2)
    x, emb = torch.randn(2, 8, 3, 6, 5, generator=g), torch.randn(2, 10, generator=g)  # (B, C, T, H, W), (B, E)
    with torch.no_grad():
        assert torch.equal(new(x, emb), old(x, emb))
    assert [m.num_groups for m in new.modules() if isinstance(m, nn.GroupNorm)] == [4, 4]


def test_video_input_normalises_over_the_clip_and_convolves_each_frame():
    x = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(3))  # (B, C, T, H, W)
    normed, plain = randomise(ResBlock(4, 4)), randomise(ResBlock(4, 4, normalise=False))
    with torch.no_grad():
        assert normed(x).shape == x.shape
        # GroupNorm over the whole clip: the first frame alone is normalised differently
        assert not torch.allclose(normed(x)[:, :, 0], normed(x[:, :, 0]), atol=1e-4)
        # the convolutions see one frame at a time: without norms, each frame is its own image
        for t in range(3):
            assert torch.allclose(plain(x)[:, :, t], plain(x[:, :, t]), atol=1e-6)


@pytest.mark.parametrize(
    "conv",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=1),
        dict(kernel_size=3, padding=2, dilation=2, groups=2),
        dict(kernel_size=3, padding=1, padding_mode="reflect"),  # not zero padding: frames folded into the batch
    ],
)
def test_per_frame_convolution_equals_each_frame_convolved_alone(conv):
    layer = nn.Conv2d(4, 6, **conv)
    x = torch.randn(2, 4, 3, 9, 8, generator=torch.Generator().manual_seed(4))  # (B, C, T, H, W)
    with torch.no_grad():
        out = per_frame(layer, x)
        frames = torch.stack([layer(x[:, :, t]) for t in range(3)], dim=2)
    assert out.shape == frames.shape and torch.allclose(out, frames, atol=1e-5)
    assert per_frame(nn.Identity(), x) is x


def test_zero_init_starts_at_the_skip_path():
    block = ResBlock(4, 8, zero_init=True).eval()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        assert torch.equal(block(x), block.skip(x))
    assert ResBlock(4, 8).conv2.weight.abs().sum() > 0


def test_group_norm_caps_and_eps():
    assert (group_norm(12).num_groups, group_norm(12).eps) == (6, GROUP_NORM_EPS)  # stage one: at most 8
    assert group_norm(64, 32, UNET_NORM_EPS).num_groups == 32 and group_norm(64, 32, UNET_NORM_EPS).eps == 1e-6
    assert group_norm(3, 32).num_groups == 3 and group_norm(7, 4).num_groups == 1


def test_old_stage_one_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(0)
    net = randomise(Renderer(width=4, num_res_blocks=2, kernel_size=3))
    old_state = legacy_names(net.state_dict(), net)
    assert sum(".body.0.weight" in k for k in old_state) >= 2 and old_state.keys() != net.state_dict().keys()
    path = tmp_path / "old_stage1.ckpt"
    torch.save(
        {"lvmm_networks": {"renderer": net.config}, "state_dict": {f"renderer.{k}": v for k, v in old_state.items()}},
        path,
    )
    loaded = load_networks(path)["renderer"]  # check_state_dict and load_state_dict, both strict
    g = torch.Generator().manual_seed(4)
    img, field = torch.rand(1, 3, 32, 32, generator=g), torch.randn(1, 3, 16, 16, generator=g) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded(img, field), net(img, field))


def test_renaming_does_not_hide_a_real_mismatch():
    net = Renderer(width=4, num_res_blocks=1, kernel_size=3)
    state = legacy_names(net.state_dict(), net)
    state.pop(next(k for k in state if k.endswith("body.5.weight")))
    with pytest.raises(CheckpointError, match="missing keys"):
        check_state_dict(net, state, "test")
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict(state, strict=True)


def test_unet_checkpoint_keys_are_unchanged():
    net = tiny_unet()
    assert all(".res.body." not in k for k in net.state_dict())
    assert any(k.endswith(".res.norm1.weight") for k in net.state_dict())
    assert any(k.endswith(".res.emb.weight") for k in net.state_dict())
    with torch.no_grad():
        assert torch.isfinite(net(**unet_inputs())).all()
