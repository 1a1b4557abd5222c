"""Tar files of samples: members with fixed metadata, their sizes, reading a spool back, and a shard being written
under a hidden temporary name until it is committed."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

from lvmm.media import fsync_dir

from .settings import TAR_MTIME


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Add one member with fixed metadata (identical input, identical bytes); returns the tar bytes it takes."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), int(TAR_MTIME), 0o444, "", ""
    tar.addfile(info, io.BytesIO(data))
    return tar_bytes(len(data))


def add_sample(tar: tarfile.TarFile, sample: dict) -> int:
    """Add a sample's members to ``tar`` in a fixed order; returns the tar bytes they take."""
    key = sample["__key__"]
    return sum(add_member(tar, f"{key}.{ext}", sample[ext]) for ext in sorted(k for k in sample if k != "__key__"))


def tar_bytes(size: int) -> int:
    """Bytes a member of ``size`` bytes takes in a tar (a 512-byte header and 512-byte blocks)."""
    return 512 + -(-size // 512) * 512


def tar_file_bytes(member_bytes: int) -> int:
    """The size of a tar file holding ``member_bytes`` of members: two end blocks, padded to 10 KiB records."""
    return -(-(member_bytes + 2 * 512) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def iter_spool(path: str | os.PathLike) -> Iterator[dict]:
    """The samples of a spool (or shard) tar written by this module, one at a time, in order."""
    sample: dict = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if sample and key != sample["__key__"]:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[ext] = tar.extractfile(member).read()
    if sample:
        yield sample


class ShardFile:
    """A shard being written under a hidden temporary name; :meth:`commit` renames it into place."""

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        self.file = open(self.tmp, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
        self.inputs: list[str] = []
        self.samples = 0
        self.nbytes = 0

    def add(self, sample: dict) -> None:
        self.nbytes += add_sample(self.tar, sample)
        self.samples += 1

    def close(self) -> None:
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def rename(self) -> None:
        os.replace(self.tmp, self.final)  # close() fsynced the file
        fsync_dir(self.final.parent)

    def abandon(self) -> None:
        try:
            self.tar.close()
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)
