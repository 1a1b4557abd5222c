"""Benchmark generation: one video per test sample, from its first frame and its class or caption.

Runs on Lightning's predict loop, so ``devices``/``num_nodes`` shard the test set over GPUs and nodes:
rank r of W takes samples r, r + W, ... of the (sorted) test set. Each video is written as
``KEY_seed<S>.mp4`` (or ``.npy``, uint8 T x H x W x 3) under a temporary name and renamed when complete,
so a finished file is a finished video: a rerun skips the samples whose every seed is already there.
``generate.json`` records the settings; a rerun with other settings is refused.

A generated video is I_0 (the test sample's first frame, at the protocol's size) followed by the
K = ``num_frames - 1`` frames rendered from the sampled motion: 40 frames for LFDM's protocol.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import IterableDataset

from lvmm.animation import AnimationOptions, Animator
from lvmm.media import atomic_write_bytes, write_video

FORMATS = ("mp4", "npy")
SETTINGS = "generate.json"


def output_path(out: Path, key: str, seed: int, fmt: str) -> Path:
    return out / f"{key}_seed{seed}.{fmt}"


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8, bilinear with antialiasing (as evaluation resizes references)."""
    if frame.shape[:2] == (height, width):
        return frame
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def list_test_samples(shards: list[str], split: str | None, subjects: list[str] | None = None) -> list[tuple[str, str]]:
    """(shard, key) of the test samples (json ``split`` / ``subject``,
    :func:`lvmm.evaluation.protocols.keep_reference_sample`)."""
    from lvmm.datasets.latent_encoding import iter_tar_samples
    from lvmm.evaluation.protocols import keep_reference_sample

    chosen = []
    for shard in shards:
        for key, raw in iter_tar_samples(shard):
            meta = json.loads(raw["json"]) if "json" in raw else {}
            if keep_reference_sample(meta, split, subjects, key):
                chosen.append((shard, key))
    return sorted(chosen, key=lambda sk: sk[1])


