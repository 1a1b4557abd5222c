"""Animate still images with a trained LVMM (docs/method.md, Inference: animating a photo).

    python tools/animate.py --ckpt stage2.ckpt --image photo.jpg --seeds 0-3 --out out/
    python tools/animate.py --model models/lvmm --image photo.jpg --seeds 0-15 --batch-size 4   # a model package
    python tools/animate.py --ckpt stage2.ckpt --image photos/ --prompt "the leaves sway gently" --format mp4 gif
    python tools/animate.py --ckpt stage2.ckpt --image photo.jpg --loop-guidance 2e4 --slow-motion 4 --save-flow
    python tools/animate.py --ckpt stage2.ckpt --image photo.jpg --mask brush.png --drag 40,30,52,30 --loop-guidance 2e4

Stochastic (image only), conditional (``--prompt`` text, ``--audio`` file, or ``--cond-image``), and
seamless loops (``--loop-guidance MU``, acting after ``--loop-start`` of the steps). Motion is sampled at
the working size (``--size``, default: the training size recorded in the checkpoint) and applied to the
photo at its own resolution; outputs have the photo's size. A loop plays frames 1..K-1 (frame K would
repeat frame 1). Prints each clip's wrap ratio (|last - first| / median step of the sequence as it
plays: 1 = seamless, well below 1 = a held frame, above 1 = a jump) for the fields and the frames, and
for clips that start at the photo the pop ratio (step out of the photo / median later step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lvmm.cli import load_pipeline, seeds_argument
from lvmm.diffusion.schedules import SAMPLERS
from lvmm.media import DEFAULT_CRF


def list_images(path: Path) -> list[Path]:
    from lvmm.media import IMAGE_SUFFIXES

    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SystemExit(f"error: {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return images
    if not path.exists():
        raise SystemExit(f"error: {path}: no such file or folder")
    return [path]


def output_stems(images: list[Path]) -> dict[Path, str]:
    """A distinct output name for each image: its stem, or its whole file name where stems collide.

    ``shot.001.png`` keeps ``shot.001`` (the name is never passed through ``with_suffix``, which would
    cut it to ``shot``); ``shot.png`` and ``shot.jpg`` become ``shot.png`` and ``shot.jpg``.
    """
    from collections import Counter

    counts = Counter(p.stem for p in images)
    names = {p: p.stem if counts[p.stem] == 1 else p.name for p in images}
    if len(set(names.values())) != len(images):  # the same file name from two folders: number them
        names = {p: f"{names[p]}-{i}" for i, p in enumerate(images)}
    return names


def output_targets(out: Path, name: str, seed: int, formats: list[str]) -> dict[str, Path]:
    """Where each format of one result goes: ``NAME_seedS.mp4``, ``.gif``, or the folder ``NAME_seedS/`` of PNGs."""
    base = f"{name}_seed{seed}"
    return {fmt: out / base if fmt == "frames" else out / f"{base}.{fmt}" for fmt in formats}


def check_targets(targets: dict[str, Path]) -> None:
    """Refuse, before any sampling, outputs that cannot be written (a folder where a file goes, or the reverse)."""
    for fmt, target in targets.items():
        if fmt == "frames" and target.exists() and not target.is_dir():
            raise SystemExit(f"error: {target}: exists and is not a folder (needed for --format frames)")
        if fmt != "frames" and target.is_dir():
            raise SystemExit(f"error: {target}: is a folder, cannot write the {fmt} there")
        if target.parent.exists() and not target.parent.is_dir():
            raise SystemExit(f"error: {target.parent}: --out is not a folder")


def build_parser() -> argparse.ArgumentParser:
    from lvmm.animation import (
        DEFAULT_GUIDANCE_INTERVAL,
        DEFAULT_GUIDANCE_SCALE,
        DEFAULT_LOOP_GUIDANCE,
        DEFAULT_LOOP_RUSH,
    )

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, type=Path, help="an image file or a folder of images")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="a model package folder (tools/export.py)")
    source.add_argument("--ckpt", default=None, help="stage-two checkpoint (.ckpt or .safetensors)")
    p.add_argument("--stage1-ckpt", default=None, help="stage-one checkpoint (default: the one recorded in --ckpt)")
    p.add_argument("--imagebind", default=None, help="ImageBind weights; default: the seeded random tiny model")
    p.add_argument(
        "--imagebind-config", default=None, help="'huge' or 'tiny' (default: huge with weights, tiny without)"
    )
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", default=None, help="a text prompt")
    cond.add_argument("--audio", default=None, help="an audio file (wav, flac, mp3, or a video's audio track)")
    cond.add_argument(
        "--cond-image", default=None, help="another image whose ImageBind embedding conditions the motion"
    )
    p.add_argument("--num-frames", type=int, default=None, help="generated frames K (default: the training length)")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sampler", default="ddim", choices=SAMPLERS)
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity")
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=DEFAULT_GUIDANCE_SCALE,
        help=f"classifier-free guidance weight w (default {DEFAULT_GUIDANCE_SCALE:g})",
    )
    p.add_argument(
        "--guidance-interval",
        type=float,
        nargs=2,
        metavar=("START", "STOP"),
        default=None,
        help="fraction of the steps where classifier-free guidance acts (default: "
        + " to ".join(f"{x:g}" for x in DEFAULT_GUIDANCE_INTERVAL)
        + ")",
    )
    p.add_argument(
        "--loop-guidance",
        type=float,
        default=0.0,
        help=f"loop self-guidance weight mu (0: no loop; {DEFAULT_LOOP_GUIDANCE:g} suits the tiny demo model)",
    )
    p.add_argument(
        "--loop-start",
        type=float,
        default=None,
        help="fraction of the steps after which loop guidance acts (default 0.3)",
    )
    p.add_argument("--loop-velocity", type=float, default=0.0, help="weight of the loop velocity term")
    p.add_argument(
        "--loop-rush",
        type=float,
        default=DEFAULT_LOOP_RUSH,
        help=f"weight of the loop rush term: a last step larger than the mean step (default {DEFAULT_LOOP_RUSH:g})",
    )
    p.add_argument(
        "--no-loop-closure",
        action="store_true",
        help="keep what loop guidance leaves of D(z_K) - D(z_1) instead of spreading it over the clip",
    )
    p.add_argument("--seeds", type=seeds_argument, default=[0], help="e.g. 0-3 or 1,5,7; one generator per seed")
    p.add_argument("--slow-motion", type=int, default=1, help="N: N - 1 interpolated fields between neighbours")
    p.add_argument("--size", type=int, default=None, help="working short side (default: the training size)")
    p.add_argument(
        "--fit", default="resize", choices=["resize", "pad"], help="how the working image reaches a multiple of 32"
    )
    p.add_argument("--chunk-size", type=int, default=None, help="frames rendered at once (memory only; default 8)")
    p.add_argument("--out", type=Path, default=Path("outputs/animate"), help="output folder")
    p.add_argument("--format", nargs="+", default=["mp4"], choices=["mp4", "gif", "frames"])
    p.add_argument("--crf", type=int, default=DEFAULT_CRF, help="H.264 quality (lower is better)")
    p.add_argument("--save-flow", action="store_true", help="also write the fields (.npy) and a flow colour video")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="seeds sampled at once (default: all); a seed's clip does not depend on it",
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=["fp32", "bf16", "fp16"],
        help="compute dtype (default: bf16 on GPU, fp32 on CPU)",
    )
    p.add_argument("--device", default=None)
    from lvmm.controls import add_arguments

    add_arguments(p)  # --motion-scale, --motion-amount, --mask, --drag, --duration, ...
    return p


def flow_video(fields):
    """Colour images (T, h, w, 3) uint8 of displacement fields (T, 3, h, w) in normalised units."""
    from torchvision.utils import flow_to_image

    from lvmm.warp import normalised_to_pixels

    h, w = fields.shape[-2:]
    return flow_to_image(normalised_to_pixels(fields[:, :2].float(), h, w)).permute(0, 2, 3, 1).numpy()


def main(argv: list[str] | None = None) -> list[dict]:
    """Animate every image once per seed, write the outputs, print a line a clip; the rows of ``animate.json``."""
    args = build_parser().parse_args(argv)
    images = list_images(args.image)
    stems = check_outputs(args, images)
    pipe = load_pipeline(args)
    options = sampling_options(args)
    rows = []
    for path in images:
        for result in animate_image(pipe, path, args, options):
            rows.append(write_result(result, path, stems[path], args))
            print(summary_line(result, rows[-1]))
    (args.out / "animate.json").write_text(json.dumps(rows, indent=2))
    return rows


def check_outputs(args: argparse.Namespace, images: list[Path]) -> dict[Path, str]:
    """The output name of each image, once every output of every seed is known to be writable."""
    if len(set(args.format)) != len(args.format):
        raise SystemExit(f"error: --format lists a format twice: {args.format}")
    stems = output_stems(images)
    for path in images:
        for seed in args.seeds:
            check_targets(output_targets(args.out, stems[path], seed, args.format))
    return stems


def sampling_options(args: argparse.Namespace) -> dict:
    """The keyword options of :class:`lvmm.pipeline.LVMMPipeline` that the command line sets."""
    from lvmm.animation import LOOP_GUIDANCE_START
    from lvmm.controls import options_from_args
    from lvmm.media import MediaError

    options = dict(
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        guidance_scale=args.guidance_scale,
        loop_guidance=args.loop_guidance,
        loop_velocity=args.loop_velocity,
        loop_rush=args.loop_rush,
        loop_closure=not args.no_loop_closure,
        loop_schedule=(LOOP_GUIDANCE_START if args.loop_start is None else args.loop_start, 1.0),
        slow_motion=args.slow_motion,
        size=args.size,
        fit=args.fit,
    )
    if args.guidance_interval is not None:
        options["guidance_interval"] = tuple(args.guidance_interval)
    if args.chunk_size is not None:
        options["chunk_size"] = args.chunk_size
    try:
        options.update(options_from_args(args))
    except (MediaError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    return options


def animate_image(pipe, path: Path, args: argparse.Namespace, options: dict) -> list:
    """The :class:`lvmm.animation.Animation` of each seed for one image; a refusal exits naming the image."""
    from lvmm.animation import AnimationError
    from lvmm.media import MediaError, read_image

    try:
        return pipe(
            read_image(path),
            args.prompt,
            args.audio,
            args.cond_image,
            seeds=args.seeds,
            num_frames=args.num_frames,
            batch_size=args.batch_size,
            progress=True,
            **options,
        ).animations
    except (MediaError, AnimationError) as e:
        raise SystemExit(f"error: {path}: {e}" if str(path) not in str(e) else f"error: {e}") from None


def write_result(result, path: Path, name: str, args: argparse.Namespace) -> dict:
    """Write one clip in every ``--format`` (and its fields with ``--save-flow``); its row of ``animate.json``."""
    import numpy as np

    from lvmm.media import write_video

    outputs = [
        str(write_video(target, result.frames, args.fps, args.crf, fmt=fmt))
        for fmt, target in output_targets(args.out, name, result.seed, args.format).items()
    ]
    if args.save_flow:
        stem = args.out / f"{name}_seed{result.seed}"
        flow_path = stem.parent / f"{stem.name}_flow.npy"
        flow_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(flow_path, result.fields.numpy().astype(np.float32), allow_pickle=False)
        outputs += [
            str(flow_path),
            str(write_video(stem.parent / f"{stem.name}_flow.mp4", flow_video(result.fields), args.fps)),
        ]
    return {
        "image": str(path),
        "seed": result.seed,
        "frames": int(result.frames.shape[0]),
        "size": list(result.frames.shape[1:3]),
        "working_size": list(result.working_size),
        "loop": result.loop,
        **{k: round(v, 4) for k, v in result.metrics.items()},
        "outputs": outputs,
    }


def summary_line(result, row: dict) -> str:
    """One clip in a line: sizes, wrap ratios (and pop ratio) and where it went."""
    pop = f", pop {row['pop_frames']:.2f}" if "pop_frames" in row else ""
    return (
        f"[animate] {Path(row['image']).name} seed {result.seed}: {row['frames']} frames of "
        f"{result.frames.shape[2]}x{result.frames.shape[1]} "
        f"(motion at {result.working_size[1]}x{result.working_size[0]}), wrap ratio fields {row['wrap_field']:.2f} "
        f"frames {row['wrap_frames']:.2f}{pop} -> {', '.join(row['outputs'])}"
    )


def run() -> None:
    """The console script `lvmm-animate`: :func:`main` on the command line (its return value is for callers)."""
    main()


if __name__ == "__main__":
    main()
