"""The C allocator's handling of freed memory, which decides CPU inference speed more than any kernel.

glibc's malloc serves large blocks with fresh ``mmap`` pages and hands freed memory back to the system
(``munmap``, or trimming the heap's top beyond ``M_TRIM_THRESHOLD``). A sampling loop allocates and frees
the same activations at every network call, so every call pays page faults on all of them again. On 2
cores the default 40-frame animation (tiny configs) took 5.2 s with glibc's defaults and 3.8 s with freed
memory kept on one machine (the gain of preloading jemalloc or tcmalloc), 2.1-2.3 s and 1.9-2.0 s on a
faster one, where rendering it onto a 1024x768 photo went from 4.8-5.9 s to 4.2-4.5 s.
:func:`retain_freed_memory` keeps freed blocks in the process for reuse; the resident set then stays at
its high-water mark instead of shrinking between calls. The :class:`lvmm.animation.Animator` calls it
when it runs on CPU; ``LVMM_SYSTEM_MALLOC=1`` leaves the allocator as it is (also when jemalloc or
tcmalloc is preloaded, which these calls do not touch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

MMAP_THRESHOLD = 256 * 2**20
"""Blocks up to this size come from the heap (reused after ``free``) instead of fresh pages of their own."""

TRIM_THRESHOLD = 2**30
"""Free memory at the heap's top is returned to the system only beyond this much."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters of glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@functools.cache
def retain_freed_memory() -> bool:
    """Keep freed memory for reuse (glibc: ``mallopt`` of the mmap and trim thresholds); once per process.

    Returns whether the settings took effect: False off glibc or with ``LVMM_SYSTEM_MALLOC=1``."""
    libc = _glibc()
    if libc is None or os.environ.get("LVMM_SYSTEM_MALLOC", "") not in ("", "0"):
        return False
    mmap_ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return mmap_ok and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Return the memory that is free inside the process to the system (glibc ``malloc_trim(0)``), for example
    before measuring a block's own peak resident set. Returns False where it cannot."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
