"""Where a long command is, the same way for every one (prove, generate, fuzz, run, lab
build, lab boots):

* on a terminal (stderr a TTY, no ``CI`` in the environment): a live rich display on
  stderr, the current stage with a bar when its size is known; lines the command prints
  to stdout meanwhile appear above it;
* otherwise (CI logs, pipes): one line per stage on stderr, ``... STAGE``, and for a stage
  that reports its advance, at most one more line every ``interval`` seconds;
* with ``-q``: nothing.

Use::

    with Progress(quiet=args.quiet) as p:
        p.stage("5.1-5.8: search", total=12)
        p.update(3)
"""

from __future__ import annotations

import enum
import os
import sys
import threading
import time


def _tty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Mode(enum.Enum):
    QUIET = "quiet"     # -q: nothing
    LIVE = "live"       # a rich display on a terminal
    LINES = "lines"     # one line per stage (CI, pipes)


def choose_mode(quiet: bool, stream) -> Mode:
    if quiet:
        return Mode.QUIET
    if not _tty(stream) or os.environ.get("CI"):
        return Mode.LINES
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return Mode.LINES
    return Mode.LINES if os.environ.get("TERM") == "dumb" else Mode.LIVE


class Progress:
    def __init__(self, quiet: bool = False, stream=None, interval: float = 30.0,
                 mode: Mode | None = None):
        self.stream = stream or sys.stderr
        self.mode = mode or choose_mode(quiet, self.stream)
        self.interval = interval
        self._live = None
        self._task = None
        self._stage = None
        self._total = None
        self._last_line = 0.0
        self._lock = threading.Lock()

    def __enter__(self):
        if self.mode is Mode.LIVE:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       SpinnerColumn, TextColumn, TimeElapsedColumn)
            self._live = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(),
                             console=Console(file=self.stream), transient=True,
                             # stdout on the same terminal: its lines go above the display;
                             # stdout redirected: it stays where it was sent
                             redirect_stdout=_tty(sys.stdout), redirect_stderr=False)
            self._live.start()
            self._task = self._live.add_task("starting", total=None)
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.stop()
            self._live = None
        return False

    def _say(self, text: str) -> None:
        print(f"... {text}", file=self.stream, flush=True)
        self._last_line = time.monotonic()

    def stage(self, text: str, total: int | None = None, done: int = 0) -> None:
        """A new stage: ``total`` steps if known, ``done`` of them already."""
        with self._lock:
            self._stage, self._total = text, total
            if self.mode is Mode.LINES:
                self._say(text + (f" ({done}/{total})" if total and done else ""))
            elif self._live is not None:
                self._live.reset(self._task, total=total, completed=done, description=text)

    def update(self, done: int | None = None, total: int | None = None,
               note: str | None = None) -> None:
        """The current stage advanced (``done`` of ``total``; ``note`` says more)."""
        with self._lock:
            if total is not None:
                self._total = total
            total = self._total
            if self.mode is Mode.LINES:
                if time.monotonic() - self._last_line >= self.interval:
                    what = self._stage or ""
                    if done is not None:
                        what += f" {done}" + (f"/{total}" if total else "")
                    self._say(what + (f": {note}" if note else ""))
            elif self._live is not None:
                kw = {}
                if done is not None:
                    kw["completed"] = done
                if total is not None:
                    kw["total"] = total
                if note is not None:
                    kw["description"] = f"{self._stage}: {note}" if self._stage else note
                self._live.update(self._task, **kw)

    def event(self, text: str) -> None:
        """Something finished outside the current stage (e.g. a background boot): a line
        on stderr in both the live and the line mode."""
        with self._lock:
            if self.mode is Mode.LINES:
                self._say(text)
            elif self._live is not None:
                self._live.console.print(f"... {text}", highlight=False, markup=False)

    def line(self, text: str) -> None:
        """A result line on stdout (above the live display)."""
        if self._live is not None and _tty(sys.stdout):
            self._live.console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            print(text, flush=True)
