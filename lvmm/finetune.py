"""Fine-tuning: start a fit from another run's weights, with a fresh optimizer, schedule and step count.

Resuming (``--ckpt_path``) restores everything, the step count included, so a finished general run
would stop at once on new data. :func:`load_initial_weights` instead copies only the weights into a
freshly built LightningModule before ``fit``. A checkpoint written with ``EMAWeightAveraging`` holds
the EMA weights in its ``state_dict`` (the raw ones in ``current_model_state``), so the EMA weights are
what fine-tuning starts from whenever the source run kept them.
"""

from __future__ import annotations

import os

import torch

IGNORED_PREFIXES = ("recon_loss.",)
"""Module state that is not a trained weight (stage one's fixed VGG19 features)."""


def load_initial_weights(module: torch.nn.Module, path: str | os.PathLike) -> dict:
    """Copy the weights of the Lightning checkpoint ``path`` into ``module``; returns what was loaded.

    Every network weight must match by name and shape (a mismatch names the keys). The module's own
    ``on_load_checkpoint`` runs too, so stage two keeps the source's latent scale and token statistics
    (the conventions its U-Net was trained under). Optimizer, schedulers, loops and callbacks are not read.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint to fine-tune from not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict)")
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(IGNORED_PREFIXES)}
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(IGNORED_PREFIXES)}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{path}: weights do not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {sorted(shapes)[:5]}"
        )
    module.load_state_dict(state, strict=False)
    if hasattr(module, "on_load_checkpoint"):
        module.on_load_checkpoint(ckpt)
    ema = "current_model_state" in ckpt
    return {"tensors": len(state), "ema": ema, "source_step": int(ckpt.get("global_step", -1))}
