"""Drill: SIGKILL at several points of make_shards and encode_motion (and one killed worker); reruns finish the
job with shards equal to an uninterrupted run's, nothing lost, nothing twice. Also the guards around resuming."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lvmm.datasets.recipes import FolderRecipe
from lvmm.datasets.writer import ShardSettings, write_shards
from tests.helpers import ROOT as REPO
from tests.helpers.shards import load_samples, make_shards_main, manifest_inputs, shards_of
from tests.helpers.video import moving_pattern, write_video

SETTINGS = dict(size=(32, 32), clip_len=4, stride=2, fmt="npy")
MAX_BYTES = 52_000  # three 14 kB samples per shard file: inputs of 9 clips span shards

# a run of write_shards that SIGKILLs itself at the n-th call of one of the writer's steps
KILL_SCRIPT = """
import os, signal, sys
import lvmm.datasets.writer as w
target, n = {target!r}, {n}
owner, name = target.split(".")
cls = getattr(w, owner)
orig = getattr(cls, name)
calls = [0]
def patched(*a, **k):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(*a, **k)
setattr(cls, name, patched)
from lvmm.datasets.recipes import FolderRecipe
w.write_shards(FolderRecipe({root!r}).sources(), {out!r}, "t", w.ShardSettings(**{settings!r}), max_bytes={max_bytes},
               progress=False, log=lambda m: None)
