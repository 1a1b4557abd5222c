#!/usr/bin/env python
"""Train either stage through the Lightning CLI.

Thin entry point: the code is lvmm.cli.train (installed as the console script `lvmm-train`).
"""

from lvmm.cli.train import run

if __name__ == "__main__":
    run()
