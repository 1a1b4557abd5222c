"""A LightningDataModule over video shards: pairs for stage one, clips for stage two."""

from __future__ import annotations

import pytorch_lightning as pl

from .readers import MODES, SAMPLINGS, ShardStream, make_loader, make_stream


class ShardDataModule(pl.LightningDataModule):
    """Training and validation batches from webdataset shards (item formats: :mod:`lvmm.datasets.readers`).

    Args:
        train_shards: brace pattern or glob of training shards (several joined by ``::``).
        val_shards: the same for validation, or None for no validation.
        mode: ``"pairs"`` (img0, imgk, flow, k) or ``"clips"`` (frames, flows, label, caption).
        batch_size: items per batch, per rank.
        num_workers: DataLoader workers per rank.
        max_interval: pairs: the largest frame interval k.
        num_frames: clips: frames per clip (K + 1 for stage two; 40 for the benchmark protocol).
        sampling: clips: ``"consecutive"`` or ``"random_sorted"`` (N frames at random, sorted in time).
        size: output frame size, an int or ``[height, width]``.
        epoch_length: training batches per rank and epoch (the same on every rank, so DDP never hangs).
        val_length: validation batches per rank.
        crop_scale: training crops keep this range of the largest box's side; ``hflip``: random mirroring.
        shuffle_buffer: samples held for shuffling.
        seed: base seed of shard and frame choices.
    """

    def __init__(
        self,
        train_shards: str,
        val_shards: str | None = None,
        mode: str = "pairs",
        batch_size: int = 8,
        num_workers: int = 2,
        max_interval: int = 8,
        num_frames: int = 9,
        sampling: str = "consecutive",
        size: int | list[int] = 64,
        epoch_length: int = 1000,
        val_length: int = 16,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        hflip: bool = True,
        shuffle_buffer: int = 256,
        seed: int = 0,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (use one of {MODES})")
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r} (use one of {SAMPLINGS})")
        self.save_hyperparameters()

    def _rank(self) -> tuple[int | None, int | None]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None, None  # resolved when iterating (torch.distributed or RANK/WORLD_SIZE)
        return trainer.global_rank, trainer.world_size

    def _stream(self, shards: str, train: bool) -> ShardStream:
        h = self.hparams
        rank, world = self._rank()
        return make_stream(
            shards,
            h.mode,
            batch_size=h.batch_size,
            length=h.epoch_length if train else h.val_length,
            size=h.size if isinstance(h.size, int) else tuple(h.size),
            max_interval=h.max_interval,
            num_frames=h.num_frames,
            sampling=h.sampling,
            train=train,
            crop_scale=tuple(h.crop_scale),
            hflip=h.hflip,
            shuffle_buffer=h.shuffle_buffer,
            seed=h.seed,
            rank=rank,
            world_size=world,
        )

    def train_dataloader(self):
        return make_loader(self._stream(self.hparams.train_shards, train=True), self.hparams.num_workers)

    def val_dataloader(self):
        if not self.hparams.val_shards:
            return []
        return make_loader(self._stream(self.hparams.val_shards, train=False), self.hparams.num_workers)
