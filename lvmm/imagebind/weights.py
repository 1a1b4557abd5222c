"""Reading official-format ImageBind weights and naming them by content.

The official ``imagebind_huge.pth`` (CC BY-NC-SA 4.0, non-commercial use only) is never downloaded
by this code: the user fetches it from the links in the facebookresearch/ImageBind README and
passes its local path. ``.safetensors`` files with the same keys are accepted as well.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from lvmm.checkpoint import CheckpointError

from .configs import ImageBindConfig

WEIGHTS_ID_BYTES = 8  # 16 hex digits: short enough for file names, ample against collisions
# Some re-saved checkpoints nest the state dict under one of these keys.
_WRAPPER_KEYS = ("model", "state_dict", "module")
HOW_TO_GET = (
    "download imagebind_huge.pth yourself from the links in the official facebookresearch/ImageBind "
    "README (the weights are licensed CC BY-NC-SA 4.0, non-commercial use only) and pass its local path"
)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{key: tensor}`` state dict from a ``.pth``/``.pt`` or ``.safetensors`` file.

    ``.pth`` files are read with ``torch.load(map_location="cpu", weights_only=True)`` (memory-mapped
    where the file format allows, so the 4.8 GB huge checkpoint is not copied twice).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ImageBind weights not found; {HOW_TO_GET}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read ImageBind weights ({type(e).__name__}: {e})") from e
    if isinstance(state, Mapping) and len(state) == 1 and next(iter(state)) in _WRAPPER_KEYS:
        state = next(iter(state.values()))
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat state dict of tensors (official ImageBind format)")
    return dict(state)


def state_dict_id(state: Mapping[str, torch.Tensor]) -> str:
    """A short content hash of a state dict (names, dtypes, shapes and values).

    The same weights give the same id whichever container (``.pth``/``.safetensors``) held them.
    """
    h = hashlib.blake2b(digest_size=WEIGHTS_ID_BYTES)
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def random_weights_id(config: ImageBindConfig, seed: int) -> str:
    """Id of :meth:`ImageBind.random` weights; torch's version is part of it since its RNG may change."""
    blob = json.dumps(
        {"config": config.to_dict(), "seed": seed, "torch": torch.__version__.split("+")[0]}, sort_keys=True
    )
    return "random-" + hashlib.blake2b(blob.encode(), digest_size=WEIGHTS_ID_BYTES).hexdigest()
