"""The demo's report: how well each part of a trained LVMM works, measured, in markdown with plots.

Sections (each a function here; :func:`build_report` runs them all and writes ``report.md``, ``report.json``,
``metrics.png`` and a contact sheet):

* stage one's PSNR/SSIM against the copy-I_0 and true-field baselines on held-out procedural clips
  (:mod:`lvmm.evaluation.stage_one`, run as ``lvmm-eval-stage1`` in its own process);
* stage two's conditioning accuracy: a :class:`~lvmm.evaluation.motion_metrics.FamilyClassifier` fit on decoded
  fields of true clips labels text-conditioned samples;
* generated / true motion magnitude (overall and per family);
* loops as they play (wrap ratio, motion kept) with and without loop guidance, the pop out of the photo and
  the sharpness of the frames at 512 px;
* sampler time per clip and the time of a 40-frame animation of a 1024x768 photo.

Each target is marked met or missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lvmm.animation import DEFAULT_LOOP_GUIDANCE, AnimationOptions, Animator
from lvmm.datasets.procedural import FAMILIES
from lvmm.evaluation.motion_metrics import FamilyClassifier, mean_magnitude, sharpness

TARGET_PSNR_GAIN_DB = 3.0
TARGET_ACCURACY_OVER_CHANCE = 3.0
TARGET_WRAP = (0.7, 1.4)  # wrap ratio of a loop as it plays: 1 = seamless
TARGET_MOTION_KEPT = 0.8  # mean motion with loop guidance / without
TARGET_MAGNITUDE = (0.8, 1.25)  # generated / true mean displacement
TARGET_POP = 1.5  # step(0 -> 1) / median later step
TARGET_SHARPNESS = 0.9  # mean gradient magnitude of frames / of the photo, at 512 px
SHARPNESS_SIDE = 512
CONTROL_SIDE = 256  # short side of the photos the controls are measured on (the working size stays 64)


@dataclass
class ReportSettings:
    """What the report measures and with which models; the fields of ``lvmm-report``'s options."""

    stage1: Path
    stage2: Path
    latents: Path  # latent shards of training clips (fit the family classifier)
    val_latents: Path  # latent shards of held-out clips (first frames, captions)
    photos: list[Path]  # held-out photographs (loops, pop, sharpness; resized to a 512-px short side)
    out: Path
    imagebind: str | None = None
    steps: int = 50
    guidance_scale: float = 4.0
    loop_guidance: float = DEFAULT_LOOP_GUIDANCE
    clips_per_family: int = 16  # 96 clips: the accuracy's standard error is about 0.05 (0.07 with 8)
    stage1_clips: int = 32
    loop_seeds: int = 4
    amount_images: int = 2  # held-out first frames per family for the motion amount's correlation
    control_clips: int = 4  # clips per family and amount for the family accuracy at each motion amount
    long_clip_frames: int = 120  # frames of the report's long clip (5 s at 24 fps)


def read_latents(folder: Path) -> list[dict]:
    """Every sample of the latent shards in ``folder``: motion (K+1, C, h, w), json, first (H, W, 3)."""

    from lvmm.datasets.latent_encoding import iter_tar_samples
    from lvmm.datasets.readers import npy_from_bytes, png_from_bytes

    rows = []
    for shard in sorted(folder.glob("latent-*.tar")):
        for key, s in iter_tar_samples(str(shard)):
            rows.append(
                {
                    "key": key,
                    "motion": npy_from_bytes(s["motion.npy"]).astype("float32"),
                    "json": json.loads(s["json"]),
                    "first": png_from_bytes(s["first.png"]),
                }
            )
    if not rows:
        raise SystemExit(f"error: {folder}: no latent shards (latent-*.tar)")
    return rows


def decoded_fields(motion, latents, batch: int = 64):
    """Decoded displacement fields in pixels (N, K, 2, h, w) of z_1..z_K, relative to D(z_0) as the animations'."""
    import numpy as np
    import torch

    from lvmm.warp import normalised_to_pixels

    out = []
    with torch.no_grad():
        for i in range(0, len(latents), batch):
            z = torch.from_numpy(np.stack([r["motion"] for r in latents[i : i + batch]]))
            f = motion.decode_motion(z[:, 1:], z[:, 0])[:, :, :2]
            out.append(normalised_to_pixels(f, *f.shape[-2:]))
    return torch.cat(out)


