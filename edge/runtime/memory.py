"""Giving the start's one-off memory back: measuring the tiers and checking INT8 against FP32
load detectors that are closed again, and glibc keeps what they freed in its heap unless asked
to return it (after a first start, ~80 MB that the daemon would otherwise hold while it runs;
benchmarks/results/memory.md).
"""

import ctypes
import logging

log = logging.getLogger(__name__)


def release_free_memory() -> None:
    """glibc's malloc_trim(0): return the heap's free pages to the system. A no-op where the C
    library has no such call (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
