"""lvmm.allocator: retention of freed memory is opt-out and reports whether it took effect."""

from __future__ import annotations

import os
import subprocess
import sys

from lvmm import allocator

SCRIPT = "from lvmm import allocator as a; print(a.retain_freed_memory(), a.release_freed_memory())"


def _run(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "LVMM_SYSTEM_MALLOC"}
    if env_value is not None:
        env["LVMM_SYSTEM_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_retention_is_applied_on_glibc_and_skipped_when_opted_out():
    glibc = allocator._glibc() is not None
    assert _run(None) == [str(glibc), str(glibc)]
    assert _run("1") == ["False", str(glibc)]  # opted out: the allocator is left as it is


def test_animator_retains_freed_memory_on_cpu(monkeypatch):
    from lvmm.evaluation import perf

    calls = []
    monkeypatch.setattr("lvmm.animation.retain_freed_memory", lambda: calls.append(1) or True)
    perf.build_animator(perf.shapes("tiny", "tiny"), device="cpu")
    assert calls == [1]