def at_side(image: np.ndarray, side: int) -> np.ndarray:
    """uint8 ``image`` resized (bicubic, antialiased) to a short side of ``side`` and an even long side."""
    import torch.nn.functional as F

    from lvmm.media import to_float, to_uint8

    h, w = image.shape[:2]
    size = (side, round(w * side / h / 2) * 2) if h <= w else (round(h * side / w / 2) * 2, side)
    x = F.interpolate(to_float(image)[None], size=size, mode="bicubic", antialias=True, align_corners=False)
    return np.ascontiguousarray(to_uint8(x.clamp(0, 1))[0])


def stage_one_section(s: ReportSettings, out: Path) -> dict:
    """``lvmm-eval-stage1`` on held-out procedural clips, in its own process; its JSON result."""
    result_path = out / "stage1_eval.json"
    cmd = [
        sys.executable,
        "-m",
        "lvmm.cli.eval_stage1",
        "--ckpt",
        str(s.stage1),
        "--procedural",
        str(s.stage1_clips),
        "--out",
        str(result_path),
    ]
    subprocess.run(cmd, check=True)
    return json.loads(result_path.read_text())


def family_classifier(animator: Animator, train: list[dict]) -> FamilyClassifier:
    """The family classifier of every accuracy in the report, fit on decoded fields of the training clips."""
    labels = torch.tensor([r["json"]["label"] for r in train])
    return FamilyClassifier(len(FAMILIES)).fit(decoded_fields(animator.motion, train), labels)


def conditioning_section(
    animator: Animator, classifier: FamilyClassifier, train: list[dict], val: list[dict], s: ReportSettings
) -> dict:
    """Accuracy of the family classifier on text-conditioned samples, beside chance and its accuracy on true clips."""
    val_labels = torch.tensor([r["json"]["label"] for r in val])
    reference = classifier.accuracy(decoded_fields(animator.motion, val), val_labels)
    captions = {
        f: sorted({r["json"]["caption"] for r in train if r["json"]["label"] == i}) for i, f in enumerate(FAMILIES)
    }
    from lvmm.evaluation.control_report import prompt_accuracy

    options = AnimationOptions(steps=s.steps, guidance_scale=s.guidance_scale)
    trials, seeds = [], []
    for i, family in enumerate(FAMILIES):
        for j in range(s.clips_per_family if captions[family] else 0):
            image = val[(i * s.clips_per_family + j) % len(val)]["first"]
            trials.append((i, image, {"prompt": captions[family][j % len(captions[family])]}))
            seeds.append(1000 * i + j)
    result = prompt_accuracy(animator, classifier, trials, options, seeds)
    return result | {"classifier_on_true_val_clips": reference, "guidance_scale": s.guidance_scale}


def magnitude_section(animator: Animator, val: list[dict], s: ReportSettings) -> dict:
    """Mean displacement of generated / of decoded true fields, from each held-out clip's first frame and caption."""
    true_px = decoded_fields(animator.motion, val)  # (N, K, 2, h, w)
    per_family: dict = {}
    plain = AnimationOptions(steps=s.steps)  # what animate gives: the default guidance weight
    unguided = AnimationOptions(steps=s.steps, guidance_scale=0.0)
    without_cfg = []
    for n, row in enumerate(val):
        prompt = row["json"].get("caption") or None
        res = animator.animate(row["first"], [n], plain, prompt=prompt)[0]
        without_cfg.append(animator.animate(row["first"], [n], unguided, prompt=prompt)[0].metrics["magnitude_px"])
        family = FAMILIES[int(row["json"]["label"])]
        per_family.setdefault(family, {"generated": [], "true": []})
        per_family[family]["generated"].append(res.metrics["magnitude_px"])
        per_family[family]["true"].append(mean_magnitude(true_px[n]))
    gen_all = [g for v in per_family.values() for g in v["generated"]]
    true_all = [t for v in per_family.values() for t in v["true"]]
    return {
        "generated_px": float(np.mean(gen_all)),
        "true_px": float(np.mean(true_all)),
        "ratio": float(np.mean(gen_all) / max(np.mean(true_all), 1e-8)),
        "ratio_without_cfg": float(np.mean(without_cfg) / max(np.mean(true_all), 1e-8)),
        "clips": len(gen_all),
        "per_family": {
            f: {
                # a still family has no true motion to compare with: its generated px is the measure
                "ratio": float(np.mean(v["generated"]) / np.mean(v["true"])) if np.mean(v["true"]) > 1e-3 else None,
                "generated_px": float(np.mean(v["generated"])),
                "true_px": float(np.mean(v["true"])),
                "clips": len(v["true"]),
            }
            for f, v in sorted(per_family.items())
        },
        "note": f"DDIM, the default CFG weight w = {plain.guidance_scale:g}, each held-out clip's own first frame and "
        "caption; pixels of the field grid",
    }


