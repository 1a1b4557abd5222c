#!/usr/bin/env python
"""Evaluate a stage-one checkpoint: rendered frames against the true ones, beside baselines.

Thin entry point: the code is lvmm.cli.eval_stage1 (installed as the console script `lvmm-eval-stage1`).
"""

from lvmm.cli.eval_stage1 import run

if __name__ == "__main__":
    run()
