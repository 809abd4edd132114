"""Progress output of long runs (unlearn_core.progress): readable lines when not on a terminal."""

import io

from unlearn_core.progress import ProgressReporter


def test_not_a_terminal_gets_a_few_plain_lines_not_a_bar():
    log = io.StringIO()  # not a tty, like a log file or CI
    progress = ProgressReporter("forgetting", fields=("concept", "stage", "loss"), stream=log, interval=3600)
    for done in range(1, 376):
        progress(done, 375, {"concept": "bolt", "stage": "lora", "loss": 0.123456, "step": done})
    progress.close()
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert len(lines) == 2, lines  # the first update and the last, nothing in between within the interval
    assert lines[0].startswith("forgetting: 1/375 steps")
    assert lines[-1].startswith("forgetting: 375/375 steps (100%)")
    assert "concept bolt" in lines[-1] and "stage lora" in lines[-1] and "loss 0.1235" in lines[-1]


def test_lines_come_every_interval_and_a_new_total_starts_over():
    log = io.StringIO()
    progress = ProgressReporter("sampling", unit="image", stream=log, interval=0)
    for done in (1, 2, 2, 4):
        progress(done, 4)
    progress(1, 8)
    lines = log.getvalue().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["sampling: 1/4 images (25%)", "sampling: 2/4 images (50%)",
                                                 "sampling: 4/4 images (100%)", "sampling: 1/8 images (12%)"]


def test_a_terminal_gets_a_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    progress = ProgressReporter("unlearning", stream=out)
    progress(3, 10, {"concept": "star"})
    progress.close()
    assert progress.interactive and "\r" in out.getvalue() and "3/10" in out.getvalue()
