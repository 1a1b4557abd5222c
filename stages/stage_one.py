"""Stage one: the motion accretion model (flow predictor P, motion VAE E/D, renderer R) as a LightningModule.

Thin by design: the networks come in from the YAML's ``class_path``s, the losses live in
:mod:`lvmm.losses`; this module weighs them and runs the schedule.

Schedules (``schedule``):

* ``"joint"``: P and R train from step 0; E/D train on P's (detached) fields from ``vae_start_step``,
  and R additionally renders from the decoded field D(E(p)), with those terms' weight ramped up over
  ``vae_warmup_steps``. The VAE chases a moving target, but every step improves all three networks.
* ``"sequential"``: P + R alone until ``vae_start_step``; from then on P is frozen, E/D train and R is
  fine-tuned on decoded fields only (what it receives at inference).
"""

from __future__ import annotations

import math

import numpy as np
import pytorch_lightning as pl
import torch
from torchvision.utils import flow_to_image

from lvmm.evaluation.frame_metrics import psnr
from lvmm.losses import (
    RandomTransform,
    ReconstructionLoss,
    edge_aware_smoothness,
    equivariance_loss,
    field_reconstruction_loss,
    lucas_kanade_teacher,
    photometric_loss,
    teacher_loss,
)
from lvmm.nets.flow_predictor import FlowPredictor
from lvmm.nets.motion_vae import MotionVAE
from lvmm.nets.renderer import Renderer
from lvmm.warp import end_point_error, normalised_to_pixels, resize_field

SCHEDULES = ("joint", "sequential")
MEDIA_SAMPLES = 4
"""Rows (pairs) in a logged media panel."""


def pairs_from_clips(batch: dict, pairs_per_clip: int) -> dict:
    """Turn a batch of clips (``frames`` (B, T, 3, H, W), ``flows`` (B, T, 2, H, W)) into pairs (I_0, I_k):
    ``pairs_per_clip`` distinct k in 1..T-1 per clip. A rendered clip then feeds several pairs, which
    matters where making data costs as much as a training step (the procedural data on a CPU)."""
    frames = batch["frames"]
    b, t = frames.shape[:2]
    n = min(pairs_per_clip, t - 1)
    k = torch.stack([torch.randperm(t - 1)[:n] + 1 for _ in range(b)]).to(frames.device)  # (B, n)
    rows = torch.arange(b, device=frames.device)[:, None].expand(-1, n)
    pairs = {"img0": frames[:, 0][rows.flatten()], "imgk": frames[rows, k].flatten(0, 1), "k": k.flatten()}
    if "flows" in batch:
        pairs["flow"] = batch["flows"][rows, k].flatten(0, 1)
        pairs["has_flow"] = torch.as_tensor(batch.get("has_flow", True)).reshape(-1).expand(b)[rows.flatten()]
    return pairs


