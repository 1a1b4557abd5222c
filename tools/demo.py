#!/usr/bin/env python
"""The main job on the built-in data (README's first command).

For now: make the built-in procedural corpus and write it as webdataset shards, then print what was
made and where. Later steps (training both stages, animation, the report) are added as they land.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/demo", help="output folder")
    parser.add_argument("--clips", type=int, default=64, help="training clips in the corpus")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    args = parser.parse_args(argv)

    import webdataset as wds
    from tqdm import tqdm

    from lvmm.datasets.procedural import make_clip

    out = Path(args.out) / "shards"
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for split, n in (("train", args.clips), ("val", max(8, args.clips // 8))):
        pattern = str(out / f"procedural-{split}-%06d.tar")
        with wds.ShardWriter(pattern, maxcount=32, verbose=0) as sink:
            for i in tqdm(range(n), desc=f"procedural {split} clips"):
                clip = make_clip(0 if split == "train" else 1, i, height=args.size, width=args.size, num_frames=args.frames, split=split)
                buf = io.BytesIO()
                np.save(buf, clip.frames, allow_pickle=False)
                meta = {"family": clip.family, "label": clip.label, "caption": clip.caption, "photo": clip.photo, "fps": clip.fps}
                sink.write({"__key__": f"{split}-{i:06d}", "frames.npy": buf.getvalue(), "json": json.dumps(meta).encode(), "txt": clip.caption.encode()})
        made[split] = sorted(str(p) for p in out.glob(f"procedural-{split}-*.tar"))
    for split, files in made.items():
        print(f"[demo] {split}: {len(files)} shard(s) in {out}")
    return made


if __name__ == "__main__":
    main()
