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


def to_pixels(fields):
    from lvmm.warp import normalised_to_pixels

    return normalised_to_pixels(fields[..., :2, :, :].float(), *fields.shape[-2:])


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


def conditioning_section(animator: Animator, train: list[dict], val: list[dict], s: ReportSettings) -> dict:
    """Accuracy of the family classifier on text-conditioned samples, beside chance and its accuracy on true clips."""
    animator = Animator.from_checkpoints(s.stage2, s.stage1, s.imagebind)
    train, val = read_latents(s.latents), read_latents(s.val_latents)
    labels = torch.tensor([r["json"]["label"] for r in train])
    classifier = FamilyClassifier(len(FAMILIES)).fit(decoded_fields(animator.motion, train), labels)
    val_labels = torch.tensor([r["json"]["label"] for r in val])
    reference = classifier.accuracy(decoded_fields(animator.motion, val), val_labels)
    captions = {
        f: sorted({r["json"]["caption"] for r in train if r["json"]["label"] == i}) for i, f in enumerate(FAMILIES)
    }
    options = AnimationOptions(steps=s.steps, guidance_scale=s.guidance_scale)
    predictions, confusion = [], np.zeros((len(FAMILIES), len(FAMILIES)), dtype=int)
    for i, family in enumerate(FAMILIES):
        if not captions[family]:
            continue
        for j in range(s.clips_per_family):
            image = val[(i * s.clips_per_family + j) % len(val)]["first"]
            prompt = captions[family][j % len(captions[family])]
            clip = animator.animate(image, [1000 * i + j], options, prompt=prompt)[0]
            fields = clip.fields[1:]  # drop the identity frame
            guess = int(classifier.predict(to_pixels(fields)[None])[0])
            confusion[i, guess] += 1
            predictions.append(guess == i)
    accuracy = float(np.mean(predictions)) if predictions else float("nan")
    chance = 1.0 / len(FAMILIES)
    return {
        "accuracy": accuracy,
        "chance": chance,
        "ratio_to_chance": accuracy / chance,
        "classifier_on_true_val_clips": reference,
        "clips": len(predictions),
        "guidance_scale": s.guidance_scale,
        "confusion": confusion.tolist(),
    }


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


def write_figures(report: dict, contact_rows: list, out: Path, s: ReportSettings) -> None:
    """The contact sheet, two full-size frames and ``metrics.png`` (stage-one PSNR, confusion, wrap ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lvmm.media import write_image

    s1 = report["stage1"]
    confusion = np.array(report["conditioning"]["confusion"])
    accuracy, chance = report["conditioning"]["accuracy"], report["conditioning"]["chance"]
    thumbs = lambda frames: [at_side(f, 192) for f in frames[: min(8, len(frames))]]
    rows = [np.concatenate(thumbs(frames), axis=1) for _, frames in contact_rows]
    width = max(r.shape[1] for r in rows)  # rows differ in width (photo aspect, frames as played): pad with black
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
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
    }


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
    return "\n".join(lines)


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
    report["conditioning"] = conditioning_section(animator, train, val, s)
    print("[report] generated / true motion magnitude", flush=True)
    report["magnitude"] = magnitude_section(animator, val, s)
    print("[report] loops (wrap ratio, motion kept), pop and sharpness at 512 px", flush=True)
    timings, contact_rows = loops_section(animator, s, report)
    print("[report] sampler time per clip", flush=True)
    timing_section(animator, s, report, timings)
    write_figures(report, contact_rows, out, s)
    targets = targets_of(report)
    report["targets"] = {k: {"met": bool(ok), "value": v} for k, (ok, v) in targets.items()}
    (out / "report.md").write_text(markdown(report, targets, s))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for k, (ok, v) in targets.items():
        print(f"[report] {k}: {v} -> {'met' if ok else 'MISSED'}")
    print(f"[report] written to {out / 'report.md'}")
    return report
