"""The benchmark helpers measure what they claim to (pure logic, no models)."""

import time

import pytest
import torch

from unlearn_core.benchmarks.memory import PeakMemory, heap_in_use_bytes


@pytest.mark.skipif(heap_in_use_bytes() is None or torch.cuda.is_available(),
                    reason="needs glibc's mallinfo2 (the CPU measure); on a GPU CUDA's allocator is used")
def test_peak_memory_sees_a_block_peak_after_a_larger_block_was_freed():
    # The resident-set measure failed exactly here: memory freed earlier is reused, so RSS stays flat.
    big = torch.ones(40_000_000)  # 153 MB
    del big
    with PeakMemory() as m:
        block = torch.ones(20_000_000)  # 76 MB
        time.sleep(0.02)
        del block
    assert m.source in ("heap", "cuda")
    assert 60 < m.peak_mb < 120


def test_peak_memory_of_a_block_that_allocates_nothing_is_small():
    with PeakMemory() as m:
        time.sleep(0.01)
    assert m.peak_mb < 5
