"""Keep freed tensor memory in the process on glibc, so a CPU training step does not page-fault its activations.

glibc's malloc serves a large block with fresh ``mmap`` pages until a freed one has raised its threshold (never
past 32 MiB), and hands free memory at the top of its heap back to the kernel beyond a trim threshold. A training
step frees and re-allocates hundreds of MiB of activations, some of them at or above 32 MiB (the ``smoke``
model's stage-1 channel-MLP map at batch 128: 128 x 64 x 32 x 32 floats), so each step gets many of them back as
new pages that the kernel zeroes one by one on first touch. Measured here, ReLU over that map took 14 ms with
the default and 2.5 ms with the setting below, and a ``cpu``-protocol step (batch 128) page-faulted ~120,000
times (~470 MiB) with the default against under 8,000 with it (one thread, busy shared machine;
``tests/test_host_memory.py`` holds the difference). The setting changes where bytes live, never what is
computed: results are bit-identical.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap and are reused after free
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top is kept up to 1 GiB instead of being handed back

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in force.

    A no-op (False) where the C library is not glibc (macOS, Windows, musl). The peak memory of a step is
    unchanged; what changes is that the process keeps its peak after the step instead of returning it.
    """
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
