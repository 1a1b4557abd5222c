"""LPIPS with the calibration weights torchmetrics ships: the file, the default path, and parity with
torchmetrics' own LPIPS on the same (seeded, random) AlexNet backbone."""

from __future__ import annotations

import pytest
import torch

from lvmm.checkpoint import CheckpointError, file_sha256, read_state_dict
from lvmm.evaluation.lpips import (
    ALEX_SLICE_ENDS,
    LPIPS,
    TORCHMETRICS_LINEAR_SHA256,
    load_lpips,
    torchmetrics_linear_path,
)


def _seeded_backbone(path) -> dict[str, torch.Tensor]:
    """A random AlexNet ``features`` state dict at a useful activation scale, written to ``path``."""
    g = torch.Generator().manual_seed(7)
    state = {}
    for name, t in LPIPS().features.state_dict().items():
        fan_in = t[0].numel() if t.ndim > 1 else 1
        state[f"features.{name}"] = torch.randn(t.shape, generator=g) * ((2.0 / fan_in) ** 0.5 if t.ndim > 1 else 0.1)
    torch.save(state, path)
    return state


def test_torchmetrics_calibration_file_is_the_published_layout():
    path = torchmetrics_linear_path()
    assert file_sha256(path) == TORCHMETRICS_LINEAR_SHA256
    state = read_state_dict(path, "LPIPS calibration", "")
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: tuple(v.shape) for k, v in LPIPS().calibration().state_dict().items()
    }
    # Learned channel weights: non-negative (a distance) and not all zero in any layer.
    assert all((v >= 0).all() and (v > 0).any() for v in state.values())


def test_default_calibration_matches_torchmetrics_lpips(tmp_path):
    from torchmetrics.functional.image.lpips import _LPIPS

    backbone = _seeded_backbone(tmp_path / "alexnet.pth")
    ours = load_lpips(tmp_path / "alexnet.pth")  # calibration from torchmetrics' package
    calibration = read_state_dict(torchmetrics_linear_path(), "LPIPS calibration", "")
    for key, value in ours.calibration().state_dict().items():
        assert torch.equal(value, calibration[key])
    # torchmetrics' LPIPS (its shipped calibration, a random backbone: nothing downloaded), given our backbone.
    reference = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    starts = (0,) + ALEX_SLICE_ENDS[:-1]
    sliced = {}
    for key, value in backbone.items():
        index, param = key[len("features.") :].split(".")
        s = next(i for i, (a, b) in enumerate(zip(starts, ALEX_SLICE_ENDS)) if a <= int(index) < b)
        sliced[f"slice{s + 1}.{index}.{param}"] = value
    reference.net.load_state_dict(sliced, strict=True)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 64, 64, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.inference_mode():
        got = ours(x, y)
        want = reference(x, y, normalize=True).flatten()
    assert got.min() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_local_calibration_path_still_used_and_checked(tmp_path):
    _seeded_backbone(tmp_path / "alexnet.pth")
    local = {k: 2 * v for k, v in read_state_dict(torchmetrics_linear_path(), "LPIPS calibration", "").items()}
    torch.save(local, tmp_path / "alex.pth")
    model = load_lpips(tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    assert torch.equal(model.lin0.model[1].weight, local["lin0.model.1.weight"])
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_lpips(tmp_path / "alexnet.pth", tmp_path / "alex.pth", linear_sha256="0" * 64)
    with pytest.raises(CheckpointError, match="alexnet-owt-7be5be79.pth"):
        load_lpips(tmp_path / "missing.pth")
