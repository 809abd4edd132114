"""Peak memory of a block of code: CUDA's allocator peak on a GPU, else the process's resident
set sampled by a background thread (Linux /proc), reported above the level at entry."""

from __future__ import annotations

import os
import threading
import time

import torch


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak_mb = 0.0

    def __enter__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = _rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()

        def watch():
            while not self._stop.is_set():
                self.peak = max(self.peak, _rss_bytes())
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
        self.peak = max(self.peak, _rss_bytes())
        self.peak_mb = (self.peak - self.start) / 2**20
        return False
