"""Progress of long runs for people watching a terminal or reading a log.

Trainers and samplers report through callbacks `(done, total)` or `(done, total, row)`.
`ProgressReporter` turns those calls into a tqdm bar when the stream is a terminal, and into
plain lines — at most one every `interval` seconds, plus the first and the last — when it is
not (a log file, CI, a pipe), where a bar's carriage-return updates would pile up as hundreds of
unreadable lines.
"""

from __future__ import annotations

import sys
import time


class ProgressReporter:
    """Callback `(done, total[, row])` that shows progress on `stream` (default stderr).

    `fields` names entries of `row` to show beside the count (e.g. the concept being erased).
    A new `total` starts a new bar/line sequence (samplers report one batch after another)."""

    def __init__(self, desc: str, unit: str = "step", fields: tuple[str, ...] = (), stream=None,
                 interval: float = 10.0, leave: bool = True):
        self.desc, self.unit, self.fields = desc, unit, tuple(fields)
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.leave = interval, leave
        self.bar = None
        self.total = None
        self._last_line = None
        self._last_done = None
        self._t0 = None
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(isatty and isatty())

    def __call__(self, done: int, total: int, row: dict | None = None) -> None:
        extra = {f: (f"{row[f]:.4g}" if isinstance(row[f], float) else row[f])
                 for f in self.fields if row and f in row}
        if self.interactive:
            self._tick_bar(done, total, extra)
        else:
            self._tick_line(done, total, extra)

    def _tick_bar(self, done, total, extra) -> None:
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=self.leave, file=self.stream)
        self.bar.n = done
        if extra:
            self.bar.set_postfix(**extra, refresh=False)
        self.bar.refresh()

    def _tick_line(self, done, total, extra) -> None:
        now = time.monotonic()
        if total != self.total:
            self.total, self._t0, self._last_line, self._last_done = total, now, None, None
        due = self._last_line is None or now - self._last_line >= self.interval or done >= total
        if not due or done == self._last_done:
            return
        self._last_line, self._last_done = now, done
        elapsed = now - self._t0
        text = f"{self.desc}: {done}/{total} {self.unit}s"
        if total:
            text += f" ({100 * done / total:.0f}%)"
        text += f", {elapsed:.0f}s elapsed"
        if 0 < done < total:
            text += f", about {elapsed / done * (total - done):.0f}s left"
        if extra:
            text += " — " + ", ".join(f"{k} {v}" for k, v in extra.items())
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
