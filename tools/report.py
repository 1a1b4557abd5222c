#!/usr/bin/env python
"""The demo's report: how well each part of a trained LVMM works, measured, in markdown with plots.

Thin entry point: the code is lvmm.cli.report (installed as the console script `lvmm-report`).
"""

from lvmm.cli.report import run

if __name__ == "__main__":
    run()
