"""Shared helpers of the shard tests and drills: the CLIs, and reading shards and manifests back."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

ALLOWED_MEMBERS = {"mp4", "frames.npy", "flow.npy", "json", "txt", "wav"}


def tool_main(name: str):
    """The ``main`` of the tool ``name`` (``lvmm.cli.<name>``, which ``tools/<name>.py`` runs)."""
    return importlib.import_module(f"lvmm.cli.{name}").main


def make_shards_main():
    return tool_main("make_shards")


def load_samples(paths) -> dict[str, dict]:
    """All samples of the given shards by key; fails on a duplicate key or a member of a foreign type."""
    import webdataset as wds

    out = {}
    for path in sorted(paths):
        for sample in wds.tarfile_to_samples()(iter([{"url": str(path)}])):
            members = {k for k in sample if not k.startswith("__")}
            assert members <= ALLOWED_MEMBERS, f"{path}: unexpected members {members - ALLOWED_MEMBERS}"
            assert sample["__key__"] not in out, f"duplicate sample {sample['__key__']}"
            out[sample["__key__"]] = sample
    return out


def shards_of(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}-*.tar"))


def manifest_lines(folder: Path, prefix: str) -> list[dict]:
    """The shard and failure lines of a make_shards manifest (not the ``writing`` announcements)."""
    lines = [json.loads(line) for line in (folder / f"{prefix}.manifest.jsonl").read_text().splitlines()]
    return [line for line in lines if "writing" not in line]


def manifest_inputs(folder: Path, prefix: str) -> list[str]:
    """Every input the manifest lists as finished, once per listing."""
    return [rel for line in manifest_lines(folder, prefix) for rel in line.get("inputs", [])]
