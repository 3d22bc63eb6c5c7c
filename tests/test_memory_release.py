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


ARENAS_SCRIPT = """
import ctypes, os, sys, tempfile, threading
import numpy as np
from edge.runtime.memory import limit_malloc_arenas
if sys.argv[1] == "limit":
    limit_malloc_arenas(2)
kept = []
together = threading.Barrier(6)  # all alive at once: an exited thread's arena goes to the next
def allocate():
    together.wait()
    kept.append([np.ones(1000, np.uint8) for _ in range(200)])  # small blocks: the thread's arena
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fflush.argtypes = [ctypes.c_void_p]
with tempfile.TemporaryFile() as out:
    stream = libc.fdopen(os.dup(out.fileno()), b"w")
    libc.malloc_info(0, stream)
    libc.fflush(stream)
    out.seek(0)
    print(out.read().decode().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_threads_share_at_most_the_arenas_allowed():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

    def arenas(mode):
        run = subprocess.run([sys.executable, "-c", ARENAS_SCRIPT, mode], env=env, capture_output=True, text=True)
        return int(run.stdout.strip())

    assert arenas("limit") <= 2 < arenas("default")
