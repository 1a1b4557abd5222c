"""Train either stage through the Lightning CLI.

    python tools/train.py fit --config configs/stage1/mug.yaml
    python tools/train.py fit --config configs/stage2/tiny.yaml --trainer.max_steps 100
    python tools/train.py fit --config configs/stage1/tiny.yaml --print_config
    # exact resume:
    python tools/train.py fit --config configs/stage1/mug.yaml --ckpt_path outputs/mug/stage1/checkpoints/last.ckpt
    python tools/train.py fit --config configs/stage2/facial_512.yaml \\
        --init_from outputs/general/stage2/checkpoints/last.ckpt

Configs are typed ``class_path``/``init_args`` YAML: the model and data classes come from the config,
so one entry point serves both stages and every dataset. A config may start with ``__base__: FILE``
(or a list of files, relative to the config): those are read first and the rest of the file is
merged over them, so a dataset's file holds only what differs from its stage's base.

Checkpoints go to ``<trainer.default_root_dir>/checkpoints`` (``last.ckpt`` is the newest) unless a
``ModelCheckpoint`` names its own ``dirpath``: the next step of a workflow finds them there.

``--init_from CKPT`` starts a *new* fit from another run's weights (its EMA weights when it has them,
:mod:`lvmm.finetune`): a fresh optimizer, schedule and step count, unlike ``--ckpt_path``, which resumes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from lvmm.configs import expand_config_args

CHECKPOINT_SUBDIR = "checkpoints"


class LVMMCLI(LightningCLI):
    """LightningCLI with the project's conventions: fixed checkpoint folders, ``--init_from``, and ``--ckpt_path``
    checked before Lightning imports what its hyper-parameters name."""

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

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--init_from",
            type=str | None,
            default=None,
            help="fine-tune: start from this checkpoint's weights (EMA when present), fresh optimizer and step count",
        )

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        from lvmm.stages.resume import ExactResume

        if not any(isinstance(cb, ExactResume) for cb in self.trainer.callbacks):
            self.trainer.callbacks.insert(0, ExactResume())  # first: its on_train_end runs before the EMA copy
        root = Path(self.trainer.default_root_dir)
        for cb in self.trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = str(root / CHECKPOINT_SUBDIR)
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        init_from = config.get("init_from")
        if init_from:
            from lvmm.finetune import load_initial_weights

            report = load_initial_weights(self.model, init_from)
            print(f"[train] initialised from {init_from}: {report}")


def main(args: list[str] | None = None) -> LightningCLI:
    """Run the Lightning CLI with the project's conventions (:class:`LVMMCLI`); the CLI object."""
    os.environ.setdefault("WANDB_MODE", "offline")
    given = list(sys.argv[1:] if args is None else args)
    expanded = expand_config_args(given)
    # sys.argv stays as it is: Lightning's DDP launcher starts the other ranks with it (they expand it again);
    # args=None when nothing changed, since LightningCLI warns when it gets both args and a command line
    args = None if args is None and expanded == given else expanded
    return LVMMCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def run() -> None:
    """The console script `lvmm-train`: :func:`main` on the command line, its outcome as the exit status."""
    main()


if __name__ == "__main__":
    run()
