#!/usr/bin/env python
"""Train either stage through the Lightning CLI.

    python tools/train.py fit --config configs/stage1/tiny.yaml
    python tools/train.py fit --config configs/stage2/tiny.yaml --trainer.max_steps 100
    python tools/train.py fit --config configs/stage1/tiny.yaml --print_config

Configs are typed ``class_path``/``init_args`` YAML: the model and data classes come from the config,
so one entry point serves both stages and every dataset.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing


class CLI(LightningCLI):
    """Lightning's CLI, with ``--ckpt_path`` checked before Lightning imports what its hyper-parameters name."""

    def _parse_ckpt_path(self) -> None:
        from lvmm.checkpoint import CheckpointError, check_hyperparameters

        subcommand = self.config.get("subcommand")
        ckpt_path = subcommand and self.config[subcommand].get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():
            try:
                check_hyperparameters(ckpt_path)
            except CheckpointError as e:
                raise SystemExit(f"error: {e}") from None
        super()._parse_ckpt_path()


def main(args: list[str] | None = None) -> LightningCLI:
    os.environ.setdefault("WANDB_MODE", "offline")
    return CLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
