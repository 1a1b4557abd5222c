"""Readers skip a corrupt sample, count it and name its shard and key; validation is split by rank."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from lvmm.datasets import latent
from lvmm.datasets.readers import make_stream
from tests.helpers.pipeline import make_video_shards
from tests.helpers.stage2 import write_latent_shards


def _corrupt_member(shard: Path, suffix: str) -> str:
    """Rewrite ``shard`` with the first member ending in ``suffix`` replaced by garbage; returns its key."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]
    key = None
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            if key is None and m.name.endswith(suffix):
                key, data = m.name[: -len(suffix)], b"not an array"
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    assert key is not None
    return key


def test_video_reader_skips_a_corrupt_sample_and_names_it(tmp_path):
    shards = make_video_shards(tmp_path / "shards", clips=4, size=32, frames=5, per_shard=2)
    bad = _corrupt_member(shards[0], ".frames.npy")
    stream = make_stream(
        [str(s) for s in shards],
        "clips",
        batch_size=1,
        length=6,
        size=32,
        num_frames=3,
        train=False,
        rank=0,
        world_size=1,
    )
    keys = [b["key"][0] for b in stream]  # cycles the shards in order, without the bad one
    assert len(keys) == 6 and bad not in keys and len(set(keys)) == 3
    assert stream.skipped and all(str(shards[0]) in s and bad in s for s in stream.skipped)


def test_latent_reader_skips_a_corrupt_sample(tmp_path):
    paths = write_latent_shards(tmp_path, shards=1, per_shard=4)
    bad = _corrupt_member(Path(paths[0]), ".motion.npy")
    latent.SKIPPED.clear()
    pipe = latent.latent_pipeline(paths, 2, resampled=False, shuffle=False, rank=0, world_size=1)
    keys = [k for b in pipe for k in b["key"]]
    assert sorted(keys) == sorted({f"clip{i:04d}" for i in range(4)} - {bad})
    assert len(latent.SKIPPED) == 1 and paths[0] in latent.SKIPPED[0] and bad in latent.SKIPPED[0]


def test_latent_validation_is_split_by_rank(tmp_path):
    paths = write_latent_shards(tmp_path, shards=1, per_shard=7)  # one shard, two ranks
    per_rank = [
        [
            k
            for b in latent.latent_pipeline(paths, 2, resampled=False, shuffle=False, rank=r, world_size=2)
            for k in b["key"]
        ]
        for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1]) == 3  # equal shares; the odd one out is dropped
    assert not set(per_rank[0]) & set(per_rank[1])
    everything = [
        k
        for b in latent.latent_pipeline(paths, 2, resampled=False, shuffle=False, rank=0, world_size=1)
        for k in b["key"]
    ]
    assert len(everything) == 7 and np.isin(per_rank[0] + per_rank[1], everything).all()
