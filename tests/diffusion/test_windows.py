"""Joint denoising of long sequences in overlapping windows (lvmm.diffusion.windows)."""

import pytest
import torch

from lvmm.diffusion.windows import EDGE_WEIGHT, WindowedDenoiser, window_starts, window_weights


def test_window_starts_cover_the_sequence_and_end_at_its_last_frame():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]  # the last window ends at frame 10, closer to the one before
    assert window_starts(4, 4, 2) == [0] and window_starts(3, 4, 2) == [0]
    assert window_starts(9, 4, 4) == [0, 4, 5]
    for bad in (0, 5):
        with pytest.raises(ValueError, match="stride"):
            window_starts(10, 4, bad)
    e = EDGE_WEIGHT
    assert torch.allclose(window_weights(5), torch.tensor([e, 1 + e, 2 + e, 1 + e, e]))
    assert torch.allclose(window_weights(4), torch.tensor([e, 1 + e, 1 + e, e]))


def _frame_local(x, t, z0):
    """A network that acts on each frame alone: any window gives every frame the same output."""
    return 2 * x + z0[:, :, None] + t.view(-1, 1, 1, 1, 1)


def test_a_frame_local_network_is_unchanged_by_the_windows():
    x, z0 = torch.randn(3, 2, 11, 4, 5), torch.randn(3, 2, 4, 5)
    t = torch.tensor([1.0, 2.0, 3.0])
    for stride, max_batch in [(2, 16), (3, 1), (1, 2)]:
        out = WindowedDenoiser(_frame_local, 4, stride, max_batch)(x, t, z0=z0)
        assert torch.allclose(out, _frame_local(x, t, z0), atol=1e-6)


def test_overlapping_frames_are_the_weighted_mean_of_their_windows():
    def position(x, t, **_):  # each frame's output is its index inside its window
        return torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1).expand_as(x)

    out = WindowedDenoiser(position, 4, 2)(torch.zeros(1, 1, 8, 1, 1), torch.zeros(1))[0, 0, :, 0, 0]
    # windows at 0, 2, 4; weights e, 1 + e, 1 + e, e: frame 0 only in the first (index 0), frame 2 is index 2
    # (weight 1 + e) of the first and index 0 (weight e) of the second, frame 7 index 3 of the last
    e = EDGE_WEIGHT
    assert out[0] == 0 and out[1] == 1 and out[7] == 3
    assert out[2] == pytest.approx((1 + e) * 2 / (1 + 2 * e)) and out[3] == pytest.approx((3 * e + 1 + e) / (1 + 2 * e))
    short = torch.randn(2, 1, 3, 2, 2)
    assert torch.equal(WindowedDenoiser(position, 4, 2)(short, torch.zeros(2)), position(short, None))


def test_a_sample_does_not_depend_on_its_batch_or_the_window_batch():
    net = torch.nn.Conv3d(2, 2, 3, padding=1)  # mixes neighbouring frames: windows matter
    model = lambda x, t, z0: net(x) + z0[:, :, None]
    x, z0, t = torch.randn(2, 2, 9, 4, 4), torch.randn(2, 2, 4, 4), torch.zeros(2)
    with torch.no_grad():
        both = WindowedDenoiser(model, 4, 2, max_batch=16)(x, t, z0=z0)
        one = WindowedDenoiser(model, 4, 2, max_batch=1)(x[1:], t[1:], z0=z0[1:])
    assert torch.allclose(both[1:], one, atol=1e-5)
    assert not torch.allclose(both, net(x) + z0[:, :, None], atol=1e-3)  # not just the network on all frames
