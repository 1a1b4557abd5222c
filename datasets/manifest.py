"""How the shard writers resume: an append-only JSON-lines manifest of finished work, and a settings record.

Both writers (video shards, :mod:`lvmm.datasets.writer`; latent motion shards,
:mod:`lvmm.datasets.latent_encoding`) commit an output file first (temporary name, fsync, rename) and then
append one fsynced line saying so. A kill between the two leaves a file the manifest does not list, which the
next run redoes; a kill during the append leaves a torn last line, which :meth:`JsonlManifest.repair` cuts off
before anything is appended again, and which :meth:`JsonlManifest.rows` skips. docs/data-formats.md describes
the lines each writer appends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from lvmm.media import atomic_write_bytes


class JsonlManifest:
    """One manifest file: rows are JSON objects, one a line, each appended and fsynced on its own."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def repair(self) -> bool:
        """Cut a torn last line (an interrupted append), so the next row starts on a line of its own; True if cut."""
        if not self.path.exists():
            return False
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return False
        with open(self.path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            os.fsync(f.fileno())
        return True

    def rows(self, warn: Callable[[str], None] | None = None) -> list[dict]:
        """The rows that parse as JSON objects; a line that does not (torn, garbled) is skipped and ``warn``-ed."""
        if not self.path.exists():
            return []
        rows = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if warn:
                    warn(f"{self.path}:{n + 1}: ignoring a line that is not JSON (an interrupted run)")
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def append(self, row: dict, sort_keys: bool = False) -> None:
        """Append ``row`` as one line and fsync: once this returns, the row survives a crash."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=sort_keys) + "\n")
            f.flush()
            os.fsync(f.fileno())


def check_settings(path: str | os.PathLike, settings: dict, overwrite: bool = False) -> dict[str, tuple]:
    """Record ``settings`` in ``path`` on the first run (or with ``overwrite``); later, what differs from them.

    Returns ``{key: (stored, now)}`` for every key whose stored value differs (empty: the same settings, a rerun
    may resume); the caller refuses to resume and says why. ValueError when the record cannot be read.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: unreadable settings file ({e})") from None
        keys = sorted(set(stored) | set(settings))
        return {k: (stored.get(k), settings.get(k)) for k in keys if stored.get(k) != settings.get(k)}
    atomic_write_bytes(path, (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return {}
