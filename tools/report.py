#!/usr/bin/env python
"""The demo's report: how well each part of a trained LVMM works, measured, in markdown with plots.

    python tools/report.py --stage1 S1.ckpt --stage2 S2.ckpt --latents outputs/demo/latents/train \\
        --val-latents outputs/demo/latents/val --photos coffee.png rocket.png --out outputs/demo/report

Sections: stage one's PSNR/SSIM against the copy-I_0 and true-field baselines (tools/eval_stage1.py on
held-out procedural clips); stage two's conditioning accuracy (a family classifier fit on decoded
fields of true clips labels text-conditioned samples); generated / true motion magnitude (overall and
per family); loops as they play (wrap ratio, motion kept) with and without loop guidance, the pop out
of the photo and the sharpness of the frames at 512 px; sampler time per clip and the time of a
40-frame animation of a 1024x768 photo; a contact sheet. Each target is marked met or missed.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_PSNR_GAIN_DB = 3.0
TARGET_ACCURACY_OVER_CHANCE = 3.0
TARGET_WRAP = (0.7, 1.4)  # wrap ratio of a loop as it plays: 1 = seamless
TARGET_MOTION_KEPT = 0.8  # mean motion with loop guidance / without
TARGET_MAGNITUDE = (0.8, 1.25)  # generated / true mean displacement
TARGET_POP = 1.5  # step(0 -> 1) / median later step
TARGET_SHARPNESS = 0.9  # mean gradient magnitude of frames / of the photo, at 512 px
SHARPNESS_SIDE = 512


def read_latents(folder: Path) -> list[dict]:
    """Every sample of the latent shards in ``folder``: motion (K+1, C, h, w), json, first (H, W, 3)."""
    import numpy as np
    from PIL import Image

    from lvmm.datasets.latent_encoding import iter_tar_samples

    rows = []
    for shard in sorted(folder.glob("latent-*.tar")):
        for key, s in iter_tar_samples(str(shard)):
            rows.append(
                {
                    "key": key,
                    "motion": np.load(io.BytesIO(s["motion.npy"]), allow_pickle=False).astype("float32"),
                    "json": json.loads(s["json"]),
                    "first": np.asarray(Image.open(io.BytesIO(s["first.png"])).convert("RGB")),
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


def stage_one_section(args, out: Path) -> dict:
    result_path = out / "stage1_eval.json"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "eval_stage1.py"),
        "--ckpt",
        str(args.stage1),
        "--procedural",
        str(args.stage1_clips),
        "--out",
        str(result_path),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(result_path.read_text())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage1", type=Path, required=True)
    p.add_argument("--stage2", type=Path, required=True)
    p.add_argument(
        "--latents", type=Path, required=True, help="latent shards of training clips (fits the family classifier)"
    )
    p.add_argument(
        "--val-latents", type=Path, required=True, help="latent shards of held-out clips (first frames, captions)"
    )
    p.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        required=True,
        help="held-out photographs (loops, pop, sharpness; resized to a 512-px short side)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--imagebind", default=None)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance-scale", type=float, default=4.0)
    p.add_argument("--loop-guidance", type=float, default=1e4)
    p.add_argument("--clips-per-family", type=int, default=8)
    p.add_argument("--stage1-clips", type=int, default=32)
    p.add_argument(
        "--loop-seeds",
        "--seam-seeds",
        dest="loop_seeds",
        type=int,
        default=4,
        help="seeds per photo for the loop measures",
    )
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from lvmm.animation import AnimationOptions, Animator
    from lvmm.datasets.procedural import FAMILIES
    from lvmm.evaluation.motion_metrics import FamilyClassifier
    from lvmm.media import read_image, write_image

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}

    # 1. stage one ------------------------------------------------------------------------------
    print("[report] stage one on held-out procedural clips", flush=True)
    report["stage1"] = s1 = stage_one_section(args, out)

    # 2. conditioning accuracy -------------------------------------------------------------------
    print("[report] conditioning accuracy", flush=True)
    animator = Animator.from_checkpoints(args.stage2, args.stage1, args.imagebind)
    train, val = read_latents(args.latents), read_latents(args.val_latents)
    labels = torch.tensor([r["json"]["label"] for r in train])
    classifier = FamilyClassifier(len(FAMILIES)).fit(decoded_fields(animator.motion, train), labels)
    val_labels = torch.tensor([r["json"]["label"] for r in val])
    reference = classifier.accuracy(decoded_fields(animator.motion, val), val_labels)
    captions = {
        f: sorted({r["json"]["caption"] for r in train if r["json"]["label"] == i}) for i, f in enumerate(FAMILIES)
    }
    options = AnimationOptions(steps=args.steps, guidance_scale=args.guidance_scale)
    predictions, confusion = [], np.zeros((len(FAMILIES), len(FAMILIES)), dtype=int)
    for i, family in enumerate(FAMILIES):
        if not captions[family]:
            continue
        for j in range(args.clips_per_family):
            image = val[(i * args.clips_per_family + j) % len(val)]["first"]
            prompt = captions[family][j % len(captions[family])]
            fields = animator.animate(image, [1000 * i + j], options, prompt=prompt)[0].fields[
                1:
            ]  # drop the identity frame
            guess = int(classifier.predict(to_pixels(fields)[None])[0])
            confusion[i, guess] += 1
            predictions.append(guess == i)
    accuracy = float(np.mean(predictions)) if predictions else float("nan")
    chance = 1.0 / len(FAMILIES)
    report["conditioning"] = {
        "accuracy": accuracy,
        "chance": chance,
        "ratio_to_chance": accuracy / chance,
        "classifier_on_true_val_clips": reference,
        "clips": len(predictions),
        "guidance_scale": args.guidance_scale,
        "confusion": confusion.tolist(),
    }

    # 3. motion magnitude: generated / true, from the same first frames and captions -----------------
    print("[report] generated / true motion magnitude", flush=True)
    from lvmm.evaluation.motion_metrics import mean_magnitude, sharpness

    true_px = decoded_fields(animator.motion, val)  # (N, K, 2, h, w)
    per_family: dict = {}
    plain = AnimationOptions(steps=args.steps)  # what animate gives: the default guidance weight
    unguided = AnimationOptions(steps=args.steps, guidance_scale=0.0)
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
    report["magnitude"] = {
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

    # 4. loops as they play, pop and sharpness at 512 px ------------------------------------------
    print("[report] loops (wrap ratio, motion kept), pop and sharpness at 512 px", flush=True)
    import torch.nn.functional as F

    from lvmm.media import to_float, to_uint8
    from lvmm.warp import normalised_to_pixels

    def at_side(image, side):
        h, w = image.shape[:2]
        size = (side, round(w * side / h / 2) * 2) if h <= w else (round(h * side / w / 2) * 2, side)
        x = F.interpolate(to_float(image)[None], size=size, mode="bicubic", antialias=True, align_corners=False)
        return np.ascontiguousarray(to_uint8(x.clamp(0, 1))[0])

    loops = {"without": [], "with": []}
    contact_rows, seeds = [], list(range(args.loop_seeds))
    timings, magnitude, change, pops, sharp = {}, {"without": [], "with": []}, {"without": [], "with": []}, [], []
    for photo in args.photos:
        image = at_side(read_image(photo), SHARPNESS_SIDE)
        photo_sharpness = sharpness(image)
        for name, mu in (("without", 0.0), ("with", args.loop_guidance)):
            t0 = time.time()
            res = animator.animate(image, seeds, AnimationOptions(steps=args.steps, loop_guidance=mu))
            timings.setdefault(f"ddim-{args.steps}{' + loop guidance' if mu else ''}", []).append(
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
    report["loops"]["loop_guidance"] = args.loop_guidance
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

    # 4. sampler time ---------------------------------------------------------------------------
    print("[report] sampler time per clip", flush=True)
    image = read_image(args.photos[0])
    for sampler, steps in (("dpmsolver++", 20),):
        t0 = time.time()
        animator.animate(image, seeds, AnimationOptions(sampler=sampler, steps=steps))
        timings[f"{sampler}-{steps}"] = [(time.time() - t0) / len(seeds)]
    big = at_side(image, 768)  # 1024 x 768
    t0 = time.time()
    clip40 = animator.animate(big, [0], AnimationOptions(steps=args.steps, slow_motion=5))[0]
    report["forty_frames_1024x768"] = {
        "seconds": time.time() - t0,
        "frames": int(clip40.frames.shape[0]),
        "size": list(clip40.frames.shape[1:3]),
        "note": f"DDIM-{args.steps}, K = 8 with slow motion x5 (I_0 + 40 frames), one seed",
    }
    report["seconds_per_clip"] = {k: float(np.mean(v)) for k, v in timings.items()}
    report["seconds_per_clip_note"] = (
        f"batches of {len(seeds)} seeds, {torch.get_num_threads()} CPU threads, rendering included"
    )

    # plots and contact sheet ---------------------------------------------------------------------
    thumbs = lambda frames: [at_side(f, 192) for f in frames[: min(8, len(frames))]]
    rows = [np.concatenate(thumbs(frames), axis=1) for _, frames in contact_rows]
    width = max(r.shape[1] for r in rows)  # rows differ in width (photo aspect, frames as played): pad with black
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    for name, frames in contact_rows[:2]:  # full-size frames to look at: the photo and generated frame 4
        write_image(out / f"frame4_{name.split()[0]}_{name.split()[1]}.png", frames[min(4, len(frames) - 1)])
    write_image(out / "contact_sheet.png", sheet)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    psnr = {k: v for k, v in s1.get("psnr", {}).items()}
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
        label=f"with (mu={args.loop_guidance:g})",
    )
    axes[2].axhspan(*TARGET_WRAP, color="tab:green", alpha=0.15)
    axes[2].set_title("wrap ratio as played (1 = seamless)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)

    # markdown ----------------------------------------------------------------------------------
    verdict = lambda ok: "**met**" if ok else "**missed**"
    gain = s1.get("psnr_gain_over_copy_db", float("nan"))
    vae_loss = s1.get("vae_psnr_loss_db", float("nan"))
    targets = {
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
    report["targets"] = {k: {"met": bool(ok), "value": v} for k, (ok, v) in targets.items()}
    ib = (
        f"official weights ({args.imagebind})"
        if args.imagebind
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
        f"Accuracy of a family classifier on text-conditioned samples: **{accuracy:.3f}** over {len(predictions)} clips "
        f"(chance {chance:.3f}; CFG weight {args.guidance_scale}). The same classifier on decoded fields of true held-out clips: "
        f"{reference:.3f}.",
        "",
        "## Motion magnitude: generated / true",
        "",
        f"Mean displacement of generated fields / of the decoded true fields, {report['magnitude']['clips']} held-out clips "
        f"({report['magnitude']['note']}): **{report['magnitude']['ratio']:.2f}** "
        f"({report['magnitude']['generated_px']:.3f} / {report['magnitude']['true_px']:.3f} px); without classifier-free "
        f"guidance (w = 0) {report['magnitude']['ratio_without_cfg']:.2f}: the model alone regresses towards small motion.",
        "",
        "| family | generated / true | generated px | true px | clips |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {f} | {'n/a (still)' if v['ratio'] is None else format(v['ratio'], '.2f')} | {v['generated_px']:.3f} | {v['true_px']:.3f} | {v['clips']} |"
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
        f"| with loop guidance (mu = {args.loop_guidance:g}) | {lp['with']['wrap_field']:.3f} | {lp['with']['wrap_frames']:.3f} |",
        "",
        f"Motion kept with loop guidance: fields {lp['motion_kept_field']:.2f}, frames {lp['motion_kept_frames']:.2f}.",
        "",
        "## Frames at the photo's resolution",
        "",
        f"Photos at a {SHARPNESS_SIDE}-px short side; motion at the working size, fields applied to the photo itself. "
        f"Pop (step out of the photo / median later step, {report['pop']['n']} clips): mean {report['pop']['mean']:.2f}, "
        f"max {report['pop']['max']:.2f}. Sharpness (mean gradient magnitude of frames 1..K / the photo's): "
        f"mean {report['sharpness']['ratio']:.3f}, min {report['sharpness']['min']:.3f}.",
        "",
        f"One 40-frame animation of a {report['forty_frames_1024x768']['size'][1]}x{report['forty_frames_1024x768']['size'][0]} photo "
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
    (out / "report.md").write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for k, (ok, v) in targets.items():
        print(f"[report] {k}: {v} -> {'met' if ok else 'MISSED'}")
    print(f"[report] written to {out / 'report.md'}")
    return report


if __name__ == "__main__":
    main()
