"""Shard readers: item formats, one crop/flip for frames and fields, equal batches on every DDP rank."""

from __future__ import annotations

import random

import pytest
import torch

from lvmm.datasets.augment import ClipAugment, CropFlip
from lvmm.datasets.datamodule import ShardDataModule
from lvmm.datasets.readers import choose_frames, expand_shards, make_loader, make_stream
from lvmm.datasets.recipes import FolderRecipe, ProceduralRecipe
from lvmm.datasets.writer import ShardSettings, write_shards
from lvmm.warp import warp
from tests.helpers.video import moving_pattern, write_video

SIZE = 64


def _write(sources, out, settings, **kw):
    return write_shards(sources, out, "t", settings, progress=False, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def procedural_shards(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("procedural")
    sources = ProceduralRecipe(num_clips=8, seed=3).sources()
    _write(sources, out, ShardSettings(size=(SIZE, SIZE), clip_len=5, fmt="npy"), max_samples=2)
    return str(out / "t-*.tar")


@pytest.fixture(scope="module")
def video_shards(tmp_path_factory) -> tuple[str, int]:
    """Five inputs of uneven length in shards of uneven size (labels from captions only)."""
    root = tmp_path_factory.mktemp("videos")
    for i, n in enumerate((16, 24, 16, 32, 20)):
        write_video(root / f"v{i}.mp4", moving_pattern(n, 32, 32, seed=i))
    (root / "v0.txt").write_text("waves")
    out = root / "shards"
    _write(
        FolderRecipe(str(root)).sources(),
        out,
        ShardSettings(size=(32, 32), clip_len=8, stride=4, fmt="mp4"),
        max_samples=3,
    )
    return str(out / "t-*.tar"), len(list(out.glob("t-*.tar")))


def _warp_error(img0, imgk, flow) -> float:
    return (warp(img0[None], flow[None]) - imgk[None]).abs()[..., 4:-4, 4:-4].mean().item()


def test_pairs_share_crop_and_flip_with_their_field(procedural_shards):
    stream = make_stream(
        procedural_shards,
        "pairs",
        batch_size=1,
        length=48,
        size=48,
        max_interval=4,
        crop_scale=(0.6, 0.9),
        hflip=True,
        seed=1,
    )
    checked, telling = 0, 0
    for batch in stream:
        img0, imgk, flow = batch["img0"][0], batch["imgk"][0], batch["flow"][0]
        assert img0.shape == (3, 48, 48) and flow.shape == (2, 48, 48) and batch["has_flow"].all()
        assert 1 <= int(batch["k"]) <= 4 and isinstance(batch["key"][0], str)
        copy = (img0 - imgk).abs()[..., 4:-4, 4:-4].mean().item()
        if copy < 0.01:
            continue  # a still clip says nothing about geometry
        good = _warp_error(img0, imgk, flow)
        # the field with dx of the wrong sign tells whether this item was mirrored
        mirrored = _warp_error(img0, imgk, flow * torch.tensor([-1.0, 1.0]).view(2, 1, 1))
        checked += 1
        assert good < 0.6 * copy and good <= mirrored + 1e-6, (batch["key"], good, mirrored, copy)
        telling += mirrored > 1.5 * good  # items with enough horizontal motion to tell the sign of dx
    assert checked >= 10 and telling >= 3


def test_augment_flip_negates_dx_and_crop_rescales():
    aug = ClipAugment((16, 16))
    flows = torch.zeros(1, 2, 32, 32)
    flows[:, 0] = 0.1  # dx of 1.6 px on a 32-px frame
    p = CropFlip(top=8, left=8, height=16, width=16, flip=True)
    out = aug.apply_flows(flows, p, (32, 32))
    assert torch.allclose(out[:, 0], torch.full((1, 16, 16), -0.2))  # same pixels, half the frame: twice the units
    assert torch.allclose(out[:, 1], torch.zeros(1, 16, 16))


def test_clip_items_and_frame_choice(procedural_shards, video_shards):
    stream = make_stream(
        procedural_shards,
        "clips",
        batch_size=2,
        length=2,
        size=SIZE,
        num_frames=4,
        sampling="random_sorted",
        train=False,
    )
    batch = next(iter(stream))
    assert batch["frames"].shape == (2, 4, 3, SIZE, SIZE) and batch["flows"].shape == (2, 4, 2, SIZE, SIZE)
    assert batch["has_flow"].all() and (batch["label"] >= 0).all() and all(batch["caption"])
    assert batch["flows"][:, 0].abs().max() == 0  # frame 0 comes first: its field is zero
    assert 0 <= batch["frames"].min() and batch["frames"].max() <= 1

    pattern, _ = video_shards
    batch = next(iter(make_stream(pattern, "clips", batch_size=4, length=1, size=32, num_frames=6, train=False)))
    assert not batch["has_flow"].any() and (batch["label"] == -1).all()
    assert batch["flows"].abs().max() == 0 and set(batch["caption"]) <= {"", "waves"}

    rng = random.Random(0)
    for _ in range(20):
        idx = choose_frames(30, 8, "random_sorted", rng, keep_first=False)
        assert idx[0] == 0 and idx == sorted(idx) and len(set(idx)) == 8
    assert choose_frames(3, 5, "consecutive", rng, keep_first=True) == [0, 1, 2, 2, 2]
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_shards("/nonexistent/t-{000000..000001}.tar")


def test_ddp_ranks_get_equal_batches_from_disjoint_shards(video_shards, monkeypatch):
    pattern, num_shards = video_shards
    assert num_shards >= 4
    keys, counts = [], []
    for rank in range(2):
        # as torchrun / Lightning's DDP environment tells a process its place
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = make_stream(pattern, "pairs", batch_size=3, length=7, size=32, seed=rank)
        loader = make_loader(stream, num_workers=2 if rank else 0)
        batches = list(loader)
        counts.append(len(batches))
        keys.append({k for b in batches for k in b["key"]})
        assert len(loader) == 7
    assert counts == [7, 7]
    assert keys[0] and keys[1] and not keys[0] & keys[1]


def test_datamodule_batches(procedural_shards):
    dm = ShardDataModule(
        procedural_shards,
        procedural_shards,
        mode="pairs",
        batch_size=4,
        num_workers=0,
        max_interval=4,
        size=[32, 48],
        epoch_length=3,
        val_length=2,
    )
    train = list(dm.train_dataloader())
    assert len(train) == 3 and train[0]["img0"].shape == (4, 3, 32, 48) and train[0]["k"].dtype == torch.int64
    val1 = [b["key"] for b in dm.val_dataloader()]
    val2 = [b["key"] for b in dm.val_dataloader()]
    assert val1 == val2 and len(val1) == 2  # evaluation is the same every epoch
    assert ShardDataModule(procedural_shards, None).val_dataloader() == []
