#!/usr/bin/env python
"""Turn a folder of videos, frame folders or a dataset recipe into webdataset shards.

Thin entry point: the code is lvmm.cli.make_shards (installed as the console script `lvmm-make-shards`).
"""

from lvmm.cli.make_shards import run

if __name__ == "__main__":
    run()