class TestSamples(IterableDataset):
    """This rank's test samples (``samples[rank::world]``), first frames resized, finished keys left out."""

    def __init__(
        self,
        samples: list[tuple[str, str]],
        size: tuple[int, int],
        done: set[str] = frozenset(),
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.samples, self.size, self.done = samples, size, set(done)
        self.rank, self.world_size = rank, world_size

    def __iter__(self):
        from lvmm.datasets.latent_encoding import iter_tar_samples
        from lvmm.datasets.readers import decode, dist_info

        rank, world = dist_info(self.rank, self.world_size)
        mine = [sk for sk in self.samples[rank::world] if sk[1] not in self.done]
        by_shard: dict[str, set[str]] = {}
        for shard, key in mine:
            by_shard.setdefault(shard, set()).add(key)
        for shard, keys in by_shard.items():
            for key, raw in iter_tar_samples(shard):
                if key in keys:
                    sample = decode(dict(raw, __key__=key))
                    first = resize_frame(sample.frames(1)[0], *self.size)
                    # a plain dict: Lightning moves batches to the device through their collections
                    yield {"key": key, "first": first, "caption": sample.caption, "meta": sample.meta}


class VideoGeneration(pl.LightningModule):
    """Animates each test sample once per seed (``predict_step``); the networks are built on the rank's device."""

    def __init__(
        self,
        stage_two: str,
        seeds: list[int],
        options: AnimationOptions,
        stage_one: str | None = None,
        imagebind: str | None = None,
        imagebind_config: str | None = None,
        condition: str = "caption",
    ):
        super().__init__()
        self.stage_two, self.stage_one, self.seeds, self.options = stage_two, stage_one, list(seeds), options
        self.imagebind, self.imagebind_config, self.condition = imagebind, imagebind_config, condition
        self.animator: Animator | None = None

    def on_predict_start(self) -> None:
        self.animator = Animator.from_checkpoints(
            self.stage_two, self.stage_one, self.imagebind, self.imagebind_config, device=self.device
        )

    def predict_step(self, batch: list[dict], batch_idx: int = 0) -> list[dict]:
        """``batch``: test samples ``{"key", "first" (H, W, 3) uint8, "caption", "meta"}``; one video per seed each."""
        out = []
        for sample in batch:
            prompt = sample["caption"] if self.condition == "caption" and sample["caption"] else None
            for anim in self.animator.animate(sample["first"], self.seeds, self.options, prompt=prompt):
                out.append({"key": sample["key"], "seed": anim.seed, "frames": anim.frames})
        return out


class VideoWriter(BasePredictionWriter):
    """Writes every generated video atomically as ``KEY_seed<S>.<fmt>``."""

    def __init__(self, out_dir: str | os.PathLike, fmt: str = "mp4", fps: float = 8.0):
        super().__init__(write_interval="batch")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
        self.out_dir, self.fmt, self.fps = Path(out_dir), fmt, fps
        self.written: list[Path] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for item in prediction:
            path = output_path(self.out_dir, item["key"], item["seed"], self.fmt)
            if self.fmt == "npy":
                buf = io.BytesIO()
                np.save(buf, item["frames"], allow_pickle=False)
                atomic_write_bytes(path, buf.getvalue())
            else:
                write_video(path, item["frames"], self.fps)
            self.written.append(path)


def finished_keys(out: Path, keys: list[str], seeds: list[int], fmt: str) -> set[str]:
    """Keys whose video exists for every seed (files appear only when complete)."""
    return {k for k in keys if all(output_path(out, k, s, fmt).exists() for s in seeds)}


def check_settings(out: Path, settings: dict, overwrite: bool = False) -> None:
    """Record the settings on the first run; refuse to add to videos made with other ones."""
    from lvmm.datasets.manifest import check_settings as differing

    out.mkdir(parents=True, exist_ok=True)
    diff = differing(out / SETTINGS, settings, overwrite)
    if diff:
        raise ValueError(
            f"{out} holds videos generated with other settings ({', '.join(diff)} differ): "
            "use another --out, or --overwrite"
        )


def generate(args) -> dict:
    """Generate one video per test sample and seed, sharded over ranks by Lightning's predict loop; the summary.

    ``args`` holds ``lvmm-generate``'s options (:mod:`lvmm.cli.generate`): ``ckpt``, ``stage1_ckpt``,
    ``reference``, ``out``, ``protocol``, ``size``, ``frames``, ``test_subjects``, ``seeds``, ``condition``,
    ``sampler``, ``steps``, ``eta``, ``guidance_scale``, ``imagebind``, ``imagebind_config``, ``format``, ``fps``,
    ``accelerator``, ``devices``, ``num_nodes`` and ``overwrite``. Videos already written are skipped.
    Raises ValueError (or FileNotFoundError for missing shards) for options it cannot honour.
    """
    from torch.utils.data import DataLoader

    from lvmm.cli import parse_int_list, parse_size
    from lvmm.datasets.readers import expand_shards
    from lvmm.evaluation.protocols import get_protocol

    started = time.time()
    protocol = get_protocol(args.protocol)
    size = parse_size(args.size) or (protocol.height, protocol.width)
    seeds = parse_int_list(args.seeds)
    frames = args.frames or protocol.num_frames
    if size[0] is None:
        raise ValueError("protocol 'custom' needs --size (and --frames, or the checkpoint's length)")
    subjects = [s.strip() for s in args.test_subjects.split(",")] if args.test_subjects else None
    shards = expand_shards(args.reference)
    samples = list_test_samples(shards, protocol.reference_split, subjects)
    if not samples:
        raise ValueError(f"no test samples in {len(shards)} shard(s) (split {protocol.reference_split!r})")
    out = Path(args.out)
    settings = {
        "ckpt": str(Path(args.ckpt).resolve()),
        "protocol": protocol.name,
        "size": list(size),
        "frames": frames,
        "sampler": args.sampler,
        "steps": args.steps,
        "eta": args.eta,
        "guidance_scale": args.guidance_scale,
        "condition": args.condition,
        "imagebind": args.imagebind,
        "format": args.format,
    }
    check_settings(out, settings, args.overwrite)
    done = finished_keys(out, [k for _, k in samples], seeds, args.format)
    print(
        f"[generate] {len(samples)} test samples x {len(seeds)} seed(s), {len(done)} already finished; "
        f"{frames} frames at {size[0]}x{size[1]} (protocol {protocol.name}) -> {out}"
    )
    options = AnimationOptions(
        num_frames=frames - 1,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        guidance_scale=args.guidance_scale,
        size=min(size),
    )
    module = VideoGeneration(
        args.ckpt, seeds, options, args.stage1_ckpt, args.imagebind, args.imagebind_config, args.condition
    )
    writer = VideoWriter(out, args.format, args.fps)
    loader = DataLoader(TestSamples(samples, size, done), batch_size=1, collate_fn=list)
    gpu = torch.cuda.is_available() and args.accelerator in ("auto", "gpu", "cuda")
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        logger=False,
        precision="bf16-mixed" if gpu else "32-true",
        callbacks=[writer],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    if len(done) < len(samples):
        trainer.predict(module, loader, return_predictions=False)
    summary = {
        "samples": len(samples),
        "seeds": seeds,
        "skipped": len(done),
        "written": len(writer.written),
        "out": str(out),
        "seconds": round(time.time() - started, 1),
    }
    if trainer.is_global_zero:
        print(
            f"[generate] wrote {summary['written']} video(s) on rank 0 ({summary['skipped']} samples were finished) "
            f"in {summary['seconds']} s"
        )
    return summary
