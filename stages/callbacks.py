"""Callbacks shared by both stages: when to log media, and where it goes.

The LightningModule says *what* to show (``log_media(batch) -> {name: array}``); :class:`MediaLogger`
decides *when* (every N steps, rank zero only) and sends each item to wandb (offline works) and/or to
disk. Videos are ``(T, H, W, 3)`` uint8 arrays, images ``(H, W, 3)`` uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from lvmm.media import write_image, write_video


class MediaLogger(pl.Callback):
    """Every ``every_n_steps`` training steps, log the module's media panel for the current batch.

    Args:
        every_n_steps: logging interval in optimiser steps.
        to_disk: also write files under ``<log dir>/media`` (always done when no wandb logger is used).
        fps: frame rate of logged videos.
    """

    def __init__(self, every_n_steps: int = 500, to_disk: bool = True, fps: float = 8.0):
        self.every_n_steps, self.to_disk, self.fps = every_n_steps, to_disk, fps
        self.written: list[Path] = []

    def _media_dir(self, trainer: pl.Trainer) -> Path:
        root = trainer.log_dir or trainer.default_root_dir
        return Path(root) / "media"

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if self.every_n_steps <= 0 or step % self.every_n_steps or not hasattr(pl_module, "log_media"):
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                media = pl_module.log_media(batch)
        finally:
            pl_module.train(was_training)
        self.send(trainer, media, step)

    def send(self, trainer: pl.Trainer, media: dict[str, np.ndarray], step: int) -> None:
        wandb_loggers = [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]
        for name, array in media.items():
            array = np.asarray(array)
            is_video = array.ndim == 4
            path = None
            if self.to_disk or wandb_loggers:
                suffix = ".mp4" if is_video else ".png"
                path = self._media_dir(trainer) / f"step{step:07d}_{name}{suffix}"
                write_video(path, array, self.fps) if is_video else write_image(path, array)
                self.written.append(path)
            for lg in wandb_loggers:
                import wandb

                # wandb.Video from an array needs moviepy; from a written mp4 it does not.
                item = wandb.Video(str(path), format="mp4") if is_video else wandb.Image(array)
                lg.experiment.log({f"media/{name}": item}, step=step)
