#!/usr/bin/env python
"""Stage-two training throughput (clips/s), peak memory and model FLOPs per clip.

Configurations, their shapes derived from the named configs (``common.shapes``: frame size of stage
one's data, latent size = frame / (field_downsample x VAE reduction), K = stage two's ``num_frames``):
``tiny`` (configs tiny + tiny: 4 x 8 x 8 latents, K = 8) and ``128`` (mug + mug_128: 4 x 8 x 8
latents, K = 39, the MUG/MHAD/NATOPS U-Net) on CPU; ``512`` (general512 + general_512: 4 x 16 x 16,
K = 8, the paper's U-Net) in bf16 on a GPU when one is available. A training step is forward,
backward and AdamW on a synthetic batch. FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` for one clip's forward + backward, so utilisation =
achieved FLOP/s / the baseline: a dense matmul's FLOP/s measured in the same run on the same device
and dtype.

    python tools/bench/bench_stage2.py                 # tiny and 128 on CPU, 512 if a GPU is present
    python tools/bench/bench_stage2.py --configs tiny --steps 5
"""

from __future__ import annotations

import argparse
import resource
import time
from contextlib import nullcontext

import torch

from lvmm.checkpoint import build
from lvmm.diffusion.schedules import Diffusion, DiffusionConfig
from lvmm.evaluation.perf import load_average, shapes

# name: (stage-one config, stage-two config, batch on CPU, batch on GPU); shapes come from the configs
CONFIGS = {
    "tiny": ("tiny", "tiny", 16, 64),
    "128": ("mug", "mug_128", 1, 16),
    "512": ("general512", "general_512", None, 5),
}
MATMUL_SIZE = 2048


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=dtype)
    b = torch.randn_like(a)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * MATMUL_SIZE**3 * repeats / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_batch(batch: int, frames: int, size: tuple[int, int], cond_dim: int, device) -> dict:
    return {
        "x0": torch.randn(batch, 4, frames, *size, device=device),
        "z0": torch.randn(batch, 4, *size, device=device),
        "tokens": torch.randn(batch, 2, cond_dim, device=device),
        "token_mask": torch.ones(batch, 2, dtype=torch.bool, device=device),
    }


def bench(name: str, device: torch.device, steps: int) -> dict:
    stage1, stage2, cpu_batch, gpu_batch = CONFIGS[name]
    s = shapes(stage1, stage2)
    size, frames = s.latent, s.num_frames
    batch = gpu_batch if device.type == "cuda" else cpu_batch
    unet = build(s.unet).to(device).train()
    diffusion = Diffusion(DiffusionConfig())
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    data = make_batch(batch, frames, size, unet.cond_dim, device)

    def step(d: dict) -> None:
        with autocast:
            loss = diffusion.training_loss(lambda x, t: unet(x, t, d["z0"], d["tokens"], d["token_mask"]), d["x0"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    from torch.utils.flop_counter import FlopCounterMode

    one = {k: v[:1] for k, v in data.items()}
    with FlopCounterMode(display=False) as counter:
        with autocast:
            loss = diffusion.training_loss(
                lambda x, t: unet(x, t, one["z0"], one["tokens"], one["token_mask"]), one["x0"]
            )
        loss.backward()
    flops_per_clip = counter.get_total_flops()
    opt.zero_grad(set_to_none=True)

    step(data)  # warm-up (allocations, kernels)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(data)
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    peak = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    params = sum(p.numel() for p in unet.parameters())
    return {
        "config": name,
        "device": device.type,
        "batch": batch,
        "frames": frames,
        "latent": f"4x{size[0]}x{size[1]}",
        "shapes": s.describe(),
        "params_M": params / 1e6,
        "s_per_step": seconds,
        "clips_per_s": batch / seconds,
        "gflop_per_clip": flops_per_clip / 1e9,
        "achieved_gflop_per_s": flops_per_clip * batch / seconds / 1e9,
        "peak_memory_gib": peak / 2**30,
        "peak_kind": "cuda allocated" if device.type == "cuda" else "process RSS",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="tiny,128,512", help="comma-separated subset of tiny,128,512")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cpu, gpu = torch.device("cpu"), torch.device("cuda") if torch.cuda.is_available() else None
    baselines = {"cpu": matmul_flops_per_s(cpu, torch.float32)}
    if gpu is not None:
        baselines["cuda"] = matmul_flops_per_s(gpu, torch.bfloat16)
    print(
        f"{load_average()}; baseline dense matmul ({MATMUL_SIZE}^3): "
        + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in baselines.items())
    )
    rows = []
    for name in args.configs.split(","):
        if name == "512" and gpu is None:
            print("512: skipped (no GPU)")
            continue
        device = gpu if name == "512" else cpu
        r = bench(name, device, args.steps)
        r["utilisation_vs_matmul"] = r["achieved_gflop_per_s"] * 1e9 / baselines[r["device"]]
        rows.append(r)
        print(r["shapes"])
        print(
            f"{name:>5} [{r['device']}] {r['params_M']:.2f} M params, batch {r['batch']} x {r['frames']} frames "
            f"{r['latent']}: {r['s_per_step']:.3f} s/step, {r['clips_per_s']:.2f} clips/s, "
            f"{r['gflop_per_clip']:.2f} GFLOP/clip (fwd+bwd), {r['achieved_gflop_per_s']:.1f} GFLOP/s = "
            f"{r['utilisation_vs_matmul']:.2f} x matmul, peak {r['peak_memory_gib']:.2f} GiB ({r['peak_kind']})",
            flush=True,
        )
    if len(rows) > 1:
        base = rows[0]
        for r in rows[1:]:
            print(
                f"{r['config']} vs {base['config']}: {r['gflop_per_clip'] / base['gflop_per_clip']:.1f}x FLOPs per "
                "clip, "
                f"{base['clips_per_s'] / r['clips_per_s']:.1f}x time per clip"
            )


if __name__ == "__main__":
    main()
