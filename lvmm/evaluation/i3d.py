"""Inception-I3D (Carreira & Zisserman, 2017), the feature network of the Fréchet Video Distance.

The module's ``state_dict`` has the key layout of piergiaj's ``pytorch-i3d``, the layout of the
Kinetics-400 port that VideoGPT distributes as ``i3d_pretrained_400.pt`` and that most PyTorch FVD
code loads (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.running_mean``, ...,
``logits.conv3d.bias``). Convolutions use TensorFlow's 'SAME' padding computed from the input size,
as the original TF model does, because the ported weights were trained with it.

FVD features (our protocol, as the TF-hub model of the FVD paper and VideoGPT's port): the 400
Kinetics logits before the softmax, averaged over time. :meth:`InceptionI3d.pooled_features` gives the
1024-d pooled layer instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lvmm.evaluation.weights import load_weights

NUM_CLASSES = 400  # Kinetics-400
FEATURE_DIM = 1024  # channels of Mixed_5c
INPUT_SIZE = 224  # the protocol's frame size
# BatchNorm epsilon of VideoGPT's port (the checkpoint documented for FVD was evaluated with it).
BN_EPS = 1e-5
# The reference head averages 2-frame windows over the full 7 x 7 map of a 224 x 224 input.
POOL_FRAMES = 2
WEIGHTS_SOURCE = (
    "Use the Kinetics-400 I3D in piergiaj/pytorch-i3d's key layout, e.g. VideoGPT's i3d_pretrained_400.pt "
    "(see docs/evaluation.md); nothing is downloaded at run time."
)

# Output channels of an Inception block's branches:
# (1x1, 3x3-reduce, 3x3, 3x3-reduce (2nd), 3x3 (2nd), pool-projection).
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}

__all__ = ["InceptionI3d", "load_i3d", "NUM_CLASSES", "FEATURE_DIM", "INPUT_SIZE"]


def _same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TensorFlow 'SAME' padding for ``F.pad`` (last dim first), extra pixel at the end."""
    pad = []
    for s, k, st in zip(reversed(size), reversed(kernel), reversed(stride)):
        total = max(k - st, 0) if s % st == 0 else max(k - s % st, 0)
        pad += [total // 2, total - total // 2]
    return pad


class Unit3D(nn.Module):
    """Conv3d, then BatchNorm3d and ReLU (optional), with input-dependent 'SAME' padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel=(1, 1, 1),
        stride=(1, 1, 1),
        batch_norm: bool = True,
        bias: bool = False,
        relu: bool = True,
    ):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        x = self.conv3d(F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pooling with TensorFlow 'SAME' padding.

    The padding is zeros, as in the reference port; every pooled input follows a ReLU, so zeros never
    exceed the true maximum.
    """

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        return F.max_pool3d(F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride)), self.kernel, self.stride)


class InceptionBlock3d(nn.Module):
    """The inflated Inception-v1 block: four branches concatenated along channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D over RGB clips ``(B, 3, T, H, W)`` in [-1, 1] (224 x 224 in the FVD protocol).

    Needs at least 9 frames for the reference head's 2-frame window; shorter clips pool a single
    time step. At other frame sizes than 224 (used only to make tests fast) the head averages the
    whole final feature map, which at 224 x 224 is exactly the reference 7 x 7 pooling.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock3d(*_MIXED["Mixed_3b"])
        self.Mixed_3c = InceptionBlock3d(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionBlock3d(*_MIXED["Mixed_4b"])
        self.Mixed_4c = InceptionBlock3d(*_MIXED["Mixed_4c"])
        self.Mixed_4d = InceptionBlock3d(*_MIXED["Mixed_4d"])
        self.Mixed_4e = InceptionBlock3d(*_MIXED["Mixed_4e"])
        self.Mixed_4f = InceptionBlock3d(*_MIXED["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock3d(*_MIXED["Mixed_5b"])
        self.Mixed_5c = InceptionBlock3d(*_MIXED["Mixed_5c"])
        # The classifier is a biased 1x1x1 convolution (no BN, no ReLU), as in the TF model.
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, bias=True, relu=False)
        self._backbone = [name for name, _ in self.named_children() if name != "logits"]  # in order

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> the 1024-d pooled features ``(B, 1024, T', 1, 1)`` (2-frame windows)."""
        for name in self._backbone:
            x = getattr(self, name)(x)  # ends at (B, 1024, ceil(T / 8), ceil(H / 32), ceil(W / 32))
        window = (min(POOL_FRAMES, x.shape[2]), x.shape[3], x.shape[4])
        return F.avg_pool3d(x, window, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, num_classes)`` logits before softmax, averaged over time."""
        return self.logits(self.pooled_features(x)).flatten(2).mean(2)


def load_i3d(path: str | Path, sha256: str | None = None, map_location: str | torch.device = "cpu") -> InceptionI3d:
    """Build :class:`InceptionI3d` and load a local Kinetics-400 checkpoint (strict, safe loading).

    Raises :class:`lvmm.checkpoint.CheckpointError` naming the file and the first mismatched keys.
    """
    model = load_weights(InceptionI3d(), path, what="I3D (FVD)", source=WEIGHTS_SOURCE, sha256=sha256)
    return model.to(map_location)
