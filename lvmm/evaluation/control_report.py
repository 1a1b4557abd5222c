"""The demo report's sections on the motion controls (:mod:`lvmm.controls`), each measured on the trained model.

Every section animates held-out images with one control and measures what the control promises, beside
the same seed without it, and returns ``(result, contact_rows)``: a JSON-able dict and rows
``(label, frames)`` for the control's contact sheet.

* :func:`strength_section`: ``motion_scale`` S multiplies the displacement (S = 0 must be the photo,
  uint8-equal);
* :func:`amount_section`: the trained motion amount (``motion_amount``, U-Nets built with
  ``amplitude_condition``): correlation of requested and generated amount, and family accuracy of
  text-conditioned samples at a low, medium and high amount;
* :func:`brush_section`: a region mask: the share of motion energy inside it, from guidance alone (the
  sampled field) and as rendered (after the field edit), the motion kept inside, and whether the black
  region is pixel-still;
* :func:`drag_section`: drag arrows: end-point error at the drag's frame with guidance alone and with
  the field correction, at the working size, and the motion away from the point against the undragged
  sample (a drag should not freeze or explode the rest of the scene);
* :func:`long_clip_section`: a clip of more than 100 frames denoised as overlapping windows (step into a
  window / median step, the largest step / median step, drift of the motion from the first window to the
  last, seconds per frame at two lengths) and a loop repeated to 4 s at 24 fps;
* :func:`audio_section`: family accuracy of samples prompted by fresh soundtracks of each family;
* :func:`prompt_accuracy`: family accuracy of samples conditioned on a prompt per clip (a caption, a
  soundtrack).

What could fool them: S and the mask edit are exact by construction, so their rendered numbers check
the implementation, not the model; guidance-alone numbers (the mask share before the edit, the drag
error without correction) are the model's. A drag's end-point error is read at one point: the motion
ratio away from it is there to catch a field that is right at the point and wrong elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from lvmm import controls
from lvmm.animation import AnimationOptions, Animator
from lvmm.datasets.procedural import FAMILIES
from lvmm.evaluation.motion_metrics import EPS, FamilyClassifier, mean_magnitude, steps
from lvmm.warp import normalised_to_pixels

TARGET_AMOUNT_CORRELATION = 0.9
TARGET_MASK_SHARE = 0.95
TARGET_MASK_INSIDE = 0.7
TARGET_DRAG_EPE_PX = 1.0
TARGET_DRAG_ELSEWHERE = (0.5, 2.0)  # motion away from a dragged point / without the drag: plausible
TARGET_JOIN = 1.5
TARGET_AUDIO_OVER_CHANCE = 2.0

STRENGTHS = (0.0, 0.5, 1.0, 2.0)
AMOUNT_QUANTILES = (0.2, 0.5, 0.8)  # low, medium and high: quantiles of the held-out clips' moving amounts
LONG_CLIP_FRAMES = 120  # 5 s at 24 fps
LOOP_SECONDS, LOOP_FPS = 4.0, 24.0
DRAG_SHIFT = 0.12  # a drag moves its point by this fraction of the photo's short side


def pixels(fields: torch.Tensor) -> torch.Tensor:
    """Displacement (..., 2, h, w) in pixels of the field grid, of fields (..., >=2, h, w) in normalised units."""
    return normalised_to_pixels(fields[..., :2, :, :].float(), *fields.shape[-2:])


class Recorder:
    """A ``field_transform`` that keeps the decoded fields as sampled (before the controls' edits)."""

    def __init__(self):
        self.fields: list[torch.Tensor] = []

    def __call__(self, fields: torch.Tensor) -> torch.Tensor:
        self.fields.append(fields.detach().cpu().clone())
        return fields


def prompt_accuracy(
    animator: Animator,
    classifier: FamilyClassifier,
    trials: Sequence[tuple[int, np.ndarray, dict]],
    options: AnimationOptions,
    seeds: Sequence[int] | None = None,
) -> dict:
    """Family accuracy of conditioned samples: ``trials`` are (label, first frame, prompt keywords of ``animate``).

    The keywords name the prompt: ``{"prompt": caption}`` or ``{"audio": path or (waveform, rate)}``.
    ``seeds``: one per trial (default ``7919 n + label`` for trial n). Returns the accuracy, chance, the
    ratio and the confusion matrix (rows: requested family).
    """
    confusion = np.zeros((len(FAMILIES), len(FAMILIES)), dtype=int)
    hits = []
    for n, (label, image, prompt) in enumerate(trials):
        seed = 7919 * n + label if seeds is None else int(seeds[n])
        clip = animator.animate(image, [seed], options, **prompt)[0]
        guess = int(classifier.predict(pixels(clip.fields[1:])[None])[0])  # frame 0 is the photo's identity field
        confusion[label, guess] += 1
        hits.append(guess == label)
    accuracy = float(np.mean(hits)) if hits else float("nan")
    chance = 1.0 / len(FAMILIES)
    return {
        "accuracy": accuracy,
        "chance": chance,
        "ratio_to_chance": accuracy / chance,
        "clips": len(hits),
        "confusion": confusion.tolist(),
    }


def strength_section(animator: Animator, image: np.ndarray, options: AnimationOptions, seed: int = 0):
    """``motion_scale`` S in :data:`STRENGTHS` on one photo and seed: generated / unscaled motion, S = 0 the photo."""
    rows, magnitude, still_equal = [], {}, None
    for s in STRENGTHS:
        clip = animator.animate(image, [seed], replace(options, motion_scale=s))[0]
        magnitude[s] = mean_magnitude(pixels(clip.fields))
        if s == 0.0:
            still_equal = bool(all(np.array_equal(f, image) for f in clip.frames))
        rows.append((f"motion scale {s:g}", clip.frames))
    base = max(magnitude[1.0], 1e-12)
    return {
        "scales": list(STRENGTHS),
        "ratio_to_unscaled": {f"{s:g}": magnitude[s] / base for s in STRENGTHS},
        "zero_is_the_photo": still_equal,
        "note": "mean displacement of the played fields at S / at S = 1, same photo and seed",
    }, rows


def amount_levels(true_amounts: Sequence[float], labels: Sequence[int]) -> list[float]:
    """Low, medium and high motion amounts: :data:`AMOUNT_QUANTILES` of the moving (non-still) clips' amounts."""
    still = FAMILIES.index("still")
    moving = [a for a, y in zip(true_amounts, labels, strict=True) if y != still]
    return [float(np.quantile(moving, q)) for q in AMOUNT_QUANTILES]


def amount_section(
    animator: Animator,
    classifier: FamilyClassifier,
    val: list[dict],
    true_amounts: Sequence[float],
    options: AnimationOptions,
    images_per_family: int = 2,
    clips_per_family: int = 4,
):
    """The motion amount: requested vs generated over held-out first frames, and family accuracy per amount.

    ``val`` rows have ``first`` (H, W, 3), ``json`` (``label``, ``caption``); ``true_amounts`` their clips'
    measured amounts. The correlation uses no prompt (the amount alone); the accuracy prompts each
    family's caption at each amount. Skipped when the U-Net takes no amount.
    """
    if not getattr(animator.unet, "amplitude_condition", False):
        return {"skipped": "the stage-two U-Net was trained without amplitude_condition"}, []
    labels = [int(r["json"]["label"]) for r in val]
    levels = amount_levels(true_amounts, labels)
    by_family = {i: [r for r in val if int(r["json"]["label"]) == i] for i in range(len(FAMILIES))}
    images = [r["first"] for i in by_family for r in by_family[i][:images_per_family]]
    response = controls.amplitude_response(animator, images, levels, seeds=(0,), options=options)
    accuracy, rows = {}, []
    for name, level in zip(("low", "medium", "high"), levels, strict=True):
        trials = [
            (i, rows_i[j % len(rows_i)]["first"], {"prompt": rows_i[j % len(rows_i)]["json"]["caption"]})
            for i, rows_i in by_family.items()
            if rows_i
            for j in range(clips_per_family)
        ]
        accuracy[name] = prompt_accuracy(animator, classifier, trials, replace(options, motion_amount=level))
    for level in levels:
        clip = animator.animate(images[0], [0], replace(options, motion_amount=level))[0]
        rows.append((f"motion amount {level:.2f} px", clip.frames))
    return {
        "levels_px": levels,
        "pearson": response["pearson"],
        "slope": response["slope"],
        "requested": response["requested"],
        "generated": response["generated"],
        "accuracy": accuracy,
        "note": f"{len(images)} held-out first frames x {len(levels)} amounts (the {AMOUNT_QUANTILES} quantiles "
        "of the held-out moving clips' amounts), no prompt, one seed; accuracy: each family's caption, "
        f"{clips_per_family} clips per family and amount",
    }, rows


def half_mask(height: int, width: int) -> np.ndarray:
    """The brush of the report: the left half may move, the right half stays (float32 (H, W))."""
    mask = np.zeros((height, width), np.float32)
    mask[:, : width // 2] = 1.0
    return mask


def brush_section(animator: Animator, images: Sequence[np.ndarray], seeds: Sequence[int], options: AnimationOptions):
    """A half mask on each image and seed: motion energy inside it (guided, as rendered), motion kept, stillness."""
    shares_guided, shares_played, shares_free, inside, still_max, rows = [], [], [], [], [], []
    for image in images:
        mask = half_mask(*image.shape[:2])
        free = animator.animate(image, list(seeds), options)
        recorder = Recorder()
        masked = animator.animate(image, list(seeds), replace(options, region_mask=mask, field_transform=recorder))
        grid = masked[0].fields.shape[-2:]
        photo_mask = controls.prepare_mask(mask, image.shape[:2], options.mask_feather).numpy()
        grid_mask = controls.mask_on_grid(torch.from_numpy(photo_mask), grid)
        sampled = recorder.fields[0]  # (B, K, 3, h, w): what guidance alone made
        for i, (a, b) in enumerate(zip(free, masked, strict=True)):
            shares_free.append(controls.mask_energy_share(a.fields, grid_mask))
            shares_guided.append(controls.mask_energy_share(sampled[i], grid_mask))
            shares_played.append(controls.mask_energy_share(b.fields, grid_mask))
            inside.append(controls.masked_motion_ratio(b.fields, a.fields, grid_mask))
            still = photo_mask == 0
            still_max.append(int(max(np.abs(f.astype(np.int16) - image)[still].max() for f in b.frames)))
        rows += [("no brush", free[0].frames), ("brush: left half moves", masked[0].frames)]
    return {
        "share_guided": float(np.mean(shares_guided)),
        "share_rendered": float(np.mean(shares_played)),
        "share_without_brush": float(np.mean(shares_free)),
        "inside_kept": float(np.mean(inside)),
        "still_region_max_change": int(max(still_max)),
        "clips": len(inside),
        "note": "share of the motion energy inside a half mask: of the sampled field (mask guidance alone), as "
        "rendered (after the field edit) and without a brush; motion kept = mean displacement inside, "
        "brushed / not (same seed); still region: largest |frame - photo| (0-255) where the feathered mask is 0",
    }, rows


def centre_drag(height: int, width: int) -> controls.Drag:
    """The report's drag: the photo's centre moved right by :data:`DRAG_SHIFT` of the short side, by the last frame."""
    x0, y0 = (width - 1) / 2, (height - 1) / 2
    return controls.Drag(x0, y0, x0 + DRAG_SHIFT * min(height, width), y0)


def away_from(fields: torch.Tensor, drag: controls.Drag, photo: tuple[int, int], radii: float = 3.0) -> float:
    """Mean displacement (px of the grid) of fields (T, >=2, h, w) farther than ``radii`` drag radii from the path."""
    h, w = fields.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    sy, sx = h / photo[0], w / photo[1]
    reach = radii * controls.DRAG_RADIUS * min(h, w) + abs(drag.x1 - drag.x0) * sx
    far = ((xs - (drag.x0 + drag.x1) / 2 * sx) ** 2 + (ys - drag.y0 * sy) ** 2).sqrt() > reach
    return float(pixels(fields).norm(dim=-3)[:, far].mean())


def drag_section(animator: Animator, images: Sequence[np.ndarray], seeds: Sequence[int], options: AnimationOptions):
    """A centre drag on each image and seed: end-point error (guided only, corrected), motion elsewhere."""
    guided, corrected, elsewhere, rows = [], [], [], []
    for image in images:
        photo = image.shape[:2]
        drag = centre_drag(*photo)
        free = animator.animate(image, list(seeds), options)
        only = animator.animate(image, list(seeds), replace(options, drags=(drag,), drag_correction=False))
        fixed = animator.animate(image, list(seeds), replace(options, drags=(drag,)))
        to_working = fixed[0].working_size[0] / photo[0]  # photo pixels -> pixels of the working size
        for a, b, c in zip(free, only, fixed, strict=True):
            guided.append(b.metrics["drag_error_px"] * to_working)
            corrected.append(c.metrics["drag_error_px"] * to_working)
            elsewhere.append(away_from(c.fields, drag, photo) / max(away_from(a.fields, drag, photo), 1e-8))
        rows += [("no drag", free[0].frames), ("drag: centre to the right", fixed[0].frames)]
    return {
        "epe_guided_px": float(np.mean(guided)),
        "epe_px": float(np.mean(corrected)),
        "epe_max_px": float(np.max(corrected)),
        "elsewhere_ratio": float(np.mean(elsewhere)),
        "clips": len(corrected),
        "note": f"the centre dragged right by {DRAG_SHIFT:g} of the short side by the last frame; end-point error "
        "in pixels of the working size, with drag guidance alone and with the field correction (the default); "
        "elsewhere = mean displacement beyond 3 drag radii of the path, dragged / undragged (same seed)",
    }, rows


def long_clip_section(
    animator: Animator,
    image: np.ndarray,
    options: AnimationOptions,
    loop_guidance: float,
    write: Callable[[str, np.ndarray, float], None] | None = None,
    frames: int = LONG_CLIP_FRAMES,
    loop_frames: int = int(LOOP_SECONDS * LOOP_FPS),
):
    """A clip of ``frames`` frames sampled in windows, and a loop repeated to ``loop_frames`` (4 s at 24 fps)."""
    short = replace(options, total_frames=max(3, frames // 3))
    t0 = time.time()
    animator.animate(image, [0], short)
    t_short = time.time() - t0
    t0 = time.time()
    clip = animator.animate(image, [0], replace(options, total_frames=frames))[0]
    t_long = time.time() - t0
    per_window = clip.fields.shape[0] // max(clip.metrics.get("windows", 1), 1)
    first = mean_magnitude(pixels(clip.fields[1 : 1 + per_window]))
    last = mean_magnitude(pixels(clip.fields[-per_window:]))
    frame_steps = steps(clip.frames)
    loop = animator.animate(image, [0], replace(options, loop_guidance=loop_guidance, total_frames=loop_frames))[0]
    if write is not None:
        write("long_clip", clip.frames, LOOP_FPS)
        write("loop_4s", loop.frames, LOOP_FPS)
    return {
        "frames": int(clip.frames.shape[0]),
        "windows": int(clip.metrics.get("windows", 1)),
        "join_frames": float(clip.metrics.get("join_frames", float("nan"))),
        "join_fields": float(clip.metrics.get("join_fields", float("nan"))),
        "drift": last / max(first, 1e-8),
        "seconds": t_long,
        "seconds_per_frame": {
            str(short.total_frames): t_short / short.total_frames,
            str(frames): t_long / frames,
        },
        "largest_step_frames": float(frame_steps.max() / max(float(frame_steps.median()), EPS)),
        "loop_frames": int(loop.frames.shape[0]),
        "loop_wrap_frames": float(loop.metrics["wrap_frames"]),
        "note": "a clip of I_0 + N frames denoised together as overlapping windows of K frames, K / 2 apart; join = "
        "step into a window's first frame / median step; drift = mean displacement of the last window / the first",
    }, [(f"long clip, frames 0-{min(8, len(clip.frames))}", clip.frames), ("long clip, last frames", clip.frames[-8:])]


AUDIO_SEED = 20261203  # the report's soundtracks are fresh ones, not the training clips'


def audio_section(
    animator: Animator,
    classifier: FamilyClassifier,
    val: list[dict],
    options: AnimationOptions,
    clips_per_family: int,
    trained_with_audio: bool,
) -> dict:
    """Family accuracy of samples prompted by a fresh soundtrack of each family (as ``--audio`` gives it).

    Each trial pairs a held-out first frame with a newly synthesised soundtrack
    (:func:`lvmm.datasets.soundtrack.make_soundtrack`, new parameters and noise) as long as a training clip
    plays; the classifier reads the family off the generated motion. Skipped unless stage two was trained
    with audio in its text slot.
    """
    from lvmm.datasets.procedural import DEFAULT_FPS, sample_params
    from lvmm.datasets.soundtrack import SAMPLE_RATE, make_soundtrack

    if not trained_with_audio:
        return {"skipped": "stage two was trained without audio conditioning"}
    rng = np.random.default_rng(AUDIO_SEED)
    seconds = (int(animator.extra["num_frames"]) + 1) / DEFAULT_FPS
    trials = []
    for i, family in enumerate(FAMILIES):
        for j in range(clips_per_family):
            image = val[(i * clips_per_family + j) % len(val)]["first"]
            wave = make_soundtrack(
                family, sample_params(family, rng, *image.shape[:2]), seconds, seed=AUDIO_SEED, index=j
            )
            trials.append((i, image, {"audio": (torch.from_numpy(wave), SAMPLE_RATE)}))
    result = prompt_accuracy(animator, classifier, trials, options)
    result["note"] = (
        f"a fresh {seconds:.2f}-s soundtrack per trial (the training clips' length), a held-out first frame, "
        f"CFG weight {options.guidance_scale:g}"
    )
    return result