"""
KILL_POINTS = ["ShardFile.add", "ShardFile.rename", "Manifest.append", "ShardFile.close"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_corpus")
    for i in range(3):
        write_video(root / f"v{i}.mp4", moving_pattern(20, 32, 32, seed=i), fps=8.0)
    write_video(root / "short.mp4", moving_pattern(3, 32, 32, seed=9), fps=8.0)  # no full clip
    (root / "bad.mp4").write_text("not a video")
    return root


def run(root, out, **kw):
    return write_shards(
        FolderRecipe(str(root)).sources(),
        out,
        "t",
        ShardSettings(**SETTINGS),
        max_bytes=MAX_BYTES,
        progress=False,
        log=lambda m: None,
        **kw,
    )


def assert_same_as(out: Path, ref: Path, inputs: list[str]):
    assert [p.name for p in shards_of(out, "t")] == [p.name for p in shards_of(ref, "t")]
    for a, b in zip(shards_of(out, "t"), shards_of(ref, "t")):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs from the uninterrupted run"
    assert sorted(manifest_inputs(out, "t")) == sorted(inputs)  # every readable input exactly once
    assert set(load_samples(shards_of(out, "t"))) == set(load_samples(shards_of(ref, "t")))
    assert not list(out.glob(".t*tmp*")) and not list(out.glob(".t.spool*"))


def test_make_shards_killed_at_random_points_resumes_to_identical_shards(corpus, tmp_path):
    ref = run(corpus, tmp_path / "ref")
    assert ref.clips == 27 and len(ref.shards) == 9 and len(ref.failed) == 1
    out = tmp_path / "killed"
    rng = random.Random(15)
    kills = [(target, rng.randint(1, 4)) for target in KILL_POINTS]
    for target, n in kills:  # one kill after another on the same folder, each at a fresh point
        script = KILL_SCRIPT.format(
            tests=str(REPO / "tests"),
            target=target,
            n=n,
            root=str(corpus),
            out=str(out),
            settings=SETTINGS,
            max_bytes=MAX_BYTES,
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert proc.returncode == -signal.SIGKILL, (target, n, proc.stderr[-2000:])
    resumed = run(corpus, out)
    assert resumed.already_done + resumed.read + len(resumed.failed) + len(resumed.previously_failed) == 5
    assert_same_as(out, tmp_path / "ref", ["v0.mp4", "v1.mp4", "v2.mp4", "short.mp4"])
    again = run(corpus, out)
    assert again.read == 0 and not again.shards


def test_a_killed_worker_ends_the_run_with_an_error_and_a_rerun_finishes(tmp_path):
    root = tmp_path / "in"
    for i in range(6):
        write_video(root / f"v{i}.mp4", moving_pattern(64, 64, 64, seed=i), fps=8.0)
    args = [
        "--input",
        str(root),
        "--size",
        "64",
        "--clip-len",
        "2",
        "--format",
        "mp4",
        "--max-samples",
        "10",
        "--no-progress",
    ]
    assert make_shards_main()([*args, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "make_shards.py"), *args, "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed, deadline = None, time.time() + 60
    while killed is None and time.time() < deadline and proc.poll() is None:
        kids = subprocess.run(
            ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(proc.pid)], capture_output=True, text=True
        ).stdout
        workers = [int(line.split()[0]) for line in kids.splitlines() if "spawn_main" in line]
        if len(workers) == 2:  # the pool is up and working
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.05)
    assert killed is not None, "no worker was seen"
    _, err = proc.communicate(timeout=60)  # before the fix: the main process waited forever
    assert proc.returncode == 1 and "worker process died" in err
    assert make_shards_main()([*args, "--out", str(out), "--workers", "2"]) == 0

    assert [p.read_bytes() for p in shards_of(out, "folder")] == [
        p.read_bytes() for p in shards_of(tmp_path / "ref", "folder")
    ]
    assert sorted(manifest_inputs(out, "folder")) == [f"v{i}.mp4" for i in range(6)]


def test_max_bytes_holds_within_one_input(tmp_path):
    from lvmm.media import atomic_write_bytes, encode_gif

    atomic_write_bytes(tmp_path / "in" / "long.gif", encode_gif(moving_pattern(200, 32, 32), 8.0))
    summary = run(tmp_path / "in", tmp_path / "out")
    shards = shards_of(tmp_path / "out", "t")
    assert summary.clips == 99 and len(shards) == 33
    assert max(p.stat().st_size for p in shards) <= MAX_BYTES
    assert len(load_samples(shards)) == 99


def test_upsampled_clips_have_unique_keys(tmp_path):
    write_video(tmp_path / "in" / "a.mp4", moving_pattern(8, 32, 32), fps=8.0)
    summary = write_shards(
        FolderRecipe(str(tmp_path / "in")).sources(),
        tmp_path / "out",
        "t",
        ShardSettings(size=(32, 32), clip_len=2, stride=1, fps=16.0, fmt="npy"),
        progress=False,
        log=lambda m: None,
    )
    assert (
        summary.clips == 14 and len(load_samples(shards_of(tmp_path / "out", "t"))) == 14
    )  # load_samples fails on a repeat


def test_mp4_shards_agree_between_runs_within_the_documented_tolerance(corpus, tmp_path):
    import numpy as np

    from lvmm.datasets.readers import decode
    from lvmm.datasets.writer import MP4_RERUN_TOLERANCE

    settings = dict(SETTINGS, fmt="mp4")
    for name in ("a", "b"):
        write_shards(
            FolderRecipe(str(corpus)).sources(),
            tmp_path / name,
            "t",
            ShardSettings(**settings),
            workers=2,
            progress=False,
            log=lambda m: None,
        )
    a, b = load_samples(shards_of(tmp_path / "a", "t")), load_samples(shards_of(tmp_path / "b", "t"))
    assert a and a.keys() == b.keys()
    assert [p.name for p in shards_of(tmp_path / "a", "t")] == [p.name for p in shards_of(tmp_path / "b", "t")]
    for key in a:
        assert a[key]["json"] == b[key]["json"]
        fa, fb = decode(a[key]).frames(None).astype(float), decode(b[key]).frames(None).astype(float)
        assert fa.shape == fb.shape and np.abs(fa - fb).mean() <= MP4_RERUN_TOLERANCE, key


def test_another_corpus_a_concurrent_run_and_foreign_files(corpus, tmp_path):
    main = make_shards_main()
    other = tmp_path / "other"
    write_video(other / "v0.mp4", moving_pattern(8, 32, 32, seed=5), fps=8.0)
    base = ["--out", str(tmp_path / "out"), "--size", "32", "--clip-len", "4", "--format", "npy", "--no-progress"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "folder-000000.tar").write_bytes(b"a file this writer did not write")
    assert main(["--input", str(corpus), *base]) == 0
    assert (
        tmp_path / "out" / "folder-000000.tar"
    ).read_bytes() == b"a file this writer did not write"  # kept, and skipped
    assert main(["--input", str(other), *base]) == 2  # another input root into the same --out: refused
    assert main(["--input", str(corpus), "--split", "train", *base]) == 2
    # a concurrent writer on the same --out and name is refused while the lock is held
    import fcntl

    fd = os.open(tmp_path / "out" / ".folder.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert main(["--input", str(corpus), *base]) == 2
    finally:
        os.close(fd)
    assert main(["--input", str(corpus), *base]) == 0


ENCODE_KILL = """
import os, signal

