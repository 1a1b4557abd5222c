"""Seeded weight files in the real layouts of the metric networks, and smooth test videos."""

from __future__ import annotations

import numpy as np
import torch

from lvmm.evaluation.i3d import InceptionI3d
from lvmm.evaluation.inception import FIDInceptionV3
from lvmm.evaluation.lpips import LPIPS

TEST_INCEPTION_SIZE = 75  # the smallest input Inception-v3 accepts


def seeded_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights in ``module``'s layout that keep activations at a useful scale (He init, BN near identity)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = t.clone()
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(t.shape, generator=g)
        elif name.endswith("running_mean") or name.endswith("bias"):
            state[name] = 0.1 * torch.randn(t.shape, generator=g)
        elif t.ndim >= 2:  # convolution / linear weights
            state[name] = torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5
        else:  # BatchNorm scale
            state[name] = 1 + 0.1 * torch.randn(t.shape, generator=g)
    return state


def make_weight_files(folder) -> dict[str, str]:
    """Write seeded weight files for every metric network under ``folder``; returns their paths."""
    paths = {
        k: str(folder / name)
        for k, name in [
            ("i3d", "i3d_pretrained_400.pt"),
            ("inception", "fid_inception.pth"),
            ("lpips_backbone", "alexnet.pth"),
            ("lpips_linear", "alex.pth"),
        ]
    }
    i3d = seeded_state(InceptionI3d(), 0)
    # Like the ported checkpoints written before PyTorch 0.4.1: no BatchNorm counters.
    torch.save({k: v for k, v in i3d.items() if not k.endswith("num_batches_tracked")}, paths["i3d"])
    torch.save(seeded_state(FIDInceptionV3(), 1), paths["inception"])
    lpips = LPIPS()
    backbone = {f"features.{k}": v for k, v in seeded_state(lpips.features, 2).items()}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # the classifier is present in the real file and ignored
    torch.save(backbone, paths["lpips_backbone"])
    # The published calibration weights are non-negative (a distance must not go below zero).
    torch.save({k: v.abs() for k, v in seeded_state(lpips.calibration(), 3).items()}, paths["lpips_linear"])
    return paths


def smooth_videos(n: int, frames: int, size: int, seed: int) -> np.ndarray:
    """uint8 videos ``(n, T, size, size, 3)``: moving coloured gradients, distinct per video."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None]
    y, x = np.mgrid[0:size, 0:size] / size
    videos = []
    for _ in range(n):
        a, b, c, speed = rng.uniform(0, 2 * np.pi, 3).tolist() + [rng.uniform(0.05, 0.3)]
        rgb = [
            np.sin(2 * np.pi * (x + speed * t) + a),
            np.cos(2 * np.pi * (y - speed * t) + b),
            np.sin(2 * np.pi * (x + y) + c + t * speed),
        ]
        videos.append((np.stack(rgb, -1) * 0.5 + 0.5) * 255)
    return np.asarray(videos).round().clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------- Fréchet distance
