"""A benchmark protocol over generated videos and reference shards: FVD, FID on frames, LPIPS, PSNR, SSIM.

:func:`evaluate` runs it from resolved options (``lvmm-evaluate``, :mod:`lvmm.cli.evaluate`, reads them from
flags and a config file) and returns the report; :func:`protocol_text`, :func:`markdown_table` and
:func:`write_report` show and store it. docs/evaluation.md describes the protocols and the weights.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lvmm import cli
from lvmm.checkpoint import CheckpointError, file_sha256
from lvmm.datasets.readers import npy_from_bytes
from lvmm.evaluation import frechet
from lvmm.evaluation.i3d import load_i3d
from lvmm.evaluation.inception import load_fid_inception
from lvmm.evaluation.lpips import load_lpips
from lvmm.evaluation.protocols import (
    I3D_SIZE,
    INCEPTION_SIZE,
    Protocol,
    ReferenceSelectionError,
    get_protocol,
    keep_reference_sample,
)
from lvmm.evaluation.video_metrics import (
    InsufficientVideosError,
    PairedScores,
    VideoSetFeatures,
    fid,
    fvd,
    grouped_fvd,
    mean_std,
    paired_scores,
)
from lvmm.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, MediaError, atomic_write_bytes, read_image, read_video

ALL_METRICS = ("fvd", "fid", "lpips", "psnr", "ssim")
CONDITIONAL_FVD = {"fvd_class": "class", "fvd_subject": "subject"}  # reported metric -> reference json field
PAIRED_METRICS = ("psnr", "ssim", "lpips")
NPY_SUFFIX = ".npy"
SEED_SUFFIX = re.compile(r"^(?P<key>.+?)[_-]seed(?P<seed>\d+)$")
WEIGHT_OPTIONS = ("i3d", "inception", "lpips_backbone", "lpips_linear")
METRIC_FORMAT = {
    "fvd": "{:.2f}",
    "fvd_class": "{:.2f}",
    "fvd_subject": "{:.2f}",
    "fid": "{:.2f}",
    "lpips": "{:.4f}",
    "psnr": "{:.2f}",
    "ssim": "{:.4f}",
}
METRIC_TITLE = {
    "fvd": "FVD",
    "fvd_class": "class-cond. FVD",
    "fvd_subject": "subject-cond. FVD",
    "fid": "FID",
    "lpips": "LPIPS",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
}


class EvaluationError(RuntimeError):
    """An input was refused; the message says which and why."""


def parse_option(parse, text: str | int | None):
    """An option read by one of :mod:`lvmm.cli`'s readers (``parse_size``, ``parse_int_list``), refused as an
    :class:`EvaluationError`."""
    try:
        return parse(text)
    except ValueError as e:
        raise EvaluationError(str(e)) from None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


# ---------------------------------------------------------------------------------- generated set


@dataclass(frozen=True)
class GeneratedVideo:
    path: Path
    key: str
    seed: int | None


def list_generated(folder: str | Path) -> list[GeneratedVideo]:
    """The videos of a generated folder, sorted by name, with the reference key and seed of each."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: generated folder not found")
    videos = []
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        is_frames = path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
        if not (is_frames or suffix in VIDEO_SUFFIXES or suffix == NPY_SUFFIX):
            continue
        stem = path.name if path.is_dir() else path.stem
        match = SEED_SUFFIX.match(stem)
        videos.append(GeneratedVideo(path, match["key"] if match else stem, int(match["seed"]) if match else None))
    if not videos:
        raise EvaluationError(f"{folder}: no videos ({', '.join(VIDEO_SUFFIXES)}, {NPY_SUFFIX} or frame folders)")
    return videos