def loops_section(animator: Animator, s: ReportSettings, report: dict) -> tuple[dict, list]:
    """Loops with and without loop guidance (wrap ratio, motion kept), pop and sharpness into ``report``.

    Returns the sampler timings per clip so far and the contact sheet's rows."""
    from lvmm.media import read_image
    from lvmm.warp import normalised_to_pixels

    loops = {"without": [], "with": []}
    contact_rows, seeds = [], list(range(s.loop_seeds))
    timings, magnitude, change, pops, sharp = {}, {"without": [], "with": []}, {"without": [], "with": []}, [], []
    for photo in s.photos:
        image = at_side(read_image(photo), SHARPNESS_SIDE)
        photo_sharpness = sharpness(image)
        for name, mu in (("without", 0.0), ("with", s.loop_guidance)):
            t0 = time.time()
            res = animator.animate(image, seeds, AnimationOptions(steps=s.steps, loop_guidance=mu))
            timings.setdefault(f"ddim-{s.steps}{' + loop guidance' if mu else ''}", []).append(
                (time.time() - t0) / len(seeds)
            )
            for r in res:
                loops[name].append(r.metrics)
                like = slice(None) if mu else slice(1, -1)  # frames 1..K-1 in both: a loop plays 1..K-1
                magnitude[name].append(mean_magnitude(normalised_to_pixels(r.fields[like, :2], *r.fields.shape[-2:])))
                change[name].append(float(np.mean([np.abs(f.astype(np.int16) - image).mean() for f in r.frames[like]])))
                if not mu:
                    pops.append(r.metrics["pop_frames"])
                    sharp.append(sharpness(r.frames[1:]) / photo_sharpness)
            contact_rows.append((f"{photo.stem} {name} loop guidance", res[0].frames))
    mean = lambda rows, k: float(np.mean([r[k] for r in rows]))
    report["loops"] = {
        k: {"wrap_field": mean(v, "wrap_field"), "wrap_frames": mean(v, "wrap_frames"), "n": len(v)}
        for k, v in loops.items()
    }
    report["loops"]["motion_kept_field"] = float(np.mean(magnitude["with"]) / max(np.mean(magnitude["without"]), 1e-8))
    report["loops"]["motion_kept_frames"] = float(np.mean(change["with"]) / max(np.mean(change["without"]), 1e-8))
    report["loops"]["loop_guidance"] = s.loop_guidance
    report["loops"]["note"] = (
        "wrap ratio = |last - first| / median step of the sequence as it plays (a loop plays frames 1..K-1; "
        "a clip without loop guidance plays I_0, 1..K); motion kept = mean displacement (fields) or mean "
        "|frame - photo| (frames) with loop guidance / without, same photos and seeds"
    )
    report["pop"] = {"mean": float(np.mean(pops)), "max": float(np.max(pops)), "n": len(pops)}
    report["sharpness"] = {
        "ratio": float(np.mean(sharp)),
        "min": float(np.min(sharp)),
        "side": SHARPNESS_SIDE,
        "n": len(sharp),
    }
    return timings, contact_rows


