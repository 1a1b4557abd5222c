"""Stage-one quality: how well rendered frames match the true ones, against baselines measured alongside.

Rows: the predicted field P(I_0, I_k), the VAE-decoded field D(E(p)), I_0 copied unchanged, and I_0 warped
by the true field where the data has one. Columns: PSNR (dB), SSIM and L1 of frames in [0, 1], averaged
over pairs. Where true fields exist, also the end-point error (pixels of the frame) of the predicted and
decoded fields and of a zero field.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

import torch

from lvmm.evaluation.frame_metrics import PSNR_MAX_DB, fitting_window, psnr, psnr_from_mse, ssim
from lvmm.motion import MotionModel
from lvmm.warp import end_point_error, warp

# Per-pair PSNR is capped (frame_metrics.PSNR_MAX_DB): identical frames (a still clip copied) would otherwise
# score infinity. ``psnr_dataset`` (from the mean squared error over all pairs) rarely meets the cap.
ROWS = ("predicted", "decoded", "copy", "true_warp")


def _frame_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-pair PSNR, SSIM, L1: (B,) each."""
    pred, target = pred.float().clamp(0, 1), target.float()
    return {
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target, fitting_window(pred.shape), padding="same"),
        "l1": (pred - target).abs().flatten(1).mean(1),
        "mse": (pred - target).pow(2).flatten(1).mean(1),
    }


def procedural_batches(
    clips: int, height: int, width: int, num_frames: int, seed: int, batch_clips: int
) -> Iterator[dict]:
    """Batches of all (I_0, I_k) pairs of held-out procedural clips."""
    from lvmm.datasets.procedural import ProceduralClips

    data = ProceduralClips(clips, seed, height, width, num_frames, split="val")
    for start in range(0, clips, batch_clips):
        samples = [data[i] for i in range(start, min(clips, start + batch_clips))]
        frames = torch.stack([s["frames"] for s in samples])  # (b, T, 3, H, W)
        flows = torch.stack([s["flows"] for s in samples])  # (b, T, 2, H, W)
        t = frames.shape[1]
        yield {
            "img0": frames[:, :1].expand(-1, t - 1, -1, -1, -1).flatten(0, 1),
            "imgk": frames[:, 1:].flatten(0, 1),
            "flow": flows[:, 1:].flatten(0, 1),
            "has_flow": True,
        }


def shard_batches(pattern: str, size: list[int], batch_size: int, max_interval: int) -> Iterator[dict]:
    """Batches of (I_0, I_k) pairs of a webdataset shard set, read as the stage-one training reads them."""
    from lvmm.datasets.datamodule import ShardDataModule

    dm = ShardDataModule(
        train_shards=pattern,
        val_shards=pattern,
        mode="pairs",
        size=size,
        batch_size=batch_size,
        num_workers=0,
        max_interval=max_interval,
    )
    dm.setup("validate")
    yield from dm.val_dataloader()


