"""Loading the pretrained weights of the metric networks from local files, with clear errors.

Nothing here downloads. A weights file is checked in three ways before a network uses it:

1. it exists (otherwise the error names the file and where users obtain it);
2. its sha256 matches, when one is known: passed explicitly, or embedded in the file name after the
   convention of ``torch.hub`` (``name-<hex prefix of the sha256>.ext``, as in pytorch-fid's
   ``pt_inception-2015-12-05-6726825d.pth`` or torchvision's ``alexnet-owt-7be5be79.pth``);
3. its keys and shapes match the module exactly (:func:`lvmm.checkpoint.check_state_dict` names the
   first missing, unexpected or mis-shaped keys), after which it is loaded with ``strict=True``.

Files are read with ``torch.load(..., weights_only=True)`` or as ``.safetensors``; never unpickled.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from lvmm.checkpoint import CheckpointError, check_state_dict, file_sha256, read_state_dict

# torch.hub's convention: the file name ends in "-<at least 8 hex digits of its sha256>.<ext>".
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")

__all__ = ["CheckpointError", "file_sha256", "expected_sha256", "read_state_dict", "load_weights"]


def expected_sha256(path: str | Path, sha256: str | None = None) -> str | None:
    """The sha256 (or its prefix) a file must have: ``sha256`` if given, else the one in its name."""
    if sha256:
        return sha256.lower()
    match = _HASH_IN_NAME.search(Path(path).name)
    return match.group(1) if match else None


def _fill_batchnorm_counters(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Checkpoints written before PyTorch 0.4.1 lack BatchNorm's `num_batches_tracked`; it only
    # matters for training with momentum=None, so a missing counter is filled, never reported.
    own = module.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    return state


def load_weights(
    module: nn.Module,
    path: str | Path,
    *,
    what: str,
    source: str,
    sha256: str | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Check and load a local weights file into ``module`` (strictly); returns the module in eval mode.

    Args:
        module: the network; its ``state_dict`` keys are the layout the file must have.
        path: the weights file (``.pt``/``.pth``/``.safetensors``).
        what: the network's name for error messages (e.g. ``"I3D (FVD)"``).
        source: a sentence telling users where to obtain the file.
        sha256: the expected sha256 (or a prefix of it); by default taken from the file name when it
            follows ``torch.hub``'s ``name-<hash>.ext`` convention, else not checked.
        state: an already-read (and possibly filtered) state dict of ``path``; read when omitted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} weights not found. {source}")
    expected = expected_sha256(path, sha256)
    if expected is not None:
        actual = file_sha256(path)
        if not actual.startswith(expected):
            raise CheckpointError(
                f"{path}: sha256 mismatch for the {what} weights: expected {expected}..., got {actual}. "
                f"The file is corrupt or not the published one. {source}"
            )
    if state is None:
        state = read_state_dict(path, what, source)
    state = _fill_batchnorm_counters(module, dict(state))
    check_state_dict(module, state, f"{path} ({what})")
    module.load_state_dict(state, strict=True)
    return module.eval()