def timing_section(animator: Animator, s: ReportSettings, report: dict, timings: dict) -> None:
    """Seconds per clip of each sampler, and of one 40-frame animation of a 1024x768 photo, into ``report``."""
    from lvmm.media import read_image

    seeds = list(range(s.loop_seeds))
    image = read_image(s.photos[0])
    for sampler, steps in (("dpmsolver++", 20),):
        t0 = time.time()
        animator.animate(image, seeds, AnimationOptions(sampler=sampler, steps=steps))
        timings[f"{sampler}-{steps}"] = [(time.time() - t0) / len(seeds)]
    big = at_side(image, 768)  # 1024 x 768
    t0 = time.time()
    clip40 = animator.animate(big, [0], AnimationOptions(steps=s.steps, slow_motion=5))[0]
    report["forty_frames_1024x768"] = {
        "seconds": time.time() - t0,
        "frames": int(clip40.frames.shape[0]),
        "size": list(clip40.frames.shape[1:3]),
        "note": f"DDIM-{s.steps}, K = 8 with slow motion x5 (I_0 + 40 frames), one seed",
    }
    report["seconds_per_clip"] = {k: float(np.mean(v)) for k, v in timings.items()}
    report["seconds_per_clip_note"] = (
        f"batches of {len(seeds)} seeds, {torch.get_num_threads()} CPU threads, rendering included"
    )


def contact_sheet(contact_rows: list, side: int = 192, frames: int = 8) -> np.ndarray:
    """Rows of up to ``frames`` thumbnails (short side ``side``) of each ``(label, frames)``, as one uint8 image."""
    thumbs = lambda clip: [at_side(f, side) for f in clip[: min(frames, len(clip))]]
    rows = [np.concatenate(thumbs(clip), axis=1) for _, clip in contact_rows]
    width = max(r.shape[1] for r in rows)  # rows differ in width (photo aspect, frames as played): pad with black
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)


