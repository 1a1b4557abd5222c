#!/usr/bin/env python
"""Stage-one training-step throughput (samples/s) and peak memory for the shipped configs.

    python tools/bench/bench_stage1.py   # tiny and 128x128 on CPU; 512x512 bf16 on a GPU if present
    python tools/bench/bench_stage1.py --configs configs/stage1/tiny.yaml --steps 5

Each config runs in its own process (so that the CPU peak RSS is that config's alone): the model is built
from the YAML's ``model`` section, fed random frames of the config's size (no data loading is timed),
``--batch-size`` pairs per step (8 by default, so CPU runs stay short; 0 for each config's own), and timed over
``--steps`` optimiser steps after one warm-up
step, with every loss of the schedule switched on. Ratios are against the first config measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CPU_CONFIGS = ["configs/stage1/tiny.yaml", "configs/stage1/mug.yaml"]
GPU_CONFIGS = ["configs/stage1/general512.yaml"]


def _model_and_batch(config: str, batch_size: int | None):
    import pytorch_lightning as pl
    import torch
    import yaml
    from jsonargparse import ArgumentParser

    cfg = yaml.safe_load((ROOT / config).read_text())
    parser = ArgumentParser()
    parser.add_subclass_arguments(pl.LightningModule, "model")
    model = parser.instantiate(parser.parse_object({"model": cfg["model"]})).model
    data = cfg["data"]["init_args"]
    h, w = data.get("size") or (data.get("height", 64), data.get("width", 64))
    b = batch_size or data.get("batch_size", 8) * (model.hparams.pairs_per_clip if data.get("mode") == "clips" else 1)
    g = torch.Generator().manual_seed(0)
    img0 = torch.rand(b, 3, h, w, generator=g)
    batch = {
        "img0": img0,
        "imgk": torch.roll(img0, 1, -1),
        "flow": torch.zeros(b, 2, h, w),
        "has_flow": torch.ones(b, dtype=torch.bool),
    }
    return model, batch, cfg


def run_one(config: str, steps: int, batch_size: int | None, device: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    model, batch, cfg = _model_and_batch(config, batch_size)
    model = model.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step = max(model.hparams.vae_start_step + model.hparams.vae_warmup_steps, 1)  # all terms on
    bf16 = device == "cuda" and "bf16" in str(cfg.get("trainer", {}).get("precision", ""))

    def one_step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model.compute_losses(batch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    one_step()  # warm-up (allocations, kernel selection)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    n = len(batch["img0"])
    out = {
        "config": config,
        "device": device,
        "batch": n,
        "size": list(batch["img0"].shape[-2:]),
        "steps": steps,
        "bf16": bf16,
        "step_s": elapsed / steps,
        "samples_per_s": n * steps / elapsed,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }
    if device == "cuda":
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        out["peak_mem_over_start_mb"] = out["peak_mem_mb"] - rss_before
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=None)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="pairs per step for every config (0: each config's own batch size, e.g. 32 at 128 px)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", help="write results as JSON")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.batch_size, args.device or "cpu", args.threads)))
        return []

    import torch

    jobs = [(c, args.device or "cpu") for c in (args.configs or CPU_CONFIGS)]
    if args.configs is None and torch.cuda.is_available():
        jobs += [(c, "cuda") for c in GPU_CONFIGS]
    results = []
    for config, device in jobs:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            config,
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
            "--device",
            device,
        ]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        elif device == "cpu":
            print(f"note: {config} at its own batch size on a CPU may take minutes per step", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"{config} on {device} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if not results:
        return results
    base = results[0]
    print(
        f"{'config':<34} {'dev':<5} {'batch':>5} {'size':>9} {'step s':>8} {'samples/s':>10} {'x base':>7} "
        f"{'peak MB':>9} {'x base':>7}"
    )
    for r in results:
        print(
            f"{r['config']:<34} {r['device']:<5} {r['batch']:>5} {'x'.join(map(str, r['size'])):>9} {r['step_s']:8.3f} "
            f"{r['samples_per_s']:10.2f} {r['samples_per_s'] / base['samples_per_s']:7.3f} {r['peak_mem_mb']:9.0f} "
            f"{r['peak_mem_mb'] / base['peak_mem_mb']:7.2f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
