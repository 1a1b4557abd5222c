"""Image preprocessing of ImageBind's ``load_and_transform_vision_data``, reproduced bit-exactly.

Resize the shorter side to 224 with Pillow's antialiased bicubic filter (the longer side is
truncated to an int), centre-crop 224 x 224 (offsets rounded half to even, as Python's ``round``),
scale to [0, 1] and normalise with CLIP's mean and std. Doing the resize in Pillow rather than in
torch is what makes the result bit-identical to the official pipeline.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
UINT8_MAX = 255.0

ImageInput = Union[str, os.PathLike, np.ndarray, "PIL.Image.Image"]  # noqa: F821


def load_image(item: ImageInput):
    """An RGB ``PIL.Image`` from a path, a ``PIL.Image`` or a uint8 array (HxW, HxWx3 or HxWx4)."""
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        from lvmm.media import MediaError

        try:
            with Image.open(item) as img:
                return img.convert("RGB")
        except Exception as e:
            raise MediaError(f"{item}: cannot read image ({type(e).__name__}: {e})") from e
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, torch.Tensor):
        item = item.numpy()
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8 HxWx3, got dtype {item.dtype}")
        if item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (3, 4)):
            return Image.fromarray(np.ascontiguousarray(item)).convert("RGB")
        raise ValueError(f"image arrays must be HxW, HxWx3 or HxWx4, got shape {item.shape}")
    raise TypeError(f"expected an image path, PIL image or uint8 array, got {type(item).__name__}")


def resize_shorter_side(img, size: int = IMAGE_SIZE):
    """Shorter side to ``size``; the longer side becomes ``int(size * long / short)``."""
    from PIL import Image

    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return img if new == (w, h) else img.resize(new, Image.BICUBIC)


def center_crop(arr: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Centre crop of an ``(H, W, C)`` array whose sides are both at least ``size``."""
    h, w = arr.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return arr[top : top + size, left : left + size]


def preprocess_image(item: ImageInput, size: int = IMAGE_SIZE) -> torch.Tensor:
    """One image as the vision model's input: float32 ``(3, size, size)``."""
    arr = center_crop(np.asarray(resize_shorter_side(load_image(item), size)), size)  # (S, S, 3) uint8
    x = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float().div(UINT8_MAX)  # (3, S, S)
    # Same float32 operations, in the same order, as torchvision's ToTensor + Normalize.
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


def preprocess_images(items, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A batch ``(B, 3, size, size)`` from paths, PIL images or uint8 arrays of any size."""
    return torch.stack([preprocess_image(item, size) for item in items])
