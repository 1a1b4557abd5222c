#!/usr/bin/env python
"""A web page for animating photos with a trained LVMM (Gradio).

Thin entry point: the code is lvmm.cli.app (installed as the console script `lvmm-app`).
"""

from lvmm.cli.app import main

if __name__ == "__main__":
    main()
