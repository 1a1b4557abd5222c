"""A callback for the DDP tests: every rank writes what it ended the fit with."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch


class DumpRankState(pl.Callback):
    """At the end of fit, rank r saves ``<default_root_dir>/rank<r>.pt``: raw weights, buffers and stage two's
    statistics."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {
            k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items() if not k.startswith("recon_loss.")
        }
        extra = {
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "latent_scale": getattr(pl_module, "latent_scale", None),
        }
        torch.save({"state": state, "extra": extra}, Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.pt")
