"""glibc's allocator told to hand freed memory back to the OS, so that a training step's peak resident memory is
what the step holds, not what earlier steps freed and glibc kept for reuse (docs/performance_memory.md)."""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt's parameter number for it, from glibc's malloc.h
TRIM_THRESHOLD_BYTES = 128 * 1024  # glibc's own initial value, kept instead of growing with each free


def release_freed_memory() -> bool:
    """Fix glibc's trim threshold at 128 KiB, which also fixes its mmap threshold where it starts (128 KiB): every
    tensor above it is mapped on its own and unmapped when freed. Left dynamic, both thresholds rise to the
    largest block freed so far (up to 32 MiB), so later tensors come from the heap and stay resident after they
    are freed. True where it applied (Linux with glibc); elsewhere nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl)
        return False
    applied = bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    log.debug("glibc trim threshold fixed at %d bytes: %s", TRIM_THRESHOLD_BYTES, applied)
    return applied