class StageOne(pl.LightningModule):
    """Trains P, E/D and R of stage one.

    Args:
        flow, vae, renderer: the three networks (typed ``class_path``/``init_args`` in the YAML).
        schedule: ``"joint"`` or ``"sequential"`` (module docstring).
        vae_start_step: first step with VAE losses (the end of the P + R phase when sequential).
        vae_warmup_steps: linear ramp of the VAE-related weights (joint schedule).
        lr, betas, weight_decay, lr_warmup_steps: AdamW and a linear warm-up, then cosine decay to
            ``min_lr_ratio`` of ``lr`` at ``trainer.max_steps``.
        recon_weight: reconstruction of I_k from the predicted field.
        decoded_recon_weight: reconstruction of I_k from the decoded field D(E(p)).
        photometric_weight, smoothness_weight: warp(I_0, d) against I_k on every refinement pass, and the
            edge-aware smoothness of every pass's field.
        equivariance_weight, equivariance_sigma_affine, equivariance_sigma_tps: MRAA's region equivariance.
        field_weight, field_grad_weight, kl_weight: the VAE's L1 on p, its multi-scale gradient consistency,
            and KL (1e-6 in the paper).
        teacher_weight, teacher_anneal_steps, teacher_radius: optional L1 of d against scikit-image's
            ``optical_flow_ilk``, its weight annealed linearly to zero over ``teacher_anneal_steps``.
        vgg19_weights: local path of VGG19 weights for the perceptual term; None uses multi-scale L1 + SSIM.
        recon_scales, photometric_scales: pyramid factors of those terms.
        pairs_per_clip: when the data yields clips (``mode="clips"``) rather than pairs, pairs drawn per clip.
    """

    def __init__(
        self,
        flow: FlowPredictor,
        vae: MotionVAE,
        renderer: Renderer,
        schedule: str = "joint",
        vae_start_step: int = 0,
        vae_warmup_steps: int = 500,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        recon_weight: float = 1.0,
        decoded_recon_weight: float = 1.0,
        photometric_weight: float = 1.0,
        smoothness_weight: float = 0.02,
        equivariance_weight: float = 0.1,
        equivariance_sigma_affine: float = 0.05,
        equivariance_sigma_tps: float = 0.005,
        field_weight: float = 1.0,
        field_grad_weight: float = 1.0,
        kl_weight: float = 1e-6,
        teacher_weight: float = 0.0,
        teacher_anneal_steps: int = 1000,
        teacher_radius: int = 4,
        vgg19_weights: str | None = None,
        recon_scales: tuple[int, ...] = (1, 2, 4),
        photometric_scales: tuple[int, ...] = (1, 2, 4),
        pairs_per_clip: int = 8,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
        self.save_hyperparameters(ignore=["flow", "vae", "renderer"])
        self.flow, self.vae, self.renderer = flow, vae, renderer
        self.recon_loss = ReconstructionLoss(vgg19_weights, recon_scales)

    # ------------------------------------------------------------------ schedule
    def vae_ramp(self, step: int) -> float:
        """Weight of the VAE-related terms at ``step``: 0 before ``vae_start_step``, then 1 (sequential) or a ramp."""
        h = self.hparams
        if step < h.vae_start_step:
            return 0.0
        if h.schedule == "sequential" or h.vae_warmup_steps <= 0:
            return 1.0
        return min(1.0, (step - h.vae_start_step + 1) / h.vae_warmup_steps)

    def flow_frozen(self, step: int) -> bool:
        return self.hparams.schedule == "sequential" and step >= self.hparams.vae_start_step

    # ------------------------------------------------------------------ losses
    def compute_losses(self, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named parts for a batch of pairs at training step ``step``."""
        h = self.hparams
        img0, imgk = batch["img0"], batch["imgk"]
        logs: dict[str, torch.Tensor] = {}
        total = img0.new_zeros(())
        frozen, ramp = self.flow_frozen(step), self.vae_ramp(step)

        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            out = self.flow(img0, imgk)
        field = out.field
        if not frozen:
            logs["photometric"] = sum(photometric_loss(img0, imgk, d, h.photometric_scales) for d in out.passes) / len(
                out.passes
            )
            logs["smoothness"] = sum(edge_aware_smoothness(d, imgk) for d in out.passes) / len(out.passes)
            transform = RandomTransform(
                len(img0), h.equivariance_sigma_affine, h.equivariance_sigma_tps, device=img0.device, dtype=img0.dtype
            )
            logs["equivariance"] = equivariance_loss(self.flow.regions, img0, transform, out.regions0)
            logs["recon"] = self.recon_loss(self.renderer(img0, field), imgk)
            total = total + h.photometric_weight * logs["photometric"] + h.smoothness_weight * logs["smoothness"]
            total = total + h.equivariance_weight * logs["equivariance"] + h.recon_weight * logs["recon"]
            teacher_w = h.teacher_weight * max(0.0, 1.0 - step / max(1, h.teacher_anneal_steps))
            if teacher_w > 0:
                logs["teacher"] = teacher_loss(out.passes[-1], lucas_kanade_teacher(img0, imgk, h.teacher_radius))
                total = total + teacher_w * logs["teacher"]

        if ramp > 0:
            target = field.detach()  # the VAE learns P's fields; it must not pull P towards easy-to-encode ones
            decoded, posterior = self.vae(target)
            logs["field_l1"], logs["field_grad"] = field_reconstruction_loss(
                decoded, target, self.vae.displacement_scale
            )
            logs["kl"] = posterior.kl().mean()
            logs["decoded_recon"] = self.recon_loss(self.renderer(img0, decoded), imgk)
            vae_total = (
                h.field_weight * logs["field_l1"] + h.field_grad_weight * logs["field_grad"] + h.kl_weight * logs["kl"]
            )
            total = total + ramp * (vae_total + h.decoded_recon_weight * logs["decoded_recon"])
        if batch.get("has_flow") is not None and bool(torch.as_tensor(batch["has_flow"]).all()):
            logs["epe_px"] = end_point_error(field.detach(), batch["flow"])
        return total, logs

    def as_pairs(self, batch: dict) -> dict:
        return pairs_from_clips(batch, self.hparams.pairs_per_clip) if "frames" in batch else batch

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch = self.as_pairs(batch)
        total, logs = self.compute_losses(batch, self.global_step)
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, batch_size=len(batch["img0"]))
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=len(batch["img0"]))
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        batch = self.as_pairs(batch)
        img0, imgk = batch["img0"], batch["imgk"]
        field = self.flow(img0, imgk).field
        decoded = self.vae.decode(self.vae.encode(field).mode())
        metrics = {
            "psnr_pred": psnr(self.renderer(img0, field), imgk).mean(),
            "psnr_decoded": psnr(self.renderer(img0, decoded), imgk).mean(),
            "psnr_copy": psnr(img0, imgk).mean(),
        }
        if bool(torch.as_tensor(batch.get("has_flow", False)).all()):
            metrics["epe_px"] = end_point_error(field, batch["flow"])
            metrics["epe_px_decoded"] = end_point_error(decoded, batch["flow"])
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=len(img0), prog_bar=False)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        h = self.hparams
        params = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("recon_loss.")]
        opt = torch.optim.AdamW(params, lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay)
        max_steps = self.trainer.max_steps if self._trainer is not None and self.trainer.max_steps > 0 else None

        def schedule(step: int) -> float:
            if step < h.lr_warmup_steps:
                return (step + 1) / h.lr_warmup_steps
            if max_steps is None:
                return 1.0
            progress = min(1.0, (step - h.lr_warmup_steps) / max(1, max_steps - h.lr_warmup_steps))
            return h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints and media
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # what lvmm.checkpoint.load_networks needs to rebuild the networks without this module
        checkpoint["lvmm_networks"] = {
            "flow": self.flow.config,
            "vae": self.vae.config,
            "renderer": self.renderer.config,
        }

    @torch.no_grad()
    def log_media(self, batch: dict) -> dict[str, np.ndarray]:
        """Panel rows, per pair: I_0 | I_k | rendered | flow colour | w, for the predicted and then the decoded
        field."""
        batch = self.as_pairs(batch)
        img0, imgk = batch["img0"][:MEDIA_SAMPLES], batch["imgk"][:MEDIA_SAMPLES]
        field = self.flow(img0, imgk).field
        decoded = self.vae.decode(self.vae.encode(field).mode())
        rows = []
        for f in (field, decoded):
            rows.append(
                torch.cat([img0, imgk, self.renderer(img0, f), field_to_rgb(f, img0.shape[-2:])], -1)
            )  # (B, 3, H, 5W)
        panel = torch.cat([torch.cat(list(r), -2) for r in rows], -2)  # (3, 2BH, 5W)
        return {"stage1": (panel.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()}


def field_to_rgb(field: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fields (B, 3, h, w) -> [flow colour | w in grey] images (B, 3, H, 2W) in [0, 1] at the frame size."""
    full = resize_field(field.float(), size)
    colour = flow_to_image(normalised_to_pixels(full[:, :2], *size)).float() / 255.0
    return torch.cat([colour, full[:, 2:3].clamp(0, 1).expand(-1, 3, -1, -1)], -1)
