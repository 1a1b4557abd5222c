"""Latent motion shards as stage two's batches (lvmm.datasets.latent)."""

from __future__ import annotations

import math

import pytest

from lvmm.datasets import latent
from tests.helpers.stage2 import write_latent_shards


def _batches(paths, num_frames=None):
    pipe = latent.latent_pipeline(paths, 5, resampled=False, shuffle=False, rank=0, world_size=1, num_frames=num_frames)
    return list(pipe)


def test_batches_carry_the_stored_motion_amount_of_the_frames_they_keep(tmp_path):
    (batch,) = _batches(write_latent_shards(tmp_path / "a", shards=1, per_shard=5, amounts=True))
    assert batch["amplitude"].tolist() == pytest.approx([n + 0.45 for n in range(5)])  # mean of 0.1 .. 0.8
    (prefix,) = _batches(write_latent_shards(tmp_path / "b", shards=1, per_shard=5, amounts=True), num_frames=4)
    assert prefix["z"].shape[1] == 4 and prefix["amplitude"].tolist() == pytest.approx([n + 0.25 for n in range(5)])
    (old,) = _batches(write_latent_shards(tmp_path / "c", shards=1, per_shard=5))  # written before the amounts
    assert all(math.isnan(a) for a in old["amplitude"].tolist())
