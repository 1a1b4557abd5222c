"""Throughput of the huge ImageBind vision and text encoders (random weights, nothing downloaded).

    python tools/bench/bench_imagebind.py                 # CPU always; a CUDA GPU too when present
    python tools/bench/bench_imagebind.py --device cpu --batch 1 --iters 1

It times the model's forward pass on ready-made inputs (``(B, 3, 224, 224)`` images, ``(B, 77)``
token ids; preprocessing is not included) and prints embeddings per second, latency per batch and
peak memory. Baselines, measured in the same run:

* CPU: the ``tiny`` configuration in float32, so the ratio is "huge is N times slower than tiny";
* GPU: the huge model in float32, so the ratio is the speed-up of bfloat16 autocast (what
  :class:`lvmm.imagebind.ImageBindEncoder` uses on GPU).

CPU peak memory is the process's peak resident set so far (it only grows: the small runs go first);
GPU peak memory is ``torch.cuda.max_memory_allocated`` of that measurement alone. The CPU load
average is printed because on a shared machine small (tiny) forwards are dominated by thread
contention; ``--threads 1`` steadies them.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time

import torch

from lvmm.imagebind import ImageBind, get_tokenizer

BENCH_TEXTS = [
    "a photo of a dog running on the beach",
    "a red car",
    "the sound of rain on a window",
    "an astronaut riding a horse",
]
KIB = 1024
TINY_MIN_ITERS = 10


def make_input(modality: str, batch: int, device: torch.device) -> torch.Tensor:
    if modality == "vision":
        return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    ids = get_tokenizer()([BENCH_TEXTS[i % len(BENCH_TEXTS)] for i in range(batch)])
    return ids.to(device)


def measure(
    model: ImageBind, modality: str, batch: int, iters: int, warmup: int, device: torch.device, bf16: bool
) -> dict:
    x = make_input(modality, batch, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for _ in range(warmup):
            model.encode(modality, x)
        sync()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model.encode(modality, x)
            sync()
            times.append(time.perf_counter() - t0)
    latency = sorted(times)[len(times) // 2]  # median: robust to a stray slow iteration
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / KIB**2
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB  # ru_maxrss is in KiB on Linux
    return {"emb_per_s": batch / latency, "latency_ms": latency * 1e3, "peak_mib": peak_mib}


def run_device(device: torch.device, args) -> list[str]:
    on_gpu = device.type == "cuda"
    batch = args.batch or (32 if on_gpu else 1)
    iters = args.iters or (10 if on_gpu else 2)
    warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    # (label, config, bf16); the first row of each modality is the baseline.
    runs = (
        [("huge fp32", "huge", False), ("huge bf16", "huge", True)]
        if on_gpu
        else [("tiny fp32", "tiny", False), ("huge fp32", "huge", False)]
    )
    where = (
        torch.cuda.get_device_name(device)
        if on_gpu
        else f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    lines = [
        f"device {device} ({where}), batch {batch}, {iters} timed iters after {warmup} warm-up (tiny: at least "
        f"{TINY_MIN_ITERS})"
    ]
    lines.append(f"{'modality':8} {'model':10} {'emb/s':>10} {'latency ms':>11} {'peak MiB':>9} {'ratio':>8}")
    for modality in args.modalities:
        base = None
        for label, config, bf16 in runs:
            t0 = time.perf_counter()
            model = ImageBind.random(config, seed=0, modalities=(modality,), device=device)
            build_s = time.perf_counter() - t0
            # The tiny model costs milliseconds, so more iterations steady its baseline for free.
            n = max(iters, TINY_MIN_ITERS) if config == "tiny" else iters
            r = measure(model, modality, batch, n, warmup, device, bf16)
            del model
            gc.collect()
            if on_gpu:
                torch.cuda.empty_cache()
            base = base or r
            ratio = r["emb_per_s"] / base["emb_per_s"]
            line = (
                f"{modality:8} {label:10} {r['emb_per_s']:10.2f} {r['latency_ms']:11.1f} {r['peak_mib']:9.0f} "
                f"{ratio:8.4g}x   (build {build_s:.1f}s)"
            )
            lines.append(line)
            print(line, file=sys.stderr, flush=True)
    baseline = "huge fp32 (ratio = bf16 speed-up)" if on_gpu else "tiny fp32 (ratio = huge / tiny throughput)"
    lines.append(f"ratio baseline: {baseline}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, plus the GPU when there is one"
    )
    parser.add_argument("--batch", type=int, help="batch size (default 1 on CPU, 32 on GPU)")
    parser.add_argument("--iters", type=int, help="timed iterations (default 2 on CPU, 10 on GPU)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first (default 1 on CPU, 3 on GPU)")
    parser.add_argument("--modalities", nargs="+", default=["vision", "text"], choices=["vision", "text"])
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = []
    if args.device in ("auto", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available")
        devices.append(torch.device("cuda"))
    report = [f"ImageBind encoder benchmark (random weights; torch {torch.__version__})"]
    for device in devices:
        report += run_device(device, args)
    if not torch.cuda.is_available():
        report.append("no CUDA device: GPU bf16 numbers not measured")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
