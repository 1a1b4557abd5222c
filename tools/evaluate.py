#!/usr/bin/env python
"""Evaluate generated videos against reference shards: FVD, FID on frames, LPIPS, PSNR and SSIM.

Thin entry point: the code is lvmm.cli.evaluate (installed as the console script `lvmm-evaluate`).
"""

from lvmm.cli.evaluate import run

if __name__ == "__main__":
    run()
