"""The C heap's share of the daemon's memory (glibc; elsewhere these are no-ops):
- the start's one-off work (measuring the tiers, checking INT8 against FP32) loads detectors
  that are closed again, and glibc keeps what they freed unless asked to return it: after a
  first start, ~80 MB the daemon would otherwise hold while it runs;
- glibc gives each thread that allocates its own arena (up to 8 per core), each keeping its
  own free memory; the appliance's threads (a reader per camera, the inference lanes, the
  analysis thread, ONNX Runtime's pool) need no more than two: 11-14 MB less at 4 cameras.
Figures: benchmarks/results/memory.md.
"""

import ctypes
import os
from typing import Any, Optional

M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def _libc_call(name: str) -> Optional[Any]:
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """At most `arenas` glibc malloc arenas from now on; call it before the threads start (a
    thread keeps the arena it was given). MALLOC_ARENA_MAX in the environment, when set, wins."""
    mallopt = _libc_call("mallopt")
    if mallopt is None or "MALLOC_ARENA_MAX" in os.environ:
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(M_ARENA_MAX, arenas)


def release_free_memory() -> None:
    """glibc's malloc_trim(0): return the heap's free pages to the system. A no-op where the C
    library has no such call (musl, macOS)."""
    trim = _libc_call("malloc_trim")
    if trim is None:
        return
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
