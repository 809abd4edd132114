"""Progress and cancellation for long-running nodes (ComfyUI's ProgressBar, progress text and interrupt flag)."""

from __future__ import annotations

import time

import comfy.model_management
import comfy.utils


def should_cancel() -> bool:
    """Raises ComfyUI's InterruptProcessingException when the user pressed cancel; else False."""
    comfy.model_management.throw_exception_if_processing_interrupted()
    return False


def _send_text(text: str, node_id) -> None:
    """The line of text ComfyUI's frontend shows on the node while it runs (nothing outside a server)."""
    try:
        from server import PromptServer
    except ImportError:
        return
    if node_id is not None and getattr(PromptServer, "instance", None) is not None:
        PromptServer.instance.send_progress_text(text, node_id)


class Progress:
    """One progress bar over a whole node run, with the current phase as text on the node.

    The bar counts sampler steps while the training images are generated, then training steps,
    on one scale (`data_steps + train_steps`), so it never drops back. The text says what is
    happening (the phase, the concept, counts, the loss) and is refreshed at most every
    `text_interval` seconds, and at once when the phase changes."""

    def __init__(self, data_steps: int, train_steps: int = 0, node_id=None, text_interval: float = 1.0):
        self.data_steps = max(0, int(data_steps))
        self.train_steps = max(0, int(train_steps))
        self.node_id = node_id
        self.text_interval = text_interval
        self.data_done = 0
        self.bar = comfy.utils.ProgressBar(max(1, self.data_steps + self.train_steps), node_id=node_id)
        self._phase = None
        self._last_text = 0.0

    def phase(self, text: str) -> None:
        """Announce a phase (e.g. 'preparing the model') before work that does not tick."""
        self._phase = text
        self._text(text, force=True)

    def sample_step(self) -> None:
        self.data_done += 1
        if self.data_steps:
            done = min(self.data_done, self.data_steps)
            self.bar.update_absolute(done, self.data_steps + self.train_steps)
            self._text(f"generating training images: sampler step {done}/{self.data_steps}",
                       force=self._phase != "data")
            self._phase = "data"

    def train_step(self, done: int, total: int, row: dict | None = None) -> None:
        if total != self.train_steps:  # the trainer knows its step count exactly
            self.train_steps = int(total)
        self.bar.update_absolute(self.data_steps + done, self.data_steps + self.train_steps)
        text = f"training: step {done}/{total}"
        row = row or {}
        if "concept" in row:
            text += f", concept {row['concept']}"
        if "stage" in row:
            text += f" ({row['stage']})"
        if isinstance(row.get("loss"), float):
            text += f", loss {row['loss']:.4g}"
        self._text(text, force=self._phase != "train" or done >= total)
        self._phase = "train"

    def _text(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_text >= self.text_interval:
            self._last_text = now
            _send_text(text, self.node_id)