def read_generated(path: Path) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` frames of one generated video."""
    try:
        if path.is_dir():
            frames = [read_image(p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
            return np.stack(frames)
        if path.suffix.lower() == NPY_SUFFIX:
            return _check_array(np.load(path, allow_pickle=False), str(path))
        return read_video(path)[0]
    except MediaError as e:
        raise EvaluationError(str(e)) from e
    except ValueError as e:  # a pickled or malformed .npy, or frames of unequal sizes
        raise EvaluationError(f"{path}: cannot read frames ({e})") from e


def _check_array(frames: np.ndarray, name: str) -> np.ndarray:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise EvaluationError(f"{name}: expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def check_generated(videos: list[GeneratedVideo], protocol: Protocol) -> Protocol:
    """Refuse generated videos of the wrong size or length; fill a custom protocol's size/length."""
    for video in videos:
        frames = read_generated(video.path)
        t, h, w, _ = frames.shape
        if protocol.height is None:  # custom protocol: the first video sets the standard
            protocol = protocol.replace(height=h, width=w)
        if protocol.num_frames is None:
            protocol = protocol.replace(num_frames=t)
        if (h, w) != (protocol.height, protocol.width):
            raise EvaluationError(
                f"{video.path}: generated video is {h}x{w}, protocol '{protocol.name}' needs "
                f"{protocol.height}x{protocol.width}; "
                "generate at the protocol's size (evaluation never resizes generated videos)"
            )
        if t != protocol.num_frames:
            raise EvaluationError(
                f"{video.path}: generated video has {t} frames, protocol '{protocol.name}' needs {protocol.num_frames}"
            )
    if protocol.fvd_frames is not None and protocol.fvd_frames > protocol.num_frames:
        raise EvaluationError(
            f"FVD on {protocol.fvd_frames} frames needs videos of at least that length, not {protocol.num_frames}"
        )
    return protocol


# ---------------------------------------------------------------------------------- reference set


def expand_shards(patterns: list[str]) -> list[str]:
    """Brace patterns (``name-{000000..000009}.tar``), globs and plain paths -> existing shard files."""
    from lvmm.datasets.readers import expand_shards as parse_spec

    if not patterns:
        raise EvaluationError("no reference shards given (--reference)")
    try:
        return parse_spec([str(p) for p in patterns])
    except (FileNotFoundError, ValueError) as e:
        raise EvaluationError(f"reference shards: {e}") from None


def iter_reference(
    urls: list[str], split: str | None, subjects: list[str] | None, counts: dict
) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield ``(key, frames uint8 (T, H, W, 3), json meta)`` of the reference samples that count."""
    import webdataset as wds

    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    for sample in dataset:
        key = sample["__key__"]
        meta = json.loads(sample["json"]) if "json" in sample else {}
        try:
            if not keep_reference_sample(meta, split, subjects, key):
                counts["skipped"] += 1
                continue
        except ReferenceSelectionError as e:
            raise EvaluationError(str(e)) from e
        where = f"{sample.get('__url__', '?')} [{key}]"
        if "frames.npy" in sample:
            frames = _check_array(npy_from_bytes(sample["frames.npy"]), where)
        elif "mp4" in sample:
            try:
                frames = read_video(sample["mp4"])[0]
            except MediaError as e:
                raise EvaluationError(f"{where}: {e}") from e
        else:
            raise EvaluationError(f"{where}: reference sample has neither 'mp4' nor 'frames.npy'")
        yield key, frames, meta


def conform_reference(frames: np.ndarray, protocol: Protocol, key: str, notes: dict) -> np.ndarray:
    """Bring a reference clip to the protocol's size (bilinear, antialiased) and length (evenly spaced frames)."""
    t, h, w, _ = frames.shape
    if t < protocol.num_frames:
        raise EvaluationError(f"reference sample {key} has {t} frames, fewer than the protocol's {protocol.num_frames}")
    if t > protocol.num_frames:
        notes["subsampled"] += 1
        if protocol.reference_sampling == "random_sorted":
            import random

            from lvmm.datasets.readers import choose_frames, stable_seed

            idx = choose_frames(
                t, protocol.num_frames, "random_sorted", random.Random(stable_seed("reference", key)), True
            )
        else:
            idx = np.linspace(0, t - 1, protocol.num_frames).round().astype(int)
        frames = frames[idx]
    if (h, w) != (protocol.height, protocol.width):
        notes["resized_from"].add(f"{h}x{w}")
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        x = F.interpolate(
            x, size=(protocol.height, protocol.width), mode="bilinear", align_corners=False, antialias=True
        )
        frames = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return frames


# ------------------------------------------------------------------------------------- evaluation


def choose_metrics(args: argparse.Namespace) -> tuple[list[str], bool]:
    """The metrics to compute and whether they were asked for explicitly."""
    if args.metrics:
        metrics = [m.strip().lower() for m in str(args.metrics).split(",") if m.strip()]
        unknown = sorted(set(metrics) - set(ALL_METRICS))
        if unknown:
            raise EvaluationError(f"unknown metrics {unknown} (known: {', '.join(ALL_METRICS)})")
        needs = {"fvd": ["i3d"], "fid": ["inception"], "lpips": ["lpips_backbone", "lpips_linear"]}
        for metric in metrics:
            missing = [f"--{w.replace('_', '-')}" for w in needs.get(metric, []) if not getattr(args, w)]
            if missing:
                raise EvaluationError(f"{metric.upper()} needs weights: pass {' and '.join(missing)}")
        return metrics, True
    metrics = ["psnr", "ssim"]
    if args.i3d:
        metrics.insert(0, "fvd")
    if args.inception:
        metrics.insert(1 if args.i3d else 0, "fid")
    if args.lpips_backbone and args.lpips_linear:
        metrics.append("lpips")
    return metrics, False


def resolve_protocol(args: argparse.Namespace) -> Protocol:
    """The named protocol with the overrides the options give (size, frames, FVD clip length, network input sizes)."""
    try:
        protocol = get_protocol(args.protocol)
    except ValueError as e:
        raise EvaluationError(str(e)) from e
    size = parse_option(cli.parse_size, args.size)
    return protocol.replace(
        height=size and size[0],
        width=size and size[1],
        num_frames=args.frames,
        fvd_frames=args.fvd_frames,
        i3d_size=args.i3d_size,
        inception_size=args.inception_size,
    )


@dataclass
class _Networks:
    """The feature networks a run needs (None where its metrics do not), and how they are batched."""

    i3d: Any
    inception: Any
    lpips: Any
    batch_size: int
    frame_batch_size: int
    device: torch.device
    protocol: Protocol

    def features(self, i3d: bool = True, inception: bool = True) -> VideoSetFeatures:
        """An empty feature set over these networks (either can be left out)."""
        return VideoSetFeatures(
            i3d=self.i3d if i3d else None,
            inception=self.inception if inception else None,
            batch_size=self.batch_size,
            frame_batch_size=self.frame_batch_size,
            device=self.device,
            i3d_size=self.protocol.i3d_size,
            fvd_frames=self.protocol.fvd_frames,
        )


def _load_networks(args: argparse.Namespace, metrics: list[str], protocol: Protocol, device) -> _Networks:
    try:
        i3d = load_i3d(args.i3d, map_location=device) if "fvd" in metrics else None
        inception = (
            load_fid_inception(args.inception, input_size=protocol.inception_size, map_location=device)
            if "fid" in metrics
            else None
        )
        lpips = load_lpips(args.lpips_backbone, args.lpips_linear, map_location=device) if "lpips" in metrics else None
    except CheckpointError as e:
        raise EvaluationError(str(e)) from e
    return _Networks(i3d, inception, lpips, args.batch_size, args.frame_batch_size, device, protocol)


def _generated_features(generated: list[GeneratedVideo], nets: _Networks):
    """Inception features of all generated frames (FID) and I3D features per seed (FVD), with each seed's keys."""
    gen_features = nets.features(i3d=False)
    seed_sets: dict[int | None, VideoSetFeatures] = {}
    seed_keys: dict[int | None, list[str]] = {}
    if nets.i3d is not None or nets.inception is not None:
        for video in generated:
            frames = read_generated(video.path)
            gen_features.add(frames)
            if nets.i3d is not None:
                seed_sets.setdefault(video.seed, nets.features(inception=False)).add(frames)
                seed_keys.setdefault(video.seed, []).append(video.key)
    return gen_features, seed_sets, seed_keys


def _fvd_results(metrics: list[str], seed_sets, seed_keys, ref_i3d, ref_meta: dict, ref_order: list[str]):
    """FVD per seed and its mean +- std, and the class- and subject-conditional FVDs the reference json allows.

    Adds the conditional FVDs to ``metrics`` after ``fvd``; returns (results, stds, per_seed, groups)."""
    results, stds, per_seed, groups = {}, {}, {}, {}
    feats = {seed: s.finish()["i3d"] for seed, s in seed_sets.items()}
    per_seed["fvd"] = {str(seed): fvd(f, ref_i3d) for seed, f in feats.items()}
    results["fvd"], stds["fvd"] = mean_std(list(per_seed["fvd"].values()))
    for name, field in CONDITIONAL_FVD.items():
        ref_groups = [ref_meta[k].get(field) for k in ref_order]
        if all(g is None for g in ref_groups):
            continue  # the reference json does not say: no such conditional FVD
        runs = {
            str(seed): grouped_fvd(f, [ref_meta.get(k, {}).get(field) for k in seed_keys[seed]], ref_i3d, ref_groups)
            for seed, f in feats.items()
        }
        values = {seed: r["fvd"] for seed, r in runs.items() if r["fvd"] is not None}
        if values:
            per_seed[name] = values
            results[name], stds[name] = mean_std(list(values.values()))
            first = next(iter(runs.values()))
            groups[name] = {
                "field": field,
                "groups": len(first["groups"]),
                "skipped": [str(g) for g in first["skipped"]],
            }
            metrics.insert(metrics.index("fvd") + 1 + len([m for m in metrics if m in CONDITIONAL_FVD]), name)
    return results, stds, per_seed, groups


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by resolved options; returns the report as a dict."""
    if not args.generated:
        raise EvaluationError("no generated folder given (--generated)")
    if not args.reference:
        raise EvaluationError("no reference shards given (--reference)")
    protocol = resolve_protocol(args)
    metrics, explicit = choose_metrics(args)
    subjects = [s.strip() for s in str(args.test_subjects).split(",") if s.strip()] if args.test_subjects else None
    device = pick_device(args.device)
    started = time.time()

    urls = expand_shards(args.reference)  # fail on a missing shard before any heavy work
    generated = list_generated(args.generated)
    protocol = check_generated(generated, protocol)
    if "fvd" in metrics and len(generated) < frechet.MIN_SAMPLES:
        raise EvaluationError(
            f"FVD needs at least {frechet.MIN_SAMPLES} generated videos, {args.generated} has {len(generated)}"
        )
    by_key: dict[str, list[GeneratedVideo]] = {}
    for video in generated:
        by_key.setdefault(video.key, []).append(video)

    nets = _load_networks(args, metrics, protocol, device)
    # FVD per seed (I3D features per video, in order, with the video's key); FID on the pooled frames
    gen_features, seed_sets, seed_keys = _generated_features(generated, nets)

    split = protocol.reference_split
    counts = {"skipped": 0}
    notes = {"subsampled": 0, "resized_from": set()}
    ref_features = nets.features()
    pairs = PairedScores()
    want_paired = [m for m in metrics if m in PAIRED_METRICS]
    ref_meta: dict[str, dict] = {}
    ref_order: list[str] = []
    for key, frames, meta in iter_reference(urls, split, subjects, counts):
        frames = conform_reference(frames, protocol, key, notes)
        ref_features.add(frames)
        ref_meta[key] = meta
        ref_order.append(key)
        for video in by_key.get(key, []) if want_paired else []:
            scores = paired_scores(read_generated(video.path), frames, nets.lpips, protocol.paired_from_frame, device)
            pairs.add({m: scores[m] for m in want_paired})
    if ref_features.count == 0:
        raise EvaluationError(
            f"no reference samples selected from {len(urls)} shard(s) ({counts['skipped']} skipped by the split)"
        )

    results: dict[str, float] = {}
    stds: dict[str, float] = {}
    per_seed: dict[str, dict] = {}
    groups: dict[str, dict] = {}
    gen, ref = gen_features.finish(), ref_features.finish()
    try:
        if "fvd" in metrics:
            results, stds, per_seed, groups = _fvd_results(
                metrics, seed_sets, seed_keys, ref["i3d"], ref_meta, ref_order
            )
        if "fid" in metrics:
            results["fid"] = fid(gen["frames"], ref["frames"])
    except InsufficientVideosError as e:
        raise EvaluationError(str(e)) from e
    if want_paired and pairs.videos == 0:
        if explicit:
            raise EvaluationError(
                f"{', '.join(m.upper() for m in want_paired)} need generated videos named after reference keys "
                "(KEY.mp4 or KEY_seedN.mp4); none matched"
            )
        metrics = [m for m in metrics if m not in PAIRED_METRICS]
    if not metrics:
        raise EvaluationError(
            "nothing to evaluate: pass --i3d and/or --inception weights, or name generated files "
            "after reference keys (KEY.mp4, KEY_seedN.mp4) for PSNR/SSIM"
        )
    results.update(pairs.means())

    seeds = parse_option(cli.parse_int_list, args.seeds)
    named_seeds = sorted({v.seed for v in generated if v.seed is not None})
    report = {
        "protocol": protocol.as_dict(),
        "generated": {
            "folder": str(args.generated),
            "videos": len(generated),
            "height": protocol.height,
            "width": protocol.width,
            "frames": protocol.num_frames,
            "paired_videos": pairs.videos,
            "seeds": seeds if seeds is not None else (named_seeds or None),
            "seeds_from": "options" if seeds is not None else ("file names" if named_seeds else None),
        },
        "reference": {
            "shards": urls,
            "videos": ref_features.count,
            "skipped_by_split": counts["skipped"],
            "split": split,
            "test_subjects": subjects,
            "subsampled_to_protocol_length": notes["subsampled"],
            "resized_from": sorted(notes["resized_from"]),
        },
        "features": {
            "fvd": {
                "network": "I3D Kinetics-400, logits before softmax averaged over time",
                "input": f"{protocol.i3d_size}x{protocol.i3d_size}, [-1, 1]",
                "clip_frames": protocol.fvd_frames or protocol.num_frames,
            }
            if "fvd" in metrics
            else None,
            "fid": {
                "network": "FID Inception-v3, 2048-d pool",
                "input": f"{protocol.inception_size}x{protocol.inception_size}",
                "frames": [gen["frames"].count, ref["frames"].count],
            }
            if "fid" in metrics
            else None,
            "paired": {"frames_from": protocol.paired_from_frame, "frames": pairs.frames} if pairs.videos else None,
        },
        "weights": {
            name: {"path": str(getattr(args, name)), "sha256": file_sha256(getattr(args, name))}
            for name in WEIGHT_OPTIONS
            if getattr(args, name) and _weights_used(name, metrics)
        },
        "metrics": {m: results[m] for m in metrics if m in results},
        "metrics_std": {m: stds[m] for m in stds if m in results},
        "per_seed": per_seed,
        "conditional_groups": groups,
        "device": str(device),
        "seconds": round(time.time() - started, 1),
    }
    return report


def _weights_used(name: str, metrics: list[str]) -> bool:
    return {"i3d": "fvd", "inception": "fid"}.get(name, "lpips") in metrics


# ----------------------------------------------------------------------------------------- report


def _seeds_text(seeds: list[int] | None) -> str:
    if not seeds:
        return "not stated"
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def protocol_text(report: dict) -> str:
    """The protocol in a few human-readable lines."""
    p, g, r, f = report["protocol"], report["generated"], report["reference"], report["features"]
    lines = [f"protocol: {p['name']} ({p['description']})"]
    seeds_from = f" (from {g['seeds_from']})" if g["seeds_from"] else ""
    lines.append(
        f"  generated: {g['videos']} videos of {g['frames']} frames at {g['height']}x{g['width']} in {g['folder']}; "
        f"seeds {_seeds_text(g['seeds'])}{seeds_from}"
    )
    selection = f"split '{r['split']}'" if r["split"] else "all samples"
    if r["test_subjects"]:
        selection += f", subjects {','.join(r['test_subjects'])}"
    ref = (
        f"  reference: {r['videos']} videos from {len(r['shards'])} shard(s), {selection} "
        f"({r['skipped_by_split']} skipped)"
    )
    if r["resized_from"]:
        ref += f"; resized from {', '.join(r['resized_from'])}"
    if r["subsampled_to_protocol_length"]:
        ref += f"; {r['subsampled_to_protocol_length']} longer clips brought to {g['frames']} frames"
    lines.append(ref)
    if r["subsampled_to_protocol_length"]:
        lines.append(f"  reference frames: {p.get('reference_sampling', 'even')}")
    if f["fvd"]:
        lines.append(
            f"  FVD: {f['fvd']['network']}; {f['fvd']['clip_frames']}-frame clips at {f['fvd']['input']}; "
            f"per seed, mean +- std over {len(report.get('per_seed', {}).get('fvd', {}))} seed(s)"
        )
        for name, grp in report.get("conditional_groups", {}).items():
            skipped = f", {len(grp['skipped'])} skipped (under 2 videos)" if grp["skipped"] else ""
            lines.append(
                f"  {METRIC_TITLE[name]}: FVD within each {grp['field']} ({grp['groups']} groups{skipped}), averaged"
            )
    if f["fid"]:
        lines.append(
            f"  FID: {f['fid']['network']}; {f['fid']['frames'][0]} vs {f['fid']['frames'][1]} frames at "
            f"{f['fid']['input']}"
        )
    if f["paired"]:
        lines.append(
            f"  PSNR/SSIM/LPIPS: {g['paired_videos']} paired videos, frames {f['paired']['frames_from']} onwards "
            f"({f['paired']['frames']} frames)"
        )
    for name, w in report["weights"].items():
        lines.append(f"  weights {name}: {w['path']} (sha256 {w['sha256']})")
    for metric, key, standard in (("fvd", "i3d_size", I3D_SIZE), ("fid", "inception_size", INCEPTION_SIZE)):
        if f[metric] and p[key] != standard:
            lines.append(
                f"  NOTE: {metric.upper()} input {p[key]} is not the standard {standard}; not comparable with "
                "published values"
            )
    return "\n".join(lines)


def markdown_table(report: dict) -> str:
    """One-row markdown table: the protocol's key facts beside the numbers."""
    g, r = report["generated"], report["reference"]
    names = list(report["metrics"])
    head = ["Protocol", "Generated", "Reference", "Frames", "Resolution", "Seeds"] + [METRIC_TITLE[m] for m in names]
    row = [
        report["protocol"]["name"],
        str(g["videos"]),
        str(r["videos"]),
        str(g["frames"]),
        f"{g['height']}x{g['width']}",
        _seeds_text(g["seeds"]),
    ] + [_value(report, m) for m in names]
    return (
        "\n".join(
            ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|", "| " + " | ".join(row) + " |"]
        )
        + "\n"
    )


def _value(report: dict, metric: str) -> str:
    text = METRIC_FORMAT[metric].format(report["metrics"][metric])
    std = report.get("metrics_std", {}).get(metric)
    seeds = len(report.get("per_seed", {}).get(metric, {}))
    return f"{text} ± {METRIC_FORMAT[metric].format(std)}" if std is not None and seeds > 1 else text


def write_report(report: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    json_path = atomic_write_bytes(out / "metrics.json", (json.dumps(report, indent=2) + "\n").encode())
    md = f"{markdown_table(report)}\n```\n{protocol_text(report)}\n```\n"
    md_path = atomic_write_bytes(out / "metrics.md", md.encode())
    return json_path, md_path
