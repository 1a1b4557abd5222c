"""Stage two's data: latent motion shards, and an in-memory synthetic stand-in.

Latent motion shards (`docs/data-formats.md`, written by ``tools/encode_motion.py``), one sample per clip:
``motion.npy`` float16 (K+1, C, h, w) = z_0..z_K; ``img_emb.npy``, ``txt_emb.npy`` and ``aud_emb.npy``
float32 (D,) (``txt_emb.npy`` / ``aud_emb.npy`` missing or all zero: no text / no audio); ``first.png``,
I_0; ``json`` with the source key, frame indices, reconstruction error, ``label`` (int, -1 if none) and ``caption``.

Both data modules yield batches of dicts:
``z0`` (B, C, h, w), ``z`` (B, K, C, h, w) = z_1..z_K, ``img_emb``/``txt_emb``/``aud_emb`` (B, D),
``has_txt``/``has_aud`` (B,) bool (zeros and False where a clip has no caption / no audio), ``label`` (B,)
long, ``amplitude`` (B,) the clip's motion amount from the json's ``frame_amounts`` (nan where the shards
have none: stage two then measures it), ``first`` (B, 3, H, W) float in [0, 1], ``key`` (list of str).

DDP: training shards are *resampled* (each rank and worker draws shards at random, with replacement)
and every epoch is cut at ``epoch_length`` batches per rank, so all ranks take the same number of steps
(uneven ranks hang DDP). Validation shards are split over workers and then *by rank, sample by
sample*: in each round of ``world_size`` consecutive samples rank r keeps the r-th, and an incomplete
last round is dropped, so every rank validates on its own, equally many samples (a validation set of
fewer shards than ranks still splits).

A corrupt sample (a member that does not parse) is skipped, logged with its shard and key, and counted
in :data:`SKIPPED` of the process that read it; the run goes on.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset

from lvmm.controls import motion_amount
from lvmm.datasets.procedural import DEFAULT_FPS, FAMILIES, field_px, sample_params
from lvmm.datasets.readers import SAMPLE_ERRORS, dist_info, expand_shards, npy_from_bytes, png_from_bytes
from lvmm.datasets.sampling import EpochSampler
from lvmm.warp import pixels_to_normalised

SHUFFLE_BUFFER = 1000  # samples held for shuffling within a worker
LATENT_CHANNELS = 4
SKIPPED: list[str] = []
"""``"shard [key]: reason"`` of every corrupt latent sample this process skipped."""
log = logging.getLogger(__name__)


def decode_latent_sample(raw: dict, num_frames: int | None = None) -> dict:
    """One raw webdataset sample (bytes per extension) as the tensors of a batch item."""
    key = raw.get("__key__", "")
    motion = npy_from_bytes(raw["motion.npy"]).astype(np.float32)  # (K+1, C, h, w)
    if motion.ndim != 4 or motion.shape[0] < 2:
        raise ValueError(f"{key}: motion.npy has shape {motion.shape}, expected (K+1, C, h, w) with K >= 1")
    z = motion[1:]
    if num_frames is not None:
        if z.shape[0] < num_frames:
            raise ValueError(f"{key}: clip has {z.shape[0]} frames, {num_frames} requested")
        z = z[:num_frames]  # a prefix keeps every z_k relative to the same I_0
    img_emb = npy_from_bytes(raw["img_emb.npy"]).astype(np.float32)
    txt_emb = npy_from_bytes(raw["txt_emb.npy"]).astype(np.float32) if "txt_emb.npy" in raw else np.zeros_like(img_emb)
    aud_emb = npy_from_bytes(raw["aud_emb.npy"]).astype(np.float32) if "aud_emb.npy" in raw else np.zeros_like(img_emb)
    for name, emb in (("txt_emb", txt_emb), ("aud_emb", aud_emb)):
        if emb.shape != img_emb.shape:
            raise ValueError(f"{key}: {name}.npy has shape {emb.shape}, img_emb.npy {img_emb.shape}")
    meta = json.loads(raw["json"]) if "json" in raw else {}
    first = np.array(png_from_bytes(raw["first.png"]))
    amounts = meta.get("frame_amounts")
    if amounts is not None and len(amounts) < z.shape[0]:
        raise ValueError(f"{key}: json has {len(amounts)} frame_amounts for {z.shape[0]} frames")
    # stage two's motion amount (the mean of the frames'); nan for shards written without it: measured there
    amplitude = float(np.mean(amounts[: z.shape[0]])) if amounts is not None else float("nan")
    return {
        "z0": torch.from_numpy(motion[0]),
        "z": torch.from_numpy(np.ascontiguousarray(z)),
        "img_emb": torch.from_numpy(img_emb),
        "txt_emb": torch.from_numpy(txt_emb),
        "has_txt": bool(np.any(txt_emb != 0)),
        "aud_emb": torch.from_numpy(aud_emb),
        "has_aud": bool(np.any(aud_emb != 0)),
        "label": int(meta.get("label", -1)),
        "amplitude": torch.tensor(amplitude, dtype=torch.float32),
        "first": torch.from_numpy(first).permute(2, 0, 1).float() / 255.0,
        "key": key,
    }


def decode_or_skip(raw: dict, num_frames: int | None = None) -> dict | None:
    """:func:`decode_latent_sample`, or None (logged and counted in :data:`SKIPPED`) for a corrupt sample."""
    try:
        return decode_latent_sample(raw, num_frames)
    except SAMPLE_ERRORS as e:
        where = f"{raw.get('__url__', '?')} [{raw.get('__key__', '?')}]"
        SKIPPED.append(f"{where}: {e}")
        log.warning("skipped corrupt latent sample %d: %s: %s", len(SKIPPED), where, e)
        return None


def split_by_rank_rounds(samples, rank: int | None = None, world_size: int | None = None):
    """Rank r keeps the r-th sample of every complete round of ``world_size``: equal, disjoint shares."""
    rank, world = dist_info(rank, world_size)
    round_: list = []
    for sample in samples:
        round_.append(sample)
        if len(round_) == world:
            yield round_[rank]
            round_ = []


def collate(items: Sequence[dict]) -> dict:
    """Stack tensors, make bools and ints tensors, keep strings as lists."""
    out = {}
    for k in items[0]:
        values = [it[k] for it in items]
        if isinstance(values[0], torch.Tensor):
            out[k] = torch.stack(values)
        elif isinstance(values[0], bool):
            out[k] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(values[0], int):
            out[k] = torch.tensor(values, dtype=torch.long)
        else:
            out[k] = list(values)
    return out


def latent_pipeline(
    shards: str | Sequence[str],
    batch_size: int,
    *,
    num_frames: int | None = None,
    resampled: bool = True,
    epoch_length: int | None = None,
    num_workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
) -> wds.DataPipeline:
    """A webdataset pipeline of latent motion batches (see the module docs for DDP behaviour).

    ``epoch_length``: batches per rank per epoch (spread over the workers); needed with ``resampled``.
    ``rank``/``world_size``: for the per-sample rank split of unresampled (validation) shards; default
    :func:`lvmm.datasets.readers.dist_info` when iterating.
    """
    urls = expand_shards(shards)  # globs and brace patterns; a pattern that matches nothing is an error, not a hang
    if resampled:
        if not epoch_length:
            raise ValueError("resampled shards never end: give epoch_length (batches per rank)")
        stages = [wds.ResampledShards(urls, seed=seed)]
    else:
        stages = [wds.SimpleShardList(urls), wds.split_by_worker]
    stages.append(wds.tarfile_to_samples(handler=wds.warn_and_continue))
    if not resampled:
        stages.append(functools.partial(split_by_rank_rounds, rank=rank, world_size=world_size))
    if shuffle:
        stages.append(wds.shuffle(SHUFFLE_BUFFER))
    stages += [
        wds.map(functools.partial(decode_or_skip, num_frames=num_frames)),
        wds.select(lambda x: x is not None),
        wds.batched(batch_size, collation_fn=collate, partial=not resampled),
    ]
    pipeline = wds.DataPipeline(*stages)
    if epoch_length:
        pipeline = pipeline.with_epoch(math.ceil(epoch_length / max(1, num_workers)))
    return pipeline


class LatentDataModule(pl.LightningDataModule):
    """Latent motion shards for stage two.

    Args:
        train_shards: brace pattern or list of training shards (``"latents/train-{000000..000099}.tar"``).
        val_shards: validation shards (read whole on every rank), or None.
        batch_size: per device.
        num_workers: loader workers per device.
        num_frames: keep z_1..z_num_frames of each clip (None: all K).
        epoch_length: training batches per rank per epoch.
        resampled: draw training shards at random with replacement (needed for even DDP ranks).
    """

    def __init__(
        self,
        train_shards: str | list[str],
        val_shards: str | list[str] | None = None,
        batch_size: int = 16,
        num_workers: int = 4,
        num_frames: int | None = None,
        epoch_length: int = 1000,
        resampled: bool = True,
    ):
        super().__init__()
        self.train_shards, self.val_shards = train_shards, val_shards
        self.batch_size, self.num_workers, self.num_frames = batch_size, num_workers, num_frames
        self.epoch_length, self.resampled = epoch_length, resampled

    def _loader(self, pipeline: wds.DataPipeline) -> wds.WebLoader:
        return wds.WebLoader(
            pipeline, batch_size=None, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )

    def train_dataloader(self):
        return self._loader(
            latent_pipeline(
                self.train_shards,
                self.batch_size,
                num_frames=self.num_frames,
                resampled=self.resampled,
                epoch_length=self.epoch_length,
                num_workers=self.num_workers,
            )
        )

    def val_dataloader(self):
        if self.val_shards is None:
            return []
        trainer = getattr(self, "trainer", None)  # worker processes do not see torch.distributed
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (None, None)
        return self._loader(
            latent_pipeline(
                self.val_shards,
                self.batch_size,
                num_frames=self.num_frames,
                resampled=False,
                shuffle=False,
                num_workers=self.num_workers,
                rank=rank,
                world_size=world,
            )
        )


# ----- synthetic latents ---------------------------------------------------------------------------------


def unit_vector(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)  # ImageBind embeddings are unit-normalised too


def synthetic_latent_clip(
    seed: int,
    index: int,
    *,
    size: int = 8,
    num_frames: int = 8,
    emb_dim: int = 1024,
    fps: float = DEFAULT_FPS,
    families: Sequence[str] = FAMILIES,
    audio: bool = False,
) -> dict:
    """One synthetic latent clip: a procedural motion family's fields at the latent size.

    Channels of z_k: (dx, dy, (dx + dy)/sqrt 2, (dx - dy)/sqrt 2), in normalised units, so all four
    carry motion and :func:`synthetic_decode` recovers the field. z_0 holds what the first frame
    "shows": the family's soft region, and x, y ramps (a real z_0 carries the parts P sees in I_0).
    The text token is a fixed unit vector per family (the caption's embedding), the image token a
    unit vector per clip (the photograph, uninformative about the motion). With ``audio`` the audio token is
    another fixed unit vector per family (the soundtrack's embedding); without, it is zero and ``has_aud``
    False (so stage two trains as before). ``amplitude`` is the clip's
    motion amount (:func:`lvmm.controls.motion_amount` of the field), for U-Nets with ``amplitude_condition``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    fam = families[int(rng.integers(0, len(families)))]
    p = sample_params(fam, rng, size, size)
    theta = torch.from_numpy(
        (2 * math.pi * p["frequency_hz"] * np.arange(num_frames + 1) / fps + p["phase"]).astype(np.float32)
    )
    u = field_px(fam, p, theta, size, size)  # (K+1, 2, h, w) pixels
    d = pixels_to_normalised(u - u[:1], size, size)
    z = torch.cat([d, (d[:, :1] + d[:, 1:]) / math.sqrt(2), (d[:, :1] - d[:, 1:]) / math.sqrt(2)], 1)
    ramp = (torch.arange(size) + 0.5) / size * 2 - 1
    ys, xs = torch.meshgrid(ramp, ramp, indexing="ij")
    cx, cy = p["centre"][0] * 2 - 1, p["centre"][1] * 2 - 1
    region = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (2 * p["radius"]) ** 2))
    z0 = torch.stack([region, xs, ys, torch.zeros_like(xs)])
    label = FAMILIES.index(fam)
    amplitude = motion_amount(synthetic_decode(z[None, 1:].float()))[0]
    text = unit_vector(np.random.default_rng([1234, label]), emb_dim)
    sound = unit_vector(np.random.default_rng([4321, label]), emb_dim) if audio else np.zeros(emb_dim, np.float32)
    return {
        "z0": z0.float(),
        "z": z[1:].float(),
        "img_emb": torch.from_numpy(unit_vector(rng, emb_dim)),
        "txt_emb": torch.from_numpy(text),
        "has_txt": True,
        "aud_emb": torch.from_numpy(sound),
        "has_aud": bool(audio),
        "label": label,
        "first": torch.zeros(3, 4 * size, 4 * size),
        "amplitude": amplitude,
        "key": f"synthetic-{seed}-{index:08d}",
    }


