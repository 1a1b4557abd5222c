#!/usr/bin/env python
"""Run a trained stage one over video shards and write latent motion shards (docs/data-formats.md, Latent motion
shards).

Thin entry point: the code is lvmm.cli.encode_motion (installed as the console script `lvmm-encode-motion`).
"""

from lvmm.cli.encode_motion import run

if __name__ == "__main__":
    run()
