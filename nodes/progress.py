"""Progress bar and cancellation for long-running nodes (ComfyUI's ProgressBar and interrupt flag)."""

from __future__ import annotations

import comfy.model_management
import comfy.utils


def should_cancel() -> bool:
    """Raises ComfyUI's InterruptProcessingException when the user pressed cancel; else False."""
    comfy.model_management.throw_exception_if_processing_interrupted()
    return False


class Progress:
    """One bar over two phases: generating training data (counted in sampler steps), then training."""

    def __init__(self, data_steps: int):
        self.data_steps = max(0, int(data_steps))
        self.data_done = 0
        self.bar = comfy.utils.ProgressBar(max(1, self.data_steps))

    def sample_step(self) -> None:
        self.data_done += 1
        if self.data_steps:
            self.bar.update_absolute(min(self.data_done, self.data_steps), self.data_steps)

    def train_step(self, done: int, total: int, _row=None) -> None:
        self.bar.update_absolute(done, total)
