"""Motion controls that act on the explicit motion field, and the measures that check them.

Every control works on displacement fields in the conventions of :mod:`lvmm.warp` (normalised units,
backward warping ``I_k(x) = I_0(x + d_k(x))``), so each is exact and measurable:

* **strength** (:func:`scale_motion`): multiplies the displacement; 0 is the still photo;
* **motion amount** (:func:`motion_amount`): the clip's mean displacement in pixels of the field grid,
  the quantity stage two can be conditioned on (``UNet3D(amplitude_condition=True)``) and that
  :func:`amplitude_response` compares with what was asked for;
* **region brush** (:func:`prepare_mask`, :func:`apply_mask`): white may move, black stays; acts as
  :class:`~lvmm.diffusion.guidance.MaskGuidance` while sampling and multiplies the decoded field
  before rendering (so the black region is pixel-still); :func:`mask_energy_share` and
  :func:`masked_motion_ratio` measure it;
* **drag arrows** (:class:`Drag`, :func:`drag_targets`, :func:`correct_drags`): point (x0, y0) of the
  photo is at (x1, y1) by a chosen frame, along an eased path (and back, for loops); acts as
  :class:`~lvmm.diffusion.guidance.DragGuidance` and as an exact local correction of the decoded
  field; :func:`drag_endpoint_error` measures it;
* **long clips** (:func:`tile_loop`, :func:`join_ratio`): loops repeat to any length, other clips are
  denoised as overlapping windows (:mod:`lvmm.diffusion.windows`) whose joins are measured.

Points are in the photo's pixels with pixel centres at integers (x to the right, y down), converted to
normalised units as ``(2 x + 1) / W - 1`` (``align_corners=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lvmm.warp import normalised_to_pixels

MASK_FEATHER = 0.02
"""Half-width of the brush's soft edge, as a fraction of the photo's short side."""

DRAG_RADIUS = 0.1
"""Standard deviation of a drag's Gaussian neighbourhood, as a fraction of the photo's short side."""


# ---------------------------------------------------------------------------------------------- strength


def scale_motion(fields: torch.Tensor, scale: float) -> torch.Tensor:
    """Fields (..., 3, h, w) with the displacement (dx, dy) multiplied by ``scale`` exactly.

    The renderer's share 1 - w (what warping cannot show) shrinks with the motion below 1,
    ``w -> 1 - min(scale, 1) (1 - w)``, so 0 gives the identity field (0, 0, 1): the still photo.
    """
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"motion scale must be a finite number >= 0, got {scale}")
    if scale == 1.0:
        return fields
    w = 1 - min(scale, 1.0) * (1 - fields[..., 2:3, :, :])
    return torch.cat([fields[..., :2, :, :] * scale, w, fields[..., 3:, :, :]], dim=-3)


def motion_amount(fields: torch.Tensor) -> torch.Tensor:
    """Mean displacement length per clip, in pixels of the field grid: fields (B, K, >=2, h, w) -> (B,).

    The fields are relative to the first frame (``MotionModel.decode_motion``), normalised units; this
    is the motion amount stage two is conditioned on and ``Animation.metrics["magnitude_px"]``.
    """
    px = normalised_to_pixels(fields[:, :, :2].float(), *fields.shape[-2:])  # (B, K, 2, h, w)
    return px.norm(dim=2).flatten(1).mean(1)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two sequences (nan when either is constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def amplitude_response(animator, images: Sequence[np.ndarray], amounts: Sequence[float], seeds=(0,), options=None):
    """Requested vs generated motion amount over a set of first frames (for the report).

    Animates every image once per requested amount A (``AnimationOptions.motion_amount``) with the
    given seeds and measures the generated amount (:func:`motion_amount` of the decoded fields).
    Returns ``{"requested": [...], "generated": [...], "pearson": r, "slope": s}`` with one entry per
    (image, amount, seed); the slope is the least-squares slope of generated on requested.
    """
    from dataclasses import replace

    from lvmm.animation import AnimationOptions

    base = options or AnimationOptions()
    requested, generated = [], []
    for image in images:
        for a in amounts:
            for r in animator.animate(image, list(seeds), replace(base, motion_amount=float(a))):
                requested.append(float(a))
                generated.append(float(r.metrics["magnitude_px"]))
    x, y = np.asarray(requested), np.asarray(generated)
    slope = float(np.polyfit(x, y, 1)[0]) if len(set(requested)) > 1 else float("nan")
    return {"requested": requested, "generated": generated, "pearson": pearson(x, y), "slope": slope}


# ---------------------------------------------------------------------------------------------- region brush


def load_mask(path) -> np.ndarray:
    """A brush image (any size, any mode) as a float32 (H, W) map in [0, 1]: white may move, black stays."""
    from lvmm.media import read_image

    rgb = read_image(path).astype(np.float32) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def prepare_mask(mask, size: tuple[int, int], feather: float = MASK_FEATHER) -> torch.Tensor:
    """The brush at ``size`` (H, W): resized (area / bilinear), soft-edged, float32 (H, W) in [0, 1].

    The soft edge is two box blurs of half-width ``feather * min(H, W)`` pixels (a compact tent, so a
    pixel farther than the edge width from any white stays exactly 0, and pixel-still).
    """
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    if m.ndim == 3:  # an RGB(A) array: its luminance
        m = m[..., :3] @ torch.tensor([0.299, 0.587, 0.114])[: m.shape[-1]]
    if m.ndim != 2 or not torch.isfinite(m).all():
        raise ValueError(f"a region mask is an (H, W) map of finite values, got shape {tuple(m.shape)}")
    if m.max() > 1.0:  # 0-255 values
        m = m / 255.0
    m = m.clamp(0, 1)[None, None]  # (1, 1, h, w)
    shrink = m.shape[-2] >= size[0] and m.shape[-1] >= size[1]
    m = F.interpolate(m, size=size, mode="area" if shrink else "bilinear", align_corners=None if shrink else False)
    r = int(round(feather * min(size)))
    for _ in range(2 if r > 0 else 0):
        m = F.avg_pool2d(F.pad(m, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)
    return m[0, 0].clamp(0, 1)


def mask_on_grid(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A photo-size mask (H, W) averaged onto a field grid of ``size``: (h, w)."""
    return F.interpolate(mask[None, None].float(), size=size, mode="area")[0, 0]


