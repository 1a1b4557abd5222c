#!/usr/bin/env python
"""The demo's report: how well each part of a trained LVMM works, measured, in markdown with plots.

    python tools/report.py --stage1 S1.ckpt --stage2 S2.ckpt --latents outputs/demo/latents/train \\
        --val-latents outputs/demo/latents/val --photos coffee.png rocket.png --out outputs/demo/report

Sections: stage one's PSNR/SSIM against the copy-I_0 and true-field baselines (tools/eval_stage1.py on
held-out procedural clips); stage two's conditioning accuracy (a family classifier fit on decoded
fields of true clips labels text-conditioned samples); the loop seam with and without loop guidance;
sampler time per clip; a contact sheet of generated frames. Each target is marked met or missed.
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
TARGET_SEAM_RATIO = 0.5


def read_latents(folder: Path) -> list[dict]:
    """Every sample of the latent shards in ``folder``: motion (K+1, C, h, w), json, first (H, W, 3)."""
    import numpy as np
    from PIL import Image

    from lvmm.datasets.latent_encoding import iter_tar_samples

    rows = []
    for shard in sorted(folder.glob("latent-*.tar")):
        for key, s in iter_tar_samples(str(shard)):
            rows.append({"key": key, "motion": np.load(io.BytesIO(s["motion.npy"]), allow_pickle=False).astype("float32"),
                         "json": json.loads(s["json"]), "first": np.asarray(Image.open(io.BytesIO(s["first.png"])).convert("RGB"))})
    if not rows:
        raise SystemExit(f"error: {folder}: no latent shards (latent-*.tar)")
    return rows


def decoded_fields(motion, latents, batch: int = 64):
    """Decoded displacement fields in pixels (N, K, 2, h, w) of z_1..z_K."""
    import numpy as np
    import torch

    from lvmm.warp import normalised_to_pixels

    out = []
    with torch.no_grad():
        for i in range(0, len(latents), batch):
            z = torch.from_numpy(np.stack([r["motion"][1:] for r in latents[i:i + batch]]))
            f = motion.decode(z)[:, :, :2]
            out.append(normalised_to_pixels(f, *f.shape[-2:]))
    return torch.cat(out)


def to_pixels(fields):
    from lvmm.warp import normalised_to_pixels

    return normalised_to_pixels(fields[..., :2, :, :].float(), *fields.shape[-2:])


def stage_one_section(args, out: Path) -> dict:
    result_path = out / "stage1_eval.json"
    cmd = [sys.executable, str(ROOT / "tools" / "eval_stage1.py"), "--ckpt", str(args.stage1), "--procedural", str(args.stage1_clips),
           "--out", str(result_path)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(result_path.read_text())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage1", type=Path, required=True)
    p.add_argument("--stage2", type=Path, required=True)
    p.add_argument("--latents", type=Path, required=True, help="latent shards of training clips (fits the family classifier)")
    p.add_argument("--val-latents", type=Path, required=True, help="latent shards of held-out clips (first frames, captions)")
    p.add_argument("--photos", type=Path, nargs="+", required=True, help="held-out photographs for the loop seam")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--imagebind", default=None)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance-scale", type=float, default=4.0)
    p.add_argument("--loop-guidance", type=float, default=1e4)
    p.add_argument("--clips-per-family", type=int, default=8)
    p.add_argument("--stage1-clips", type=int, default=32)
    p.add_argument("--seam-seeds", type=int, default=4)
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
    captions = {f: sorted({r["json"]["caption"] for r in train if r["json"]["label"] == i}) for i, f in enumerate(FAMILIES)}
    options = AnimationOptions(steps=args.steps, guidance_scale=args.guidance_scale)
    predictions, confusion = [], np.zeros((len(FAMILIES), len(FAMILIES)), dtype=int)
    for i, family in enumerate(FAMILIES):
        if not captions[family]:
            continue
        for j in range(args.clips_per_family):
            image = val[(i * args.clips_per_family + j) % len(val)]["first"]
            prompt = captions[family][j % len(captions[family])]
            fields = animator.animate(image, [1000 * i + j], options, prompt=prompt)[0].fields[1:]   # drop the identity frame
            guess = int(classifier.predict(to_pixels(fields)[None])[0])
            confusion[i, guess] += 1
            predictions.append(guess == i)
    accuracy = float(np.mean(predictions)) if predictions else float("nan")
    chance = 1.0 / len(FAMILIES)
    report["conditioning"] = {"accuracy": accuracy, "chance": chance, "ratio_to_chance": accuracy / chance,
                              "classifier_on_true_val_clips": reference, "clips": len(predictions),
                              "guidance_scale": args.guidance_scale, "confusion": confusion.tolist()}

    # 3. loop seam ------------------------------------------------------------------------------
    print("[report] loop seam with and without loop guidance", flush=True)
    seams = {"without": [], "with": []}
    contact_rows, seeds = [], list(range(args.seam_seeds))
    timings = {}
    for photo in args.photos:
        image = read_image(photo)
        for name, mu in (("without", 0.0), ("with", args.loop_guidance)):
            t0 = time.time()
            res = animator.animate(image, seeds, AnimationOptions(steps=args.steps, loop_guidance=mu, guidance_scale=0.0))
            timings.setdefault(f"ddim-{args.steps}{' + loop guidance' if mu else ''}", []).append((time.time() - t0) / len(seeds))
            seams[name] += [r.seam for r in res]
            contact_rows.append((f"{photo.stem} {name} loop guidance", res[0].frames))
    mean = lambda rows, k: float(np.mean([r[k] for r in rows]))
    report["seam"] = {k: {"field": mean(v, "field"), "frames": mean(v, "frames"), "n": len(v)} for k, v in seams.items()}
    report["seam"]["ratio_field"] = report["seam"]["with"]["field"] / max(report["seam"]["without"]["field"], 1e-8)
    report["seam"]["ratio_frames"] = report["seam"]["with"]["frames"] / max(report["seam"]["without"]["frames"], 1e-8)
    report["seam"]["loop_guidance"] = args.loop_guidance

    # 4. sampler time ---------------------------------------------------------------------------
    print("[report] sampler time per clip", flush=True)
    image = read_image(args.photos[0])
    for sampler, steps in (("dpmsolver++", 20),):
        t0 = time.time()
        animator.animate(image, seeds, AnimationOptions(sampler=sampler, steps=steps, guidance_scale=0.0))
        timings[f"{sampler}-{steps}"] = [(time.time() - t0) / len(seeds)]
    report["seconds_per_clip"] = {k: float(np.mean(v)) for k, v in timings.items()}
    report["seconds_per_clip_note"] = f"batches of {len(seeds)} seeds, {torch.get_num_threads()} CPU threads, rendering included"

    # plots and contact sheet ---------------------------------------------------------------------
    sheet = np.concatenate([np.concatenate(list(frames[: min(8, len(frames))]), axis=1) for _, frames in contact_rows], axis=0)
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
    axes[2].bar(["fields", "frames"], [report["seam"]["without"]["field"], report["seam"]["without"]["frames"]], width=-0.35, align="edge", label="without")
    axes[2].bar(["fields", "frames"], [report["seam"]["with"]["field"], report["seam"]["with"]["frames"]], width=0.35, align="edge", label=f"with (mu={args.loop_guidance:g})")
    axes[2].set_title("loop seam (lower loops better)")
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
        "conditioning accuracy at least 3x chance": (accuracy / chance >= TARGET_ACCURACY_OVER_CHANCE, f"{accuracy / chance:.2f}x chance"),
        "loop guidance at least halves the seam (fields)": (report["seam"]["ratio_field"] <= TARGET_SEAM_RATIO, f"ratio {report['seam']['ratio_field']:.2f}"),
    }
    report["targets"] = {k: {"met": bool(ok), "value": v} for k, (ok, v) in targets.items()}
    ib = f"official weights ({args.imagebind})" if args.imagebind else "a small seeded random ImageBind (no official weights given): text conditioning rests on random features"
    lines = ["# LVMM demo report", "", f"Conditioning encoder: {ib}.", "", "## Targets", "", "| target | value | |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v} | {verdict(ok)} |" for k, (ok, v) in targets.items()]
    lines += ["", "## Stage one (held-out photographs)", "",
              f"{s1.get('pairs', '?')} pairs (I_0, I_k) of held-out procedural clips; PSNR over all pairs, mean SSIM.", "",
              "| rendered from | PSNR (dB) | SSIM |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v:.2f} | {s1.get('ssim', {}).get(k, float('nan')):.3f} |" for k, v in s1.get("psnr", {}).items()]
    lines += ["", "End-point error of the field (pixels): " + ", ".join(f"{k} {v:.3f}" for k, v in s1.get("epe_px", {}).items()), "",
              "## Stage two: conditioning", "",
              f"Accuracy of a family classifier on text-conditioned samples: **{accuracy:.3f}** over {len(predictions)} clips "
              f"(chance {chance:.3f}; CFG weight {args.guidance_scale}). The same classifier on decoded fields of true held-out clips: "
              f"{reference:.3f}.", "",
              "## Loop seam", "",
              "Seam = |last - first| / mean |neighbour difference| (0 = no seam).", "",
              "| | fields | frames |", "| --- | --- | --- |",
              f"| without loop guidance | {report['seam']['without']['field']:.3f} | {report['seam']['without']['frames']:.3f} |",
              f"| with loop guidance (mu = {args.loop_guidance:g}) | {report['seam']['with']['field']:.3f} | {report['seam']['with']['frames']:.3f} |",
              "", "## Sampler time per clip", "", "| sampler | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in report["seconds_per_clip"].items()]
    lines += ["", report["seconds_per_clip_note"], "", "![metrics](metrics.png)", "", "![contact sheet](contact_sheet.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for k, (ok, v) in targets.items():
        print(f"[report] {k}: {v} -> {'met' if ok else 'MISSED'}")
    print(f"[report] written to {out / 'report.md'}")
    return report


if __name__ == "__main__":
    main()
