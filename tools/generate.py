#!/usr/bin/env python
"""Generate one video per test sample (the benchmark protocol), named by the sample's key.

Thin entry point: the code is lvmm.cli.generate (installed as the console script `lvmm-generate`).
"""

from lvmm.cli.generate import run

if __name__ == "__main__":
    run()
