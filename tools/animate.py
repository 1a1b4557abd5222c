#!/usr/bin/env python
"""Animate still images with a trained LVMM (docs/method.md, Inference: animating a photo).

Thin entry point: the code is lvmm.cli.animate (installed as the console script `lvmm-animate`).
"""

from lvmm.cli.animate import main

if __name__ == "__main__":
    main()
