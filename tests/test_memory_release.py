"""Freed heap memory goes back to the system when the start's one-off work is done."""

import platform
import re
from pathlib import Path

import numpy as np
import pytest

from edge.runtime.memory import release_free_memory


def rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024.0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_pages_are_returned():
    # Blocks under glibc's mmap threshold live in the heap; the last one pins the heap's top,
    # so freeing the others returns nothing to the system by itself.
    blocks = [np.ones(60_000, np.uint8) for _ in range(1500)]
    pin = blocks.pop()
    del blocks
    before = rss_mb()
    release_free_memory()
    assert before - rss_mb() > 40  # of the ~90 MB freed
    assert pin.sum() == pin.size
