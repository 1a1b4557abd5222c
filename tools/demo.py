#!/usr/bin/env python
"""The main job: built-in data to a seamless loop of a real photograph, with a report.

Thin entry point: the code is lvmm.cli.demo (installed as the console script `lvmm-demo`).
"""

from lvmm.cli.demo import run

if __name__ == "__main__":
    run()
