"""Peak memory of a block of code, reported above the level at entry.

On a GPU: CUDA's allocator peak. On a CPU: the C heap's bytes in use (glibc's mallinfo2: small
blocks plus mmapped large blocks) sampled by a background thread; torch's CPU tensors live there.
The process's resident set is the fallback, but it is a poor measure of a block's peak: memory that
earlier work freed stays resident and is reused, so a later peak barely moves it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

import torch


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _load_mallinfo2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


_MALLINFO2 = _load_mallinfo2()


def heap_in_use_bytes() -> int | None:
    """Bytes the C allocator has handed out and not yet freed (None where glibc's mallinfo2 is missing)."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """`with PeakMemory() as m: ...` then `m.peak_mb` (and `m.source`: cuda, heap or rss)."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.peak_mb = 0.0

    def __enter__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            self.source = "cuda"
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.source = "heap" if heap_in_use_bytes() is not None else "rss"
        self._read = heap_in_use_bytes if self.source == "heap" else _rss_bytes
        self.start = self._read()
        self.peak = self.start
        self._stop = threading.Event()

        def watch():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._read())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.peak_mb = (torch.cuda.max_memory_allocated() - self.start) / 2**20
            return False
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())
        self.peak_mb = (self.peak - self.start) / 2**20
        return False