def synthetic_decode(z: torch.Tensor) -> torch.Tensor:
    """The synthetic latents' 'decoder': (B, T, 4, h, w) -> fields (B, T, 3, h, w) = (dx, dy, w = 1)."""
    return torch.cat([z[:, :, :2], torch.ones_like(z[:, :, :1])], dim=2)


class SyntheticLatents(Dataset):
    """``length`` synthetic latent clips, made once and held in memory."""

    def __init__(self, length: int = 2048, seed: int = 0, **kw):
        self.items = [synthetic_latent_clip(seed, i, **kw) for i in range(length)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class SyntheticLatentDataModule(pl.LightningDataModule):
    """In-memory latent clips of the six procedural motion families, for tests, benchmarks and experiments.

    Args:
        size: latent size h = w. num_frames: K. emb_dim: token dimension D.
        train_length, val_length: clips; seed: the corpus (validation uses ``seed + 1``).
        audio: give every clip an audio token (a unit vector per family; :func:`synthetic_latent_clip`).
    """

    def __init__(
        self,
        size: int = 8,
        num_frames: int = 8,
        emb_dim: int = 1024,
        train_length: int = 2048,
        val_length: int = 64,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        audio: bool = False,
    ):
        super().__init__()
        self.kw = dict(size=size, num_frames=num_frames, emb_dim=emb_dim, audio=audio)
        self.train_length, self.val_length, self.seed = train_length, val_length, seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = SyntheticLatents(self.train_length, self.seed, **self.kw)
            self.val_set = SyntheticLatents(self.val_length, self.seed + 1, **self.kw)

    def train_dataloader(self):
        # an order per (seed, epoch) that skips ahead on resume (lvmm.stages.resume.ExactResume)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(self.train_set), self.seed),
            drop_last=True,
            num_workers=self.num_workers,
            collate_fn=collate,
        )

    def val_dataloader(self):
        return DataLoader(
            self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers, collate_fn=collate
        )
