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

from lvmm.checkpoint import read_state_dict

from .configs import ImageBindConfig

WEIGHTS_ID_BYTES = 8  # 16 hex digits: short enough for file names, ample against collisions
# Some re-saved checkpoints nest the state dict under one of these keys.
HOW_TO_GET = (
    "download imagebind_huge.pth yourself from the links in the official facebookresearch/ImageBind "
    "README (the weights are licensed CC BY-NC-SA 4.0, non-commercial use only) and pass its local path"
)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the flat ``{key: tensor}`` state dict of an official-format ``.pth``/``.pt`` or ``.safetensors`` file
    (:func:`lvmm.checkpoint.read_state_dict`, memory-mapped, so the 4.8 GB huge checkpoint is not copied twice)."""
    return read_state_dict(path, "ImageBind", HOW_TO_GET, mmap=True)


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
