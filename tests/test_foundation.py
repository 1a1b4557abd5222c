"""The flow convention, media I/O, checkpoints, and the built-in procedural data."""

import numpy as np
import pytest
import torch
from torch import nn

from lvmm.checkpoint import CheckpointError, Configurable, build, load_networks, save_networks
from lvmm.datasets.procedural import FAMILIES, VAL_PHOTOS, ProceduralClips, ProceduralPairs, make_clip
from lvmm.media import MediaError, read_image, read_video, write_image, write_video
from lvmm.warp import base_grid, end_point_error, normalised_to_pixels, pixels_to_normalised, warp

# --- warping -------------------------------------------------------------------------------------


def test_zero_field_is_identity():
    img = torch.rand(2, 3, 32, 48)
    assert torch.allclose(warp(img, torch.zeros(2, 2, 8, 12)), img, atol=1e-6)


def test_integer_shift_moves_pixels():
    img = torch.rand(1, 3, 16, 16)
    d = pixels_to_normalised(torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 16, 16), 16, 16)
    out = warp(img, d)
    # backward warp: out(x, y) = img(x + 2, y - 1)
    assert torch.allclose(out[..., 1:, :14], img[..., :-1, 2:], atol=1e-5)


def test_pixel_conversions_round_trip():
    d = torch.randn(3, 2, 8, 10)
    assert torch.allclose(pixels_to_normalised(normalised_to_pixels(d, 8, 10), 8, 10), d, atol=1e-6)
    assert base_grid(4, 6).shape == (1, 2, 4, 6)
    one_px = pixels_to_normalised(torch.ones(1, 2, 8, 10), 8, 10)
    assert end_point_error(one_px, torch.zeros(1, 2, 8, 10)).item() == pytest.approx(2**0.5, rel=1e-5)


# --- procedural data -----------------------------------------------------------------------------


@pytest.mark.parametrize("size,frames", [((64, 64), 9), ((32, 96), 5)])
def test_procedural_shapes(size, frames):
    clip = make_clip(3, 1, height=size[0], width=size[1], num_frames=frames)
    assert clip.frames.shape == (frames, *size, 3) and clip.frames.dtype == np.uint8
    assert clip.flows.shape == (frames, 2, *size) and clip.flows.dtype == np.float32
    assert np.all(clip.flows[0] == 0)
    assert clip.family in FAMILIES and clip.label == FAMILIES.index(clip.family) and clip.caption


def test_procedural_is_deterministic_per_seed():
    a, b, c = make_clip(5, 2), make_clip(5, 2), make_clip(6, 2)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.flows, b.flows) and a.caption == b.caption
    assert not np.array_equal(a.frames, c.frames)


def test_procedural_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiples of 32"):
        make_clip(0, 0, height=50, width=64)


def test_validation_split_uses_held_out_photographs():
    assert {make_clip(0, i, split="val").photo for i in range(8)} <= set(VAL_PHOTOS)
    assert not {make_clip(0, i).photo for i in range(16)} & set(VAL_PHOTOS)


def test_every_family_renders_and_moves():
    for fam in FAMILIES:
        clip = make_clip(1, 0, family=fam, num_frames=6)
        moving = np.abs(clip.flows).max() > 0
        assert moving == (fam != "still"), fam


def test_warping_frame_zero_with_the_stored_field_reproduces_frame_k():
    """Error of warp(I_0, d_k) against I_k is well below that of a one-pixel shift of I_k."""
    ratios = []
    for i in range(8):
        clip = make_clip(11, i, height=64, width=64, num_frames=9, family=FAMILIES[1 + i % 5])
        frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255
        flows = torch.from_numpy(clip.flows)
        inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # borders are extrapolated
        rec = warp(frames[:1].expand(9, -1, -1, -1), flows)
        shift = pixels_to_normalised(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(9, 2, 64, 64), 64, 64)
        err = (rec - frames)[inner].abs().mean()
        one_px = (warp(frames, shift) - frames)[inner].abs().mean()
        ratios.append((err / one_px).item())
    assert max(ratios) < 0.5, ratios


def test_datasets_yield_reader_format():
    clip = ProceduralClips(4, num_frames=5)[1]
    assert clip["frames"].shape == (5, 3, 64, 64) and clip["flows"].shape == (5, 2, 64, 64)
    pair = ProceduralPairs(4, max_interval=4)[2]
    assert pair["img0"].shape == pair["imgk"].shape == (3, 64, 64) and 1 <= pair["k"] <= 4
    assert 0 <= pair["img0"].min() and pair["img0"].max() <= 1


# --- media ---------------------------------------------------------------------------------------


def test_mp4_round_trip_within_codec_tolerance(tmp_path):
    frames = make_clip(0, 3, num_frames=8).frames
    path = write_video(tmp_path / "clip.mp4", frames, fps=8)
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == pytest.approx(8)
    assert np.abs(back.astype(float) - frames).mean() < 6


def test_gif_and_png_outputs(tmp_path):
    frames = make_clip(0, 4, num_frames=4).frames
    gif, _ = read_video(write_video(tmp_path / "a.gif", frames, fps=4))
    assert gif.shape == frames.shape
    folder = write_video(tmp_path / "frames", frames, fps=4)
    assert len(list(folder.glob("*.png"))) == 4
    write_image(tmp_path / "x.png", frames[0])
    assert np.array_equal(read_image(tmp_path / "x.png"), frames[0])


def test_bad_media_names_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(MediaError, match="bad.mp4"):
        read_video(bad)
    with pytest.raises(MediaError, match="bad.mp4"):
        read_image(bad)


# --- checkpoints ---------------------------------------------------------------------------------


class TinyNet(Configurable, nn.Module):
    def __init__(self, width: int = 4, depth: int = 1):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])

    def forward(self, x):
        return self.layers(x)


def test_configurable_records_arguments():
    net = TinyNet(6, depth=2)
    assert net.config["init_args"] == {"width": 6, "depth": 2}
    # build() refuses classes outside the package (tests/test_drills_checkpoint.py has the hostile cases)
    with pytest.raises(CheckpointError, match="only LVMM network classes"):
        build({"class_path": "os.system", "init_args": {}})


def test_save_and_load_networks(tmp_path, monkeypatch):
    import sys

    # Register the test network under an lvmm-like module path so build() may import it.
    monkeypatch.setitem(sys.modules, "lvmm._testnets", sys.modules[__name__])
    monkeypatch.setattr(TinyNet, "__module__", "lvmm._testnets")
    net = TinyNet(5, depth=2)
    path = save_networks(tmp_path / "nets.safetensors", {"net": net}, extra={"note": "x"})
    loaded = load_networks(path)["net"]
    x = torch.randn(3, 5)
    assert torch.equal(loaded(x), net(x))
    # a mismatched checkpoint names the keys and shapes
    other = TinyNet(7)
    from lvmm.checkpoint import check_state_dict

    with pytest.raises(CheckpointError, match=r"shape mismatches.*layers.0.weight"):
        check_state_dict(other, net.state_dict(), "x")
    with pytest.raises(CheckpointError, match="not found"):
        load_networks(tmp_path / "missing.safetensors")
