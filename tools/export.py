#!/usr/bin/env python
"""Export trained checkpoints as a model package that loads in one line.

Thin entry point: the code is lvmm.cli.export (installed as the console script `lvmm-export`).
"""

from lvmm.cli.export import run

if __name__ == "__main__":
    run()