def controls_section(animator: Animator, classifier: FamilyClassifier, val: list[dict], s: ReportSettings) -> dict:
    """Every motion control measured (:mod:`lvmm.evaluation.control_report`), a contact sheet and a clip of each."""
    from lvmm.evaluation import control_report as cr
    from lvmm.media import read_image, write_image, write_video

    out = s.out
    (out / "clips").mkdir(parents=True, exist_ok=True)
    options = AnimationOptions(steps=s.steps)
    photos = [read_image(p) for p in s.photos]
    photos = [at_side(p, min(CONTROL_SIDE, *p.shape[:2])) for p in photos]  # never upsampled
    seeds = list(range(max(1, s.loop_seeds // 2)))
    # each held-out clip's motion amount: controls.motion_amount of its decoded field, here already in pixels
    amounts = decoded_fields(animator.motion, val).norm(dim=2).flatten(1).mean(1).tolist()

    def write(name: str, frames: np.ndarray, fps: float) -> None:
        write_video(out / "clips" / f"{name}.mp4", frames, fps)

    result, per_amount = {}, (s.amount_images, s.control_clips)
    long_clip = (s.loop_guidance, write, s.long_clip_frames)
    for name, run in (
        ("strength", lambda: cr.strength_section(animator, photos[0], options)),
        ("amount", lambda: cr.amount_section(animator, classifier, val, amounts, options, *per_amount)),
        ("brush", lambda: cr.brush_section(animator, photos, seeds, options)),
        ("drag", lambda: cr.drag_section(animator, photos, seeds, options)),
        ("long_clip", lambda: cr.long_clip_section(animator, photos[0], options, *long_clip)),
    ):
        print(f"[report] controls: {name}", flush=True)
        t0 = time.time()
        result[name], rows = run()
        result[name]["report_seconds"] = time.time() - t0
        if rows:
            write_image(out / f"controls_{name}.png", contact_sheet(rows, side=128))
            if name != "long_clip":  # the long clip writes its own, at 24 fps
                write(name, rows[-1][1], 8.0)
    print("[report] controls: audio prompts", flush=True)
    t0 = time.time()
    cfg = AnimationOptions(steps=s.steps, guidance_scale=s.guidance_scale)
    trained = animator.extra.get("audio_token_mean") is not None  # stage two saw audio tokens in training
    result["audio"] = cr.audio_section(animator, classifier, val, cfg, s.clips_per_family, trained)
    result["audio"]["report_seconds"] = time.time() - t0
    return result


def write_figures(report: dict, contact_rows: list, out: Path, s: ReportSettings) -> None:
    """The contact sheet, two full-size frames and ``metrics.png`` (stage-one PSNR, confusion, wrap ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lvmm.media import write_image

    s1 = report["stage1"]
    confusion = np.array(report["conditioning"]["confusion"])
    accuracy, chance = report["conditioning"]["accuracy"], report["conditioning"]["chance"]
    sheet = contact_sheet(contact_rows)
    for name, frames in contact_rows[:2]:  # full-size frames to look at: the photo and generated frame 4
        write_image(out / f"frame4_{name.split()[0]}_{name.split()[1]}.png", frames[min(4, len(frames) - 1)])
    write_image(out / "contact_sheet.png", sheet)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    psnr = dict(s1.get("psnr", {}))
    axes[0].bar(list(psnr), list(psnr.values()), color="tab:blue")
    axes[0].set_title("stage one PSNR (dB), held-out photos")
    axes[0].tick_params(axis="x", rotation=20)
    axes[1].imshow(confusion, cmap="Blues")
    axes[1].set_xticks(range(len(FAMILIES)), FAMILIES, rotation=45)
    axes[1].set_yticks(range(len(FAMILIES)), FAMILIES)
    axes[1].set_title(f"requested (rows) vs classified\naccuracy {accuracy:.2f}, chance {chance:.2f}")
    lp = report["loops"]
    axes[2].bar(
        ["fields", "frames"],
        [lp["without"]["wrap_field"], lp["without"]["wrap_frames"]],
        width=-0.35,
        align="edge",
        label="without",
    )
    axes[2].bar(
        ["fields", "frames"],
        [lp["with"]["wrap_field"], lp["with"]["wrap_frames"]],
        width=0.35,
        align="edge",
        label=f"with (mu={s.loop_guidance:g})",
    )
    axes[2].axhspan(*TARGET_WRAP, color="tab:green", alpha=0.15)
    axes[2].set_title("wrap ratio as played (1 = seamless)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)


def targets_of(report: dict) -> dict[str, tuple[bool, str]]:
    """Each target: (met, the value shown)."""
    s1, lp = report["stage1"], report["loops"]
    accuracy, chance = report["conditioning"]["accuracy"], report["conditioning"]["chance"]
    gain = s1.get("psnr_gain_over_copy_db", float("nan"))
    vae_loss = s1.get("vae_psnr_loss_db", float("nan"))
    return {
        "stage-one PSNR at least 3 dB above copy-I_0": (gain >= TARGET_PSNR_GAIN_DB, f"{gain:+.2f} dB"),
        "VAE-decoded field loses at most 1 dB": (vae_loss <= 1.0, f"{vae_loss:.2f} dB"),
        "conditioning accuracy at least 3x chance": (
            accuracy / chance >= TARGET_ACCURACY_OVER_CHANCE,
            f"{accuracy / chance:.2f}x chance",
        ),
        "loop wrap ratio in [0.7, 1.4] (fields)": (
            TARGET_WRAP[0] <= lp["with"]["wrap_field"] <= TARGET_WRAP[1],
            f"{lp['with']['wrap_field']:.2f}",
        ),
        "loop wrap ratio in [0.7, 1.4] (frames)": (
            TARGET_WRAP[0] <= lp["with"]["wrap_frames"] <= TARGET_WRAP[1],
            f"{lp['with']['wrap_frames']:.2f}",
        ),
        "loop guidance keeps at least 0.8 of the motion (fields)": (
            lp["motion_kept_field"] >= TARGET_MOTION_KEPT,
            f"{lp['motion_kept_field']:.2f}",
        ),
        "loop guidance keeps at least 0.8 of the motion (frames)": (
            lp["motion_kept_frames"] >= TARGET_MOTION_KEPT,
            f"{lp['motion_kept_frames']:.2f}",
        ),
        "generated / true motion in [0.8, 1.25]": (
            TARGET_MAGNITUDE[0] <= report["magnitude"]["ratio"] <= TARGET_MAGNITUDE[1],
            f"{report['magnitude']['ratio']:.2f}",
        ),
        "no pop: step(0 -> 1) / median step at most 1.5": (
            report["pop"]["mean"] <= TARGET_POP,
            f"{report['pop']['mean']:.2f} (max {report['pop']['max']:.2f})",
        ),
        "sharpness at 512 px at least 0.9x the photo's": (
            report["sharpness"]["ratio"] >= TARGET_SHARPNESS,
            f"{report['sharpness']['ratio']:.3f}",
        ),
    } | (control_targets(report["controls"]) if "controls" in report else {})


def control_targets(c: dict) -> dict[str, tuple[bool, str]]:
    """The motion controls' targets (:mod:`lvmm.evaluation.control_report`)."""
    from lvmm.evaluation import control_report as cr

    brush, drag, long = c["brush"], c["drag"], c["long_clip"]
    out = {
        "motion scale 0 is the photo (uint8-equal)": (
            bool(c["strength"]["zero_is_the_photo"]),
            "equal" if c["strength"]["zero_is_the_photo"] else "differs",
        ),
    }
    if "skipped" not in c["amount"]:
        r = c["amount"]["pearson"]
        out["motion amount: requested / generated correlation at least 0.9"] = (
            r >= cr.TARGET_AMOUNT_CORRELATION,
            f"{r:.2f}",
        )
    out |= {
        "brush: motion energy inside the mask at least 0.95": (
            brush["share_rendered"] >= cr.TARGET_MASK_SHARE,
            f"{brush['share_rendered']:.3f} rendered ({brush['share_guided']:.3f} from guidance alone)",
        ),
        "brush: motion inside kept at least 0.7x": (
            brush["inside_kept"] >= cr.TARGET_MASK_INSIDE,
            f"{brush['inside_kept']:.2f}",
        ),
        "brush: the black region is pixel-still": (
            brush["still_region_max_change"] == 0,
            f"max change {brush['still_region_max_change']}",
        ),
        "drag: end-point error at most 1 px (working size)": (
            drag["epe_px"] <= cr.TARGET_DRAG_EPE_PX,
            f"{drag['epe_px']:.2f} px ({drag['epe_guided_px']:.2f} px from guidance alone)",
        ),
        "drag: motion elsewhere 0.5-2x the undragged sample's": (
            cr.TARGET_DRAG_ELSEWHERE[0] <= drag["elsewhere_ratio"] <= cr.TARGET_DRAG_ELSEWHERE[1],
            f"{drag['elsewhere_ratio']:.2f}",
        ),
        f"long clip ({long['frames']} frames): join step at most 1.5x the median step": (
            max(long["join_frames"], long["join_fields"]) <= cr.TARGET_JOIN,
            f"frames {long['join_frames']:.2f}, fields {long['join_fields']:.2f}",
        ),
    }
    if "audio" in c and "skipped" not in c["audio"]:
        ratio = c["audio"]["ratio_to_chance"]
        out["audio-conditioned accuracy at least 2x chance"] = (
            ratio >= cr.TARGET_AUDIO_OVER_CHANCE,
            f"{ratio:.2f}x chance",
        )
    return out


def markdown(report: dict, targets: dict[str, tuple[bool, str]], s: ReportSettings) -> str:
    """``report.md``."""
    s1, lp = report["stage1"], report["loops"]
    accuracy, chance = report["conditioning"]["accuracy"], report["conditioning"]["chance"]
    reference, clips = report["conditioning"]["classifier_on_true_val_clips"], report["conditioning"]["clips"]
    verdict = lambda ok: "**met**" if ok else "**missed**"
    ib = (
        f"official weights ({s.imagebind})"
        if s.imagebind
        else "a small seeded random ImageBind (no official weights given): text conditioning rests on random features"
    )
    lines = [
        "# LVMM demo report",
        "",
        f"Conditioning encoder: {ib}.",
        "",
        "## Targets",
        "",
        "| target | value | |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {k} | {v} | {verdict(ok)} |" for k, (ok, v) in targets.items()]
    lines += [
        "",
        "## Stage one (held-out photographs)",
        "",
        f"{s1.get('pairs', '?')} pairs (I_0, I_k) of held-out procedural clips; PSNR over all pairs, mean SSIM.",
        "",
        "| rendered from | PSNR (dB) | SSIM |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {k} | {v:.2f} | {s1.get('ssim', {}).get(k, float('nan')):.3f} |" for k, v in s1.get("psnr", {}).items()
    ]
    lines += [
        "",
        "End-point error of the field (pixels): " + ", ".join(f"{k} {v:.3f}" for k, v in s1.get("epe_px", {}).items()),
        "",
        "## Stage two: conditioning",
        "",
        f"Accuracy of a family classifier on text-conditioned samples: **{accuracy:.3f}** over {clips} clips "
        f"(chance {chance:.3f}; CFG weight {s.guidance_scale}). The same classifier on decoded fields of true "
        "held-out clips: "
        f"{reference:.3f}.",
        "",
        "## Motion magnitude: generated / true",
        "",
        f"Mean displacement of generated fields / of the decoded true fields, {report['magnitude']['clips']} "
        "held-out clips "
        f"({report['magnitude']['note']}): **{report['magnitude']['ratio']:.2f}** "
        f"({report['magnitude']['generated_px']:.3f} / {report['magnitude']['true_px']:.3f} px); "
        f"without classifier-free guidance (w = 0) {report['magnitude']['ratio_without_cfg']:.2f}: "
        "the model alone regresses towards small motion.",
        "",
        "| family | generated / true | generated px | true px | clips |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {f} | {'n/a (still)' if v['ratio'] is None else format(v['ratio'], '.2f')} | "
        f"{v['generated_px']:.3f} | {v['true_px']:.3f} | {v['clips']} |"
        for f, v in report["magnitude"]["per_family"].items()
    ]
    lines += [
        "",
        "## Loops as they play",
        "",
        report["loops"]["note"] + ".",
        "",
        "| | wrap ratio (fields) | wrap ratio (frames) |",
        "| --- | --- | --- |",
        f"| without loop guidance | {lp['without']['wrap_field']:.3f} | {lp['without']['wrap_frames']:.3f} |",
        f"| with loop guidance (mu = {s.loop_guidance:g}) | {lp['with']['wrap_field']:.3f} | "
        f"{lp['with']['wrap_frames']:.3f} |",
        "",
        f"Motion kept with loop guidance: fields {lp['motion_kept_field']:.2f}, frames {lp['motion_kept_frames']:.2f}.",
        "",
        "## Frames at the photo's resolution",
        "",
        f"Photos at a {SHARPNESS_SIDE}-px short side; motion at the working size, fields applied to the photo itself. "
        f"Pop (step out of the photo / median later step, {report['pop']['n']} clips): mean "
        f"{report['pop']['mean']:.2f}, "
        f"max {report['pop']['max']:.2f}. Sharpness (mean gradient magnitude of frames 1..K / the photo's): "
        f"mean {report['sharpness']['ratio']:.3f}, min {report['sharpness']['min']:.3f}.",
        "",
        "One 40-frame animation of a "
        f"{report['forty_frames_1024x768']['size'][1]}x{report['forty_frames_1024x768']['size'][0]} photo "
        f"({report['forty_frames_1024x768']['note']}): {report['forty_frames_1024x768']['seconds']:.1f} s.",
        "",
        "## Sampler time per clip",
        "",
        "| sampler | seconds |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in report["seconds_per_clip"].items()]
    lines += [
        "",
        report["seconds_per_clip_note"],
        "",
        "![metrics](metrics.png)",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    if "controls" in report:
        lines += controls_markdown(report["controls"])
    return "\n".join(lines)


def controls_markdown(c: dict) -> list[str]:
    """The motion controls' part of ``report.md``: one section per control, its numbers and contact sheet."""
    st, am, br, dr, lc = c["strength"], c["amount"], c["brush"], c["drag"], c["long_clip"]
    lines = [
        "## Motion controls",
        "",
        "Each control on the held-out photographs (short side 256, motion at the working size), beside the same "
        "seed without it. Clips of each: `clips/`.",
        "",
        "### Strength (`--motion-scale`)",
        "",
        f"{st['note']}: "
        + ", ".join(f"S = {k}: {v:.3f}" for k, v in st["ratio_to_unscaled"].items())
        + f". S = 0 {'is' if st['zero_is_the_photo'] else 'is NOT'} the photo, uint8-equal, in every frame.",
        "",
        "![strength](controls_strength.png)",
        "",
        "### Motion amount (`--motion-amount`)",
        "",
    ]
    if "skipped" in am:
        lines += [f"Skipped: {am['skipped']}.", ""]
    else:
        lines += [
            f"{am['note']}. Levels (px of the field grid): "
            + ", ".join(f"{v:.2f}" for v in am["levels_px"])
            + f". Pearson correlation of requested and generated amount **{am['pearson']:.2f}** "
            f"(slope {am['slope']:.2f}).",
            "",
            "| amount | family accuracy | x chance | clips |",
            "| --- | --- | --- | --- |",
        ]
        acc = am["accuracy"]
        lines += [f"| {k} | {v['accuracy']:.3f} | {v['ratio_to_chance']:.2f} | {v['clips']} |" for k, v in acc.items()]
        lines += ["", "![amount](controls_amount.png)", ""]
    lines += [
        "### Region brush (`--mask`)",
        "",
        f"{br['note']}. Share inside: **{br['share_rendered']:.3f}** as rendered, {br['share_guided']:.3f} from mask "
        f"guidance alone, {br['share_without_brush']:.3f} without a brush; motion kept inside "
        f"**{br['inside_kept']:.2f}**; largest change in the still region {br['still_region_max_change']} "
        f"({br['clips']} clips).",
        "",
        "![brush](controls_brush.png)",
        "",
        "### Drag arrows (`--drag`)",
        "",
        f"{dr['note']}. End-point error **{dr['epe_px']:.2f} px** (max {dr['epe_max_px']:.2f}), "
        f"{dr['epe_guided_px']:.2f} px from drag guidance alone; motion elsewhere **{dr['elsewhere_ratio']:.2f}x** "
        f"the undragged sample's ({dr['clips']} clips).",
        "",
        "![drag](controls_drag.png)",
        "",
        "### Long clips (`--duration`)",
        "",
        f"{lc['note']}. {lc['frames']} frames in {lc['windows']} windows: join step / median step "
        f"**{lc['join_frames']:.2f}** (frames), {lc['join_fields']:.2f} (fields); largest step / median step "
        f"{lc.get('largest_step_frames', float('nan')):.2f} (frames); drift {lc['drift']:.2f}. "
        "Seconds per frame: "
        + ", ".join(f"{k} frames {v:.3f}" for k, v in lc["seconds_per_frame"].items())
        + f". A loop repeated to {lc['loop_frames']} frames (4 s at 24 fps): wrap ratio {lc['loop_wrap_frames']:.2f}.",
        "",
        "![long clip](controls_long_clip.png)",
        "",
    ]
    if "audio" in c:
        au = c["audio"]
        lines += ["### Sound that drives motion (`--audio`)", ""]
        if "skipped" in au:
            lines += [f"Skipped: {au['skipped']}.", ""]
        else:
            lines += [
                f"{au['note']}: accuracy **{au['accuracy']:.3f}** ({au['ratio_to_chance']:.2f}x chance "
                f"{au['chance']:.3f}, {au['clips']} clips), beside text's {au['text_accuracy']:.3f}.",
                "",
            ]
    return lines


def build_report(s: ReportSettings) -> dict:
    """Measure every section, write ``report.md``, ``report.json`` and the figures under ``s.out``; the report."""
    out = s.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    print("[report] stage one on held-out procedural clips", flush=True)
    report["stage1"] = stage_one_section(s, out)
    print("[report] conditioning accuracy", flush=True)
    animator = Animator.from_checkpoints(s.stage2, s.stage1, s.imagebind)
    train, val = read_latents(s.latents), read_latents(s.val_latents)
    classifier = family_classifier(animator, train)
    report["conditioning"] = conditioning_section(animator, classifier, train, val, s)
    print("[report] generated / true motion magnitude", flush=True)
    report["magnitude"] = magnitude_section(animator, val, s)
    print("[report] loops (wrap ratio, motion kept), pop and sharpness at 512 px", flush=True)
    timings, contact_rows = loops_section(animator, s, report)
    print("[report] sampler time per clip", flush=True)
    timing_section(animator, s, report, timings)
    print("[report] motion controls", flush=True)
    report["controls"] = controls_section(animator, classifier, val, s)
    report["controls"]["audio"]["text_accuracy"] = report["conditioning"]["accuracy"]
    write_figures(report, contact_rows, out, s)
    targets = targets_of(report)
    report["targets"] = {k: {"met": bool(ok), "value": v} for k, (ok, v) in targets.items()}
    (out / "report.md").write_text(markdown(report, targets, s))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for k, (ok, v) in targets.items():
        print(f"[report] {k}: {v} -> {'met' if ok else 'MISSED'}")
    print(f"[report] written to {out / 'report.md'}")
    return report
