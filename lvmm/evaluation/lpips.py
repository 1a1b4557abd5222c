"""LPIPS (Zhang et al., 2018), version 0.1 with the AlexNet backbone.

Two files make the published metric:

- the backbone: torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``; only its ``features.*``
  tensors are used, the classifier is ignored), from a local path the user gives;
- the calibration: LPIPS v0.1's ``alex.pth``, five 1x1 convolutions (``lin0.model.1.weight`` ...
  ``lin4.model.1.weight``) that weight the channels of each layer. torchmetrics, a dependency, ships
  this 6 kB file inside its package (``torchmetrics/functional/image/lpips_models/alex.pth``,
  Apache-2.0 package; the weights come from the LPIPS authors' BSD-2-Clause release), so it is used
  from there by default (checked by sha256); a local copy can still be passed instead.

Distance: both images are scaled to [-1, 1], then shifted and scaled per channel as LPIPS does, the
five ReLU outputs of AlexNet are unit-normalised along channels, their squared differences weighted by
the calibration layers, averaged over space and summed over layers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lvmm.checkpoint import CheckpointError, read_state_dict
from lvmm.evaluation.weights import load_weights

# The ends of the five AlexNet slices LPIPS compares (after each ReLU of `features`).
ALEX_SLICE_ENDS = (2, 5, 8, 10, 12)
ALEX_CHANNELS = (64, 192, 384, 256, 256)
# LPIPS's input normalisation for [-1, 1] images (its ScalingLayer).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # guards the channel normalisation of all-zero features
BACKBONE_SOURCE = (
    "Use torchvision's AlexNet ImageNet weights, alexnet-owt-7be5be79.pth (see docs/evaluation.md); "
    "nothing is downloaded at run time."
)
LINEAR_SOURCE = (
    "Omit the path to use the copy torchmetrics ships, or pass LPIPS v0.1's alex.pth (see docs/evaluation.md); "
    "nothing is downloaded at run time."
)
# The calibration file inside the torchmetrics package, and its sha256 (torchmetrics 1.9.0).
TORCHMETRICS_LINEAR_FILE = ("functional", "image", "lpips_models", "alex.pth")
TORCHMETRICS_LINEAR_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"

__all__ = ["LPIPS", "load_lpips", "torchmetrics_linear_path"]


class _ChannelWeights(nn.Module):
    """A 1x1 convolution to one channel; ``model.1`` is the published key (``model.0`` was a dropout)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Learned perceptual distance between image batches ``(B, 3, H, W)`` in [0, 1]; returns ``(B,)``."""

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.alexnet(weights=None).features
        for i, channels in enumerate(ALEX_CHANNELS):
            self.add_module(f"lin{i}", _ChannelWeights(channels))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def calibration(self) -> nn.ModuleDict:
        """The five calibration layers, keyed as in the published ``alex.pth``."""
        return nn.ModuleDict({f"lin{i}": getattr(self, f"lin{i}") for i in range(len(ALEX_CHANNELS))})

    def _layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((2 * x - 1) - self.shift) / self.scale
        outputs, start = [], 0
        for end in ALEX_SLICE_ENDS:
            for layer in self.features[start:end]:
                # The in-place ReLUs of torchvision's AlexNet would overwrite the stored outputs.
                x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            outputs.append(x)
            start = end
        return outputs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` x2 in [0, 1] -> ``(B,)`` distances (0 for identical images)."""
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        total = x.new_zeros(x.shape[0])
        for i, (fx, fy) in enumerate(zip(self._layers(x), self._layers(y))):
            fx = fx / (fx.norm(dim=1, keepdim=True) + NORM_EPS)  # (B, C, h, w)
            fy = fy / (fy.norm(dim=1, keepdim=True) + NORM_EPS)
            total = total + getattr(self, f"lin{i}")((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


def torchmetrics_linear_path() -> Path:
    """The LPIPS v0.1 AlexNet calibration file shipped inside the installed torchmetrics (not imported)."""
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"torchmetrics is not installed, so its LPIPS calibration file is unavailable. {LINEAR_SOURCE}"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*TORCHMETRICS_LINEAR_FILE)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: the installed torchmetrics does not ship the LPIPS calibration file. {LINEAR_SOURCE}"
        )
    return path


def load_lpips(
    backbone_path: str | Path,
    linear_path: str | Path | None = None,
    backbone_sha256: str | None = None,
    linear_sha256: str | None = None,
    map_location: str | torch.device = "cpu",
) -> LPIPS:
    """Build :class:`LPIPS` from the AlexNet weights file and the LPIPS calibration file (strict, safe).

    The backbone file may be the whole torchvision AlexNet state dict (``features.*`` and
    ``classifier.*``) or only its ``features.*``; the classifier is not used. Without
    ``linear_path`` the calibration is the copy torchmetrics ships, checked against its known sha256.
    """
    if linear_path is None:
        linear_path = torchmetrics_linear_path()
        linear_sha256 = linear_sha256 or TORCHMETRICS_LINEAR_SHA256
    model = LPIPS()
    backbone = read_state_dict(backbone_path, "AlexNet (LPIPS backbone)", BACKBONE_SOURCE)
    prefix = "features."
    features = {k[len(prefix) :]: v for k, v in backbone.items() if k.startswith(prefix)}
    if not features:
        raise CheckpointError(
            f"{backbone_path}: no 'features.*' tensors; expected torchvision's AlexNet state dict. {BACKBONE_SOURCE}"
        )
    load_weights(
        model.features,
        backbone_path,
        what="AlexNet (LPIPS backbone)",
        source=BACKBONE_SOURCE,
        sha256=backbone_sha256,
        state=features,
    )
    load_weights(model.calibration(), linear_path, what="LPIPS calibration", source=LINEAR_SOURCE, sha256=linear_sha256)
    return model.eval().to(map_location)