def apply_mask(fields: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fields (..., 3, h, w) with displacement x m and w -> w m + (1 - m) for a mask (h, w) on their grid.

    Where m = 0 the field is the identity (0, 0, 1), which renders the photo's own pixels.
    """
    m = mask.to(fields)
    d, w = fields[..., :2, :, :] * m, fields[..., 2:3, :, :] * m + (1 - m)
    return torch.cat([d, w, fields[..., 3:, :, :]], dim=-3)


def mask_energy_share(fields: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of the motion energy sum |d|^2 that lies inside the mask: fields (..., 2+, h, w), mask (h, w)."""
    e = fields[..., :2, :, :].float().pow(2).sum(-3)  # (..., h, w)
    m = mask.to(e)
    total = float(e.sum())
    return float((e * m).sum()) / total if total > 0 else float("nan")


def masked_motion_ratio(masked: torch.Tensor, unmasked: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean displacement inside the mask of a masked sample / of the unmasked sample (same seed): 1 = kept."""

    def inside(f):
        mag = f[..., :2, :, :].float().norm(dim=-3)  # (..., h, w)
        m = mask.to(mag)
        return float((mag * m).sum() / (m.sum() * mag[..., 0, 0].numel()).clamp_min(1e-8))

    return inside(masked) / max(inside(unmasked), 1e-12)


# ---------------------------------------------------------------------------------------------- drags


@dataclass(frozen=True)
class Drag:
    """Point (x0, y0) of the photo (pixels) should be at (x1, y1) by output frame ``frame``.

    ``frame`` counts the frames as they play before slow motion (a clip's frame 0 is the photo; a
    loop's frame 0 is its first generated frame). None: the last frame of a clip, the middle of a loop.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    frame: int | None = None


def parse_drag(text: str) -> Drag:
    """``"X0,Y0,X1,Y1[,FRAME]"`` -> :class:`Drag`."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) not in (4, 5):
        raise ValueError(f"a drag is X0,Y0,X1,Y1[,FRAME], got {text!r}")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts[:4])
        frame = int(parts[4]) if len(parts) == 5 else None
    except ValueError:
        raise ValueError(f"a drag is X0,Y0,X1,Y1[,FRAME] of numbers, got {text!r}") from None
    return Drag(x0, y0, x1, y1, frame)


def as_drag(value) -> Drag:
    """A :class:`Drag` from a Drag, a string, ``((x0, y0), (x1, y1))`` or ``(x0, y0, x1, y1[, frame])``."""
    if isinstance(value, Drag):
        return value
    if isinstance(value, str):
        return parse_drag(value)
    try:
        if len(value) == 2:
            (x0, y0), (x1, y1) = value
            return Drag(float(x0), float(y0), float(x1), float(y1))
        if len(value) in (4, 5):
            return Drag(*(float(v) for v in value[:4]), None if len(value) == 4 else int(value[4]))
    except (TypeError, ValueError):
        pass
    raise ValueError(f"a drag is two points ((x0, y0), (x1, y1)) or (x0, y0, x1, y1[, frame]), got {value!r}")


def check_drag(drag: Drag, size: tuple[int, int]) -> None:
    """Raise ValueError unless both points lie in a photo of ``size`` (H, W)."""
    h, w = size
    xs, ys = (drag.x0, drag.x1), (drag.y0, drag.y1)
    if not all(math.isfinite(v) for v in (*xs, *ys)) or not (
        all(0 <= x < w for x in xs) and all(0 <= y < h for y in ys)
    ):
        raise ValueError(f"drag {drag.x0:g},{drag.y0:g} -> {drag.x1:g},{drag.y1:g} leaves the {w}x{h} photo")


def smoothstep(s: torch.Tensor) -> torch.Tensor:
    """Ease in and out: 3 s^2 - 2 s^3 on [0, 1]."""
    s = s.clamp(0, 1)
    return s * s * (3 - 2 * s)


def drag_progress(num_frames: int, loop: bool, frame: int | None = None) -> torch.Tensor:
    """Fraction of the way (num_frames,) at generated frames 1..num_frames.

    A clip (played ``[photo, 1..K]``) eases from 0 at the photo to 1 at output frame ``frame`` (default
    K) and holds. A loop (played ``1..K-1``, frame K repeating frame 1) eases from 0 at its first frame
    to 1 at output frame ``frame`` (default the middle, (K - 1) // 2) and back to 0 at the wrap.
    """
    k = torch.arange(1, num_frames + 1, dtype=torch.float32)
    if not loop:
        end = num_frames if frame is None else int(frame)
        if not 1 <= end <= num_frames:
            raise ValueError(f"drag frame {end} is outside the clip's frames 1..{num_frames}")
        return smoothstep(k / end)
    period = num_frames - 1  # played frames j = k - 1 = 0 .. K - 2; j = K - 1 is frame 0 again
    peak = period // 2 if frame is None else int(frame)
    if not 1 <= peak <= period - 1:
        raise ValueError(f"a loop's drag frame must be between 1 and {period - 1}, got {peak}")
    j = k - 1
    return torch.where(j <= peak, smoothstep(j / peak), smoothstep((period - j) / (period - peak)))


def _normalised(x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    h, w = size
    return (2 * x + 1) / w - 1, (2 * y + 1) / h - 1


def drag_targets(
    drags: Sequence[Drag], size: tuple[int, int], num_frames: int, loop: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start points (J, 2) and paths (num_frames, J, 2) of the drags in normalised units, for a photo of ``size``."""
    starts, paths = [], []
    for d in drags:
        p0, p1 = torch.tensor(_normalised(d.x0, d.y0, size)), torch.tensor(_normalised(d.x1, d.y1, size))
        s = drag_progress(num_frames, loop, d.frame)  # (K,)
        starts.append(p0)
        paths.append(p0 + s[:, None] * (p1 - p0))  # (K, 2)
    return torch.stack(starts), torch.stack(paths, 1)


def drag_radius(size: tuple[int, int], radius: float = DRAG_RADIUS) -> torch.Tensor:
    """A drag neighbourhood's standard deviation (x, y) in normalised units, ``radius`` x the short side."""
    h, w = size
    px = radius * min(h, w)
    return torch.tensor([2 * px / w, 2 * px / h])


def _sample_points(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of maps (N, C, h, w) at points (N, P, 2) in normalised units: (N, C, P)."""
    return F.grid_sample(maps, points[:, None], mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]


def correct_drags(fields: torch.Tensor, start: torch.Tensor, path: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Exact local correction of fields (B, K, 3, h, w) so each drag's content is on its path.

    For frame k, drag j with start p_j and path point c_kj, a backward warp needs d_k(c_kj) = p_j - c_kj.
    The correction adds sum_i a_ki g_ki(x), Gaussians around the path points, with the amplitudes a
    solved from the J x J system G a = r (G_ji = g_ki(c_kj), r the residuals), so the corrected field,
    sampled bilinearly, is exact at every path point; w is raised to 1 near the points (warped, not redrawn).
    """
    b, k, _, h, w = fields.shape
    if path.shape[0] != k:
        raise ValueError(f"drag path has {path.shape[0]} frames, the fields {k}")
    dev = fields.device
    start, path, radius = start.to(dev), path.to(dev), radius.to(dev)
    ys = (torch.arange(h, dtype=torch.float32, device=dev) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32, device=dev) * 2 + 1) / w - 1
    gx = (xs.view(1, 1, 1, -1) - path[..., 0, None, None]) / radius[0]
    gy = (ys.view(1, 1, -1, 1) - path[..., 1, None, None]) / radius[1]
    g = torch.exp(-0.5 * (gx**2 + gy**2))  # (K, J, h, w)
    gram = _sample_points(g, path).transpose(1, 2)  # (K, J_points, J_gaussians)
    target = (start[None] - path).transpose(1, 2)  # (K, 2, J)
    d = fields[:, :, :2].float()  # (B, K, 2, h, w)
    now = _sample_points(d.flatten(0, 1), path.repeat(b, 1, 1)).view(b, k, 2, -1)  # (B, K, 2, J)
    resid = target[None] - now  # (B, K, 2, J)
    amp = torch.linalg.lstsq(gram[None].expand(b, -1, -1, -1), resid.transpose(2, 3)).solution  # (B, K, J, 2)
    add = torch.einsum("bkjc,kjhw->bkchw", amp, g)  # (B, K, 2, h, w)
    weight = fields[:, :, 2:3] + (1 - fields[:, :, 2:3]) * g.amax(1)[None, :, None].to(fields)
    return torch.cat([(d + add).to(fields), weight, fields[:, :, 3:]], dim=2)


def drag_endpoint_error(fields: torch.Tensor, drags: Sequence[Drag], size: tuple[int, int], loop: bool) -> list[float]:
    """Per drag, in photo pixels: |c + d(c) - p0| at the drag's frame, c = (x1, y1), fields (K, 3, h, w).

    With a backward warp, frame k shows at c the content of the photo at c + d_k(c); the drag asks for
    p0 there. ``fields`` are the generated fields 1..K relative to the photo (a clip's played fields
    minus the photo, a loop's played fields plus the repeated last one are fine too: only the drag's
    frame is read).
    """
    h, w = size
    k = fields.shape[0]
    out = []
    for d in drags:
        frame = (k if not loop else (k - 1) // 2) if d.frame is None else int(d.frame)
        index = frame - 1 if not loop else frame  # row of the generated field of that output frame
        c = torch.tensor([_normalised(d.x1, d.y1, size)], dtype=torch.float32)  # (1, 2)
        disp = _sample_points(fields[index : index + 1, :2].float(), c[None])[0, :, 0]  # (2,)
        p0 = torch.tensor(_normalised(d.x0, d.y0, size))
        err = normalised_to_pixels((c[0] + disp - p0).view(2, 1, 1), h, w).view(2)
        out.append(float(err.norm()))
    return out


# ---------------------------------------------------------------------------------------------- long clips


def tile_loop(frames: np.ndarray, total: int) -> np.ndarray:
    """A loop's played frames (T, ...) repeated cyclically to ``total`` frames (a view-free copy)."""
    idx = np.arange(total) % len(frames)
    return frames[idx]


def join_ratio(sequence, joins: Sequence[int], span: int = 1) -> float:
    """Step at the joins / median step of ``sequence``: for each join j, the mean of the ``span`` steps
    j -> j + 1 .. j + span - 1 -> j + span (a join cross-faded over several frames), averaged over the joins.

    1: the joins are ordinary steps; well above 1: they jump. ``sequence`` (T, ...) tensors or uint8 frames.
    """
    from lvmm.evaluation.motion_metrics import EPS, steps

    s = steps(sequence)
    joins = [j for j in joins if j < len(s)]
    if not joins:
        return float("nan")
    at = [float(s[j : j + span].mean()) for j in joins]
    return float(np.mean(at)) / max(float(s.median()), EPS)


# ---------------------------------------------------------------------------------------------- command line


def add_arguments(parser) -> None:
    """The motion controls' flags of ``tools/animate.py`` (README, Motion controls)."""
    g = parser.add_argument_group("motion controls (lvmm.controls)")
    g.add_argument("--motion-scale", type=float, default=1.0, help="multiply the generated displacement (0: still)")
    g.add_argument(
        "--motion-amount",
        type=float,
        default=None,
        help="mean displacement to ask for, pixels of the field grid (models trained with amplitude_condition)",
    )
    g.add_argument("--mask", default=None, help="region brush image, any size: white may move, black stays")
    g.add_argument("--mask-guidance", type=float, default=None, help="weight of mask guidance (0: edit only)")
    g.add_argument(
        "--drag",
        action="append",
        type=parse_drag,
        default=[],
        metavar="X0,Y0,X1,Y1[,FRAME]",
        help="move the photo's point (X0,Y0) to (X1,Y1) by FRAME (default: last frame; a loop's middle); repeatable",
    )
    g.add_argument("--drag-guidance", type=float, default=None, help="weight of drag guidance (0: correction only)")
    g.add_argument("--no-drag-correction", action="store_true", help="guide the drags only, do not correct the field")
    g.add_argument(
        "--duration", type=float, default=None, help="seconds at --fps: loops repeat, clips are sampled in windows"
    )


def options_from_args(args) -> dict:
    """:class:`~lvmm.animation.AnimationOptions` fields from the flags of :func:`add_arguments` (and ``--fps``)."""
    out = dict(motion_scale=args.motion_scale, motion_amount=args.motion_amount)
    if args.drag:
        out["drags"] = tuple(args.drag)
    if args.mask is not None:
        out["region_mask"] = load_mask(args.mask)
    if args.mask_guidance is not None:
        out["mask_guidance"] = args.mask_guidance
    if args.drag_guidance is not None:
        out["drag_guidance"] = args.drag_guidance
    if args.no_drag_correction:
        out["drag_correction"] = False
    if args.duration is not None:
        if not args.duration > 0:
            raise ValueError(f"--duration must be positive, got {args.duration}")
        out["total_frames"] = max(3, int(round(args.duration * args.fps)))
    return out
