#!/usr/bin/env python
"""Embed a folder of images, texts or audio with ImageBind into ``.npy`` files.

Thin entry point: the code is lvmm.cli.embed (installed as the console script `lvmm-embed`).
"""

from lvmm.cli.embed import run

if __name__ == "__main__":
    run()
