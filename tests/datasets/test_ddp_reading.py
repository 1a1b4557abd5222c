"""Two real DDP ranks (gloo, CPU) reading one shard set: equal batch counts, disjoint shards."""

import json
import subprocess
import sys
from pathlib import Path

import torch.multiprocessing as mp

from tests.helpers import ROOT


def _rank_main(rank: int, world: int, port: int, shards: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    from lvmm.datasets.datamodule import ShardDataModule

    dm = ShardDataModule(
        train_shards=shards, mode="pairs", batch_size=2, num_workers=0, size=32, epoch_length=5, max_interval=4
    )
    batches, urls = 0, set()
    for batch in dm.train_dataloader():
        batches += 1
        urls |= {k.split("/")[0] for k in batch["key"]}
    counts = [None] * world
    dist.all_gather_object(counts, batches)  # both ranks must reach this collective: an uneven epoch would hang here
    Path(out, f"rank{rank}.json").write_text(json.dumps({"batches": batches, "keys": sorted(urls), "all": counts}))
    dist.destroy_process_group()


def test_two_gloo_ranks_get_equal_batches_from_disjoint_shards(tmp_path):
    shards = tmp_path / "shards"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "make_shards.py"),
        "--recipe",
        "procedural",
        "--num-clips",
        "8",
        "--size",
        "32",
        "--clip-len",
        "5",
        "--out",
        str(shards),
        "--name",
        "proc",
        "--format",
        "npy",
        "--max-samples",
        "2",
        "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(shards.glob("proc-*.tar"))
    assert len(files) == 4
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(2, port, str(shards / "proc-*.tar"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["batches"] == r1["batches"] == 5 and r0["all"] == [5, 5]
    # keys are per clip; each rank's clips come from its own shards, so no clip is seen by both
    assert not set(r0["keys"]) & set(r1["keys"])