@torch.no_grad()
def evaluate_stage_one(
    model: MotionModel,
    batches: Iterable[dict],
    device: str | torch.device | None = None,
    max_batches: int | None = None,
) -> dict:
    """Evaluate ``model`` on batches of pairs (``img0``, ``imgk`` (B, 3, H, W); optional ``flow``, ``has_flow``).

    Returns ``{"pairs": n, "moving_pairs": m, "frames": {row: {"psnr", "psnr_dataset", "psnr_moving", "ssim", "l1"}},
    "epe_px": {"predicted", "decoded", "zero"}}``
    (``true_warp``, ``psnr_moving`` (the mean over pairs whose true field is not zero) and ``epe_px`` only where
    every pair has a true field), and flat headline keys: ``psnr`` and ``ssim`` ({row: value}, PSNR from the
    mean MSE), ``psnr_gain_over_copy_db`` (P over copy) and ``vae_psnr_loss_db`` (P minus decoded).
    """
    device = torch.device(device) if device is not None else model.device
    model = model.to(device).eval()
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    epe: dict[str, float] = defaultdict(float)
    n = n_flow = n_moving = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        img0, imgk = batch["img0"].to(device), batch["imgk"].to(device)
        field = model.predict_field(img0, imgk)
        decoded = model.decode(model.encode_field(field))
        frames = {"predicted": model.renderer(img0, field), "decoded": model.renderer(img0, decoded), "copy": img0}
        has_flow = "flow" in batch and bool(torch.as_tensor(batch.get("has_flow", True)).all())
        if has_flow:
            flow = batch["flow"].to(device)
            frames["true_warp"] = warp(img0, flow)
            b = len(img0)
            epe["predicted"] += end_point_error(field, flow).item() * b
            epe["decoded"] += end_point_error(decoded, flow).item() * b
            epe["zero"] += end_point_error(torch.zeros_like(flow), flow).item() * b
            n_flow += b
        moving = (flow.flatten(1).abs().amax(1) > 0) if has_flow else None  # pairs that are not a still copy
        for row, pred in frames.items():
            for name, values in _frame_metrics(pred, imgk).items():
                sums[row][name] += values.sum().item()
                if name == "psnr" and moving is not None:
                    sums[row]["psnr_moving"] += values[moving].sum().item()
        n_moving += int(moving.sum()) if moving is not None else 0
        n += len(img0)
    if n == 0:
        raise ValueError("no pairs to evaluate")
    result = {"pairs": n, "frames": {row: {k: v / n for k, v in sums[row].items()} for row in ROWS if row in sums}}
    has_moving = n_flow == n and n_moving > 0
    for m in result["frames"].values():
        m["psnr_dataset"] = float(psnr_from_mse(m.pop("mse")))
        moving_mean_over_all = m.pop("psnr_moving", 0.0)  # summed over moving pairs, divided by all pairs
        if has_moving:
            m["psnr_moving"] = moving_mean_over_all * n / n_moving
    result["moving_pairs"] = n_moving
    # headline numbers (PSNR from the mean MSE, robust to still pairs) in a flat form for reports
    frames = result["frames"]
    result["psnr"] = {row: m["psnr_dataset"] for row, m in frames.items()}
    result["ssim"] = {row: m["ssim"] for row, m in frames.items()}
    result["psnr_gain_over_copy_db"] = frames["predicted"]["psnr_dataset"] - frames["copy"]["psnr_dataset"]
    result["vae_psnr_loss_db"] = frames["predicted"]["psnr_dataset"] - frames["decoded"]["psnr_dataset"]
    if n_flow == n:
        result["epe_px"] = {k: v / n for k, v in epe.items()}
    return result


def format_table(result: dict) -> str:
    """A plain-text table of :func:`evaluate_stage_one`'s result."""
    moving = "psnr_moving" in result["frames"]["copy"]
    lines = [
        f"stage one on {result['pairs']} pairs (PSNR: mean per pair, capped at {PSNR_MAX_DB:g} dB; PSNR-all: from the "
        f"mean MSE of all pairs" + ("; PSNR-moving: mean over the pairs with motion" if moving else "") + ")",
        f"{'rendered from':<14} {'PSNR dB':>8} {'PSNR-all':>9}"
        + (f" {'PSNR-moving':>12}" if moving else "")
        + f" {'SSIM':>7} {'L1':>8}",
    ]
    labels = {"predicted": "P field", "decoded": "VAE field", "copy": "copy I_0", "true_warp": "true field"}
    for row, m in result["frames"].items():
        mv = f" {m['psnr_moving']:12.2f}" if moving else ""
        lines.append(f"{labels[row]:<14} {m['psnr']:8.2f} {m['psnr_dataset']:9.2f}{mv} {m['ssim']:7.4f} {m['l1']:8.4f}")
    frames = result["frames"]
    for key in ("psnr", "psnr_dataset") + (("psnr_moving",) if moving else ()):
        lines.append(
            f"{key}: gain over copy: P {frames['predicted'][key] - frames['copy'][key]:+.2f} dB, "
            f"VAE {frames['decoded'][key] - frames['copy'][key]:+.2f} dB "
            f"(VAE vs P {frames['decoded'][key] - frames['predicted'][key]:+.2f} dB)"
        )
    if "epe_px" in result:
        e = result["epe_px"]
        lines.append(
            f"end-point error (px): P {e['predicted']:.3f}, VAE {e['decoded']:.3f}, zero field {e['zero']:.3f}"
        )
    return "\n".join(lines)
