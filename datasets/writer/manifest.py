"""The state a shard run resumes from: its manifest of finished work, its settings record, the lock that keeps
one run per shard prefix, and the cleaning of what a killed run left (:mod:`lvmm.datasets.manifest` holds the
JSON-lines file and settings record shared with the latent writer)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ..manifest import JsonlManifest, check_settings
from .settings import ShardSettings


class Manifest:
    """The JSONL record of finished work in ``path``.

    Lines: ``{"shard": name | null, "inputs": [rel, ...], "samples": n, "bytes": b, "open": {"rel", "samples"}?}``
    for every committed shard (``null``: inputs that yielded no clip; ``open``: the input continuing in
    the next shard and its clips so far), ``{"writing": name}`` before a shard is renamed into place,
    and ``{"failed": rel, "reason": why}`` for unreadable inputs. Each line is appended and fsynced; a
    torn last line (a kill mid-write) is ignored and cut off before the next append.
    """

    def __init__(self, path: str | os.PathLike, log: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.shards: list[dict] = []
        self.failed: dict[str, str] = {}
        self.writing: set[str] = set()
        self.file = JsonlManifest(self.path)
        if self.file.repair():  # a torn last line: dropped, so the next append starts clean
            (log or print)(f"{self.path}: dropped a torn last line (an interrupted run)")
        for entry in self.file.rows(warn=log or print):
            if "failed" in entry:
                self.failed[entry["failed"]] = entry.get("reason", "")
            elif "writing" in entry:
                self.writing.add(entry["writing"])
            elif "inputs" in entry:
                self.shards.append(entry)

    @property
    def done(self) -> set[str]:
        return {rel for entry in self.shards for rel in entry["inputs"]}

    @property
    def open_inputs(self) -> dict[str, int]:
        """Inputs split over shards and not finished: how many of their samples are committed."""
        done, found = self.done, {}
        for entry in self.shards:
            o = entry.get("open")
            if o and o["rel"] not in done:
                found[o["rel"]] = int(o["samples"])
        return found

    @property
    def shard_names(self) -> set[str]:
        return {e["shard"] for e in self.shards if e.get("shard")}

    def append(self, entry: dict) -> None:
        """Append (and fsync) one line, and record it here."""
        self.file.append(entry, sort_keys=True)
        if "failed" in entry:
            self.failed[entry["failed"]] = entry["reason"]
        elif "writing" in entry:
            self.writing.add(entry["writing"])
        else:
            self.shards.append(entry)


def check_run_settings(path: Path, settings: ShardSettings, corpus: dict | None) -> None:
    """Record the settings and corpus of these shards on the first run; refuse to add to shards made otherwise."""
    try:
        differ = check_settings(path, settings.to_json() | {"corpus": corpus or {}})
    except ValueError as e:
        raise ValueError(f"{e}; write to a new --name or folder") from None
    if differ:
        raise ValueError(
            f"{path}: these shards were made with other settings or another corpus ({', '.join(differ)} "
            f"differ: stored { ({k: old for k, (old, _) in differ.items()}) }, "
            f"now { ({k: new for k, (_, new) in differ.items()}) }); "
            "rerun with the same settings or write to a new --name or folder"
        )


class RunLock:
    """An exclusive ``flock`` on ``path``: one writer per shard prefix; the kernel drops it when a run dies."""

    def __init__(self, path: Path):
        import fcntl

        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise ValueError(
                f"{path}: another run is writing these shards now (the lock is held); "
                "wait for it to finish, or write to another --name or folder"
            ) from None

    def release(self) -> None:
        os.close(self.fd)  # closing the descriptor releases the flock


def clean_leftovers(out: Path, prefix: str, manifest: Manifest, log: Callable[[str], None]) -> None:
    """Delete what a killed run of this writer left: its temporary and spool files, and shards it
    announced and renamed but did not list. Other files, even with shard-like names, are left alone."""
    ours = re.compile(re.escape(f".{prefix}") + r"(-\d{6}\.tar|\.spool-\d{6}\.tar)\.tmp\d+$")
    for tmp in sorted(out.iterdir()):
        if ours.match(tmp.name):  # not another prefix's (NAME-0of2-...), whose run may be going on
            log(f"removing the temporary file of an interrupted run: {tmp}")
            tmp.unlink(missing_ok=True)
    listed = manifest.shard_names
    for name in sorted(manifest.writing - listed):
        shard = out / name
        if shard.exists():
            # renamed but killed before its manifest line: its inputs are redone, so it must go
            log(f"removing a shard missing from the manifest (interrupted run): {shard}")
            shard.unlink()