import lvmm.datasets.latent_encoding as le
owner = le.JsonlManifest if {method!r} == "append" else le.LatentShardWriter
orig, calls = getattr(owner, {method!r}), [0]
def patched(*a, **k):
    calls[0] += 1
    if calls[0] == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(*a, **k)
setattr(owner, {method!r}, patched)
from lvmm.cli.encode_motion import main
main({argv!r})
"""


def test_encode_motion_killed_at_random_points_resumes_and_retries_unreadable_shards(tmp_path):
    import tarfile

    from lvmm.cli.encode_motion import main
    from lvmm.datasets.latent_encoding import iter_tar_samples, read_manifests
    from lvmm.datasets.recipes import ProceduralRecipe
    from tests.helpers.pipeline import stage_one_checkpoint

    write_shards(
        ProceduralRecipe(num_clips=3).sources(),
        tmp_path / "shards",
        "proc",
        ShardSettings(size=(32, 32), clip_len=9, fmt="npy"),
        max_samples=1,
        progress=False,
        log=lambda m: None,
    )
    shards = shards_of(tmp_path / "shards", "proc")
    ckpt = stage_one_checkpoint(tmp_path / "s1.safetensors")
    bad = tmp_path / "shards" / "proc-999999.tar"
    bad.write_bytes(b"not a tar yet")
    argv = lambda out: [
        "--ckpt",
        str(ckpt),
        "--shards",
        *map(str, shards),
        str(bad),
        "--out",
        str(out),
        "--threshold",
        "1e9",
        "--accelerator",
        "cpu",
        "--devices",
        "1",
        "--max-segments",
        "1",
    ]
    rng = random.Random(15)
    out = tmp_path / "killed"
    # after a shard's rename but before its manifest line (the first manifest append); then in the middle of a
    # later shard
    for method, n in [("append", 1), ("write_on_batch_end", rng.randint(2, 3))]:
        script = ENCODE_KILL.format(method=method, n=n, argv=argv(out))
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    with open(out / "manifest-rank0.jsonl", "a") as f:
        f.write('{"input": "proc-0000')  # a torn last line, as a kill mid-append leaves it
    summary = main(argv(out))
    assert summary["unreadable"] and "proc-999999.tar" in summary["unreadable"][0]
    assert "proc-999999.tar" not in {r["input"] for r in read_manifests(out)}  # not recorded as finished
    reference = main(argv(tmp_path / "ref"))
    names = lambda d: sorted(p.name for p in d.glob("latent-*.tar"))
    assert names(out) == names(tmp_path / "ref") and len(names(out)) == 3
    for name in names(out):
        a = dict(iter_tar_samples(str(out / name)))
        b = dict(iter_tar_samples(str(tmp_path / "ref" / name)))
        assert a.keys() == b.keys() and len(a) == 1 and all(a[k]["json"] == b[k]["json"] for k in a)
    assert sorted(r["input"] for r in read_manifests(out)) == sorted(p.name for p in shards)  # each once
    assert summary["kept"] == reference["kept"] == 3
    assert not list(out.glob(".*tmp*"))
    # the unreadable shard is retried by the next run: once it is readable, it is encoded
    bad.write_bytes(shards[0].read_bytes())
    retried = main(argv(out))
    assert not retried["unreadable"] and "proc-999999.tar" in {r["input"] for r in read_manifests(out)}
    assert tarfile.is_tarfile(out / "latent-proc-999999.tar")
