"""Exact resume: every random stream and the data position are saved with a checkpoint and restored.

Lightning restores weights, optimizer, schedulers, loop counters and callback states, but not the
random number generators, and a plain DataLoader restarts its epoch with a new shuffle. With
:class:`ExactResume` (tools/train.py adds it to every fit), a fit stopped after N steps and resumed
from its checkpoint reaches bit-identical weights to an uninterrupted fit on CPU (tested for both
stages), when the training data's order is a function of the epoch and can skip ahead
(:class:`lvmm.datasets.sampling.EpochSampler`: the procedural and synthetic data modules).

What is saved: the CPU torch, numpy and Python ``random`` states (and every CUDA device's, where
present) at the moment of saving, and the position of the training sampler (the epoch of its order
and the batches of it already trained on). The random states are restored just before the first
resumed training step, after the resumed run has built its data iterator (which draws from the torch
stream); the sampler continues at the saved position.

With ``EMAWeightAveraging``, Lightning copies the EMA weights into the model when training ends and
only then writes the final ``last.ckpt``, whose "current" weights are then the EMA ones: resuming from
it would continue from the EMA weights. This callback runs first and puts the raw weights back into that
checkpoint (``current_model_state``; ``state_dict`` keeps the EMA weights).
"""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


def capture_rng() -> dict:
    """The process's random states, as tensors and lists (they load with ``torch.load(weights_only=True)``)."""
    version, state, gauss = random.getstate()
    # numpy's global generator is what user code and libraries draw from; its state is what must resume
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    out = {
        "torch": torch.get_rng_state(),
        "python": [version, list(state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ExactResume(pl.Callback):
    """Saves the random states with every checkpoint; on resume restores them and skips consumed batches."""

    def __init__(self):
        self._pending: dict | None = None
        self._position = [0, 0]  # (order epoch, batches of it trained on) of the training sampler
        self._raw: dict | None = None

    @staticmethod
    def _sampler(trainer: pl.Trainer):
        loader = trainer.fit_loop._combined_loader
        for dl in loader.flattened if loader is not None else []:
            if hasattr(getattr(dl, "sampler", None), "resume_at") and dl.batch_size:
                return dl.sampler, dl.batch_size
        return None, 0

    def state_dict(self) -> dict:
        return {"rng": capture_rng(), "position": list(self._position)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict
        self._position = list(state_dict.get("position", [0, 0]))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler, batch_size = self._sampler(trainer)
        if self._pending is not None and sampler is not None:
            epoch, batches = self._position
            sampler.resume_at(epoch, batches * batch_size, trainer.current_epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            restore_rng(self._pending["rng"])
            self._pending = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if any(isinstance(cb, pl.callbacks.WeightAveraging) for cb in trainer.callbacks):
            self._raw = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}  # before the EMA copy

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._raw is not None:  # WeightAveraging.on_save_checkpoint (after this) moves it to current_model_state
            checkpoint["state_dict"] = self._raw
            self._raw = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sampler, _ = self._sampler(trainer)
        if sampler is not None:
            epoch = sampler.order_epoch
            self._position = [epoch, self._position[1] + 1 if epoch == self._position[0] else 1]
