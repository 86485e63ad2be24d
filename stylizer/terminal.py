"""`ProgressDisplay`: painting progress for a person at a terminal, shared by both CLIs
(`python -m stylizer`, `stylebot stylize`). The engine only reports steps through a
callback; this turns them into a tqdm bar.
"""

from __future__ import annotations

import contextlib
import sys
from types import TracebackType
from typing import Never, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


class ProgressDisplay:
    """A progress bar (tqdm) on `stream` when it is a terminal.

    Where the stream is not a terminal (a pipe, a log file), a bar's carriage returns would
    be noise: with `plain_lines` each new step is one `step N/TOTAL` line instead, else
    nothing is shown. `enabled=False` (a quiet flag) shows no progress at all. Messages
    (`message`) are always written, below the bar. Used as a context manager on a
    terminal, it also sends log lines above the bar (tqdm's `logging_redirect_tqdm`)
    instead of onto it.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True,
                 plain_lines: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.plain_lines = plain_lines
        self._bar: tqdm[Never] | None = None  # a bar over no iterable: updated by hand
        self._last_line = ""
        self._logs = contextlib.ExitStack()

    def update(self, step: int, total: int) -> None:
        """Shows that `step` of `total` steps are done."""
        if not self.enabled:
            return
        total = max(total, 1)
        if not self.tty:
            line = f"step {step}/{total}"
            if self.plain_lines and line != self._last_line:
                self._last_line = line
                self._write(line)
            return
        bar = self._bar
        if bar is None or bar.total != total or step < bar.n:
            self.close()  # a new painting, or the same one started again
            bar = self._bar = tqdm(total=total, file=self.stream, unit="step",
                                   dynamic_ncols=True)
        bar.update(min(step, total) - bar.n)

    def message(self, text: str) -> None:
        """A line of text; a bar on screen is finished first."""
        self.close()
        self._write(text)

    def close(self) -> None:
        """Finishes the bar (left on screen at its last step); the next update starts anew."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> ProgressDisplay:
        if self.tty and self.enabled:
            self._logs.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
        self._logs.close()
