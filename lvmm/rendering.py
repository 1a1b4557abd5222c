"""Rendering generated motion onto the photo at its own resolution.

The networks run at a small working size; the photo need not. Each decoded field p = (dx, dy, w) is
upsampled smoothly (bicubic) to the photo's resolution and applied to the photo itself:

    frame = w * warp(photo, d) + (1 - w) * up(R_fill)

where ``R_fill`` is the renderer's own output at the working size (:meth:`Renderer.fill`), upsampled
and used only where w says warping cannot do the job. Displacements are in normalised units, so a
field keeps its meaning at any resolution. The photo is warped with bicubic sampling (sub-pixel
shifts of a bilinear warp blur fine detail visibly at 512 px and above).

Memory stays bounded at any size: R runs ``chunk_size`` frames at a time at the working size, the
full-resolution composite runs on at most :data:`FULL_RES_PIXEL_BUDGET` pixels at once, and finished
frames are stored as uint8; no full-resolution float32 clip is ever held.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lvmm.media import to_float, to_uint8
from lvmm.warp import base_grid, warp

FULL_RES_PIXEL_BUDGET = 1 << 23
"""Pixels of full-resolution float work per pass (8.4 M: about 100 MB for each 3-channel float32 tensor)."""


def to_photo(
    x: torch.Tensor, size: tuple[int, int], valid: tuple[float, float] = (1.0, 1.0), fields: bool = False
) -> torch.Tensor:
    """Resample working-size maps (N, C, h, w) onto the photo's pixels (N, C, H, W), bicubic.

    ``valid`` = (fh, fw): the photo covers the top-left fraction fh x fw of the working frame (1, 1
    when it was resized to it; less when it was padded). With ``fields``, channels 0-1 are
    displacements in the working frame's normalised units and are converted to the photo's, and
    channel 2 (w) is clamped to [0, 1].
    """
    fh, fw = valid
    n = x.shape[0]
    grid = base_grid(*size, device=x.device, dtype=x.dtype)  # (1, 2, H, W), photo coordinates
    scale = grid.new_tensor([fw, fh]).view(1, 2, 1, 1)
    grid = ((grid + 1) * scale - 1).permute(0, 2, 3, 1).expand(n, -1, -1, -1)  # working-frame coordinates
    out = F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)
    if fields:
        d = out[:, :2] / scale  # normalised units of the photo
        out = torch.cat([d, out[:, 2:3].clamp(0, 1), out[:, 3:]], 1)
    return out


def render_photo(
    renderer,
    photo: np.ndarray,
    work: torch.Tensor,
    fields: torch.Tensor,
    chunk_size: int = 8,
    valid: tuple[float, float] = (1.0, 1.0),
    mask: torch.Tensor | None = None,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 at the photo's resolution from fields (T, 3, h, w) of the working image.

    Args:
        renderer: the stage-one :class:`lvmm.nets.renderer.Renderer`.
        photo: (H, W, 3) uint8, the image to move.
        work: (1, 3, h', w') float, the working image the fields were generated for (R's input).
        fields: (T, 3, h, w), (dx, dy, w) in the working frame's normalised units.
        chunk_size: frames R renders at once (memory).
        valid: the fraction of the working frame the photo covers (see :func:`to_photo`).
        mask: (H, W) in [0, 1] at the photo's size, the region brush: the upsampled field is multiplied
            by it (displacement x m, w -> w m + 1 - m), so where it is 0 the frames are the photo's pixels.

    The identity field (0, 0, 1) reproduces the photo exactly (uint8).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    height, width = photo.shape[:2]
    device = work.device
    image = to_float(photo)[None].to(device)  # (1, 3, H, W): one float frame
    out = np.empty((fields.shape[0], height, width, 3), dtype=np.uint8)
    per_pass = max(1, min(chunk_size, FULL_RES_PIXEL_BUDGET // (height * width)))
    if mask is not None:
        from lvmm.controls import apply_mask

        mask = torch.as_tensor(mask, dtype=torch.float32).to(device)
        if tuple(mask.shape) != (height, width):
            raise ValueError(f"the render mask is {tuple(mask.shape)}, the photo {(height, width)}")
    with torch.no_grad():
        pyramid = renderer.encode(work)
        for start in range(0, fields.shape[0], chunk_size):
            f = fields[start : start + chunk_size].to(device)  # (t, 3, h, w)
            t = f.shape[0]
            fill = renderer.fill([p.expand(t, -1, -1, -1) for p in pyramid], f)  # (t, 3, h', w')
            for s in range(0, t, per_pass):
                ff = to_photo(f[s : s + per_pass], (height, width), valid, fields=True)  # (p, 3, H, W)
                if mask is not None:
                    ff = apply_mask(ff, mask)
                w = ff[:, 2:3]
                warped = warp(image.expand(ff.shape[0], -1, -1, -1), ff[:, :2], mode="bicubic")
                frame = w * warped + (1 - w) * to_photo(fill[s : s + per_pass], (height, width), valid)
                out[start + s : start + s + ff.shape[0]] = to_uint8(frame.clamp(0, 1))
    return out
