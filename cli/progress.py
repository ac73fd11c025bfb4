"""Progress of long commands, on stderr only: a self-rewriting bar with rate and ETA when
stderr is a terminal, a plain line every few seconds (and a last one) otherwise.

    progress = ProgressLine("tracks", total=count)
    for n, row in enumerate(rows, 1):
        progress.data(row)          # stdout, after clearing the bar
        progress.update(n, "wrote 3")
    progress.close()                # the last line: how many, how long, how fast

`render` is the pure part (what one line says, given the numbers and the time taken).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import click

BAR_WIDTH = 24
TTY_EVERY_S = 0.2  # a terminal redraws at most this often
PLAIN_EVERY_S = 5.0  # elsewhere (a log, a pipe), a line at most this often
PLAIN_EVERY_ENV = "GENREQ_PROGRESS_EVERY_S"


def duration(seconds: float) -> str:
    """H:MM:SS."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def render(done: int, total: int | None, elapsed_s: float, unit: str, detail: str = "",
           *, rate: float | None = None, finished: bool = False,
           walking: bool = False) -> str:
    """One progress line. `rate` defaults to done / elapsed_s. With a total:
    `[####----] 53/100  18.9 files/s  ETA 0:00:02  <detail>` (`in 0:00:05` instead of the
    ETA once finished); without one: `checked 53 · <detail> · 18.9 files/s`."""
    if rate is None and done and elapsed_s > 0:
        rate = done / elapsed_s
    rate_text = f"{rate:.1f} {unit}/s" if rate else f"-- {unit}/s"
    if total is None:
        return " · ".join(part for part in (f"checked {done}", detail, rate_text) if part)
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else BAR_WIDTH * finished
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    if finished:
        when = f"in {duration(elapsed_s)}"
    elif walking:
        when = "walking…"
    elif rate and total > done:
        when = "ETA " + duration((total - done) / rate)
    else:
        when = "ETA --"
    return "  ".join(part for part in (f"[{bar}] {done}/{total}", rate_text, when, detail)
                     if part)


def plain_every_s() -> float:
    """Seconds between plain lines: $GENREQ_PROGRESS_EVERY_S, else PLAIN_EVERY_S."""
    value = os.environ.get(PLAIN_EVERY_ENV)
    try:
        return max(0.0, float(value)) if value else PLAIN_EVERY_S
    except ValueError:
        return PLAIN_EVERY_S


class ProgressLine:
    """The progress of one command on stderr. `tty` and `clock` default to the real
    stderr and time.monotonic; tests pass their own."""

    def __init__(self, unit: str, total: int | None = None, *, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, enabled: bool = True) -> None:
        self.unit = unit
        self.total = total
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.clock = clock
        # Off where the bar would share a terminal line with data (export to a terminal).
        self.enabled = enabled
        self.every_s = TTY_EVERY_S if self.tty else plain_every_s()
        self.start = self.last = clock()
        self.done = 0
        self.detail = ""
        self.rate: float | None = None
        self.walking = False
        self.shown = False  # a bar is on the terminal line now
        self.lines = 0  # progress lines shown so far

    def line(self, finished: bool = False) -> str:
        return render(self.done, self.total, self.clock() - self.start, self.unit, self.detail,
                      rate=self.rate, finished=finished, walking=self.walking)

    def update(self, done: int, detail: str = "", *, rate: float | None = None,
               total: int | None = None, walking: bool = False, force: bool = False) -> None:
        """Record the progress; show it if the last line is old enough (or `force`)."""
        self.done, self.detail, self.rate, self.walking = done, detail, rate, walking
        if total is not None:
            self.total = total
        now = self.clock()
        if force or now - self.last >= self.every_s:
            self.last = now
            self._show(self.line())

    def _show(self, line: str) -> None:
        if not self.enabled:
            return
        self.lines += 1
        if self.tty:
            # color=True: keep the erase-line code even where click would strip it
            click.echo(f"\r{line}\x1b[K", nl=False, err=True, color=True)
            self.shown = True
        else:
            sys.stdout.flush()  # stderr into the same file as stdout: whole lines only
            click.echo(line, err=True)

    def _clear(self) -> None:
        if self.shown:
            click.echo("\r\x1b[K", nl=False, err=True, color=True)
            self.shown = False

    def data(self, text: str) -> None:
        """A line of data on stdout; the bar comes back at the next update."""
        self._clear()
        click.echo(text)

    def message(self, text: str) -> None:
        """A line of its own on stderr; the bar comes back at the next update."""
        self._clear()
        click.echo(text, err=True)

    def close(self, final: bool = True, detail: str | None = None) -> None:
        """End the progress. With `final`, a last line says how many, in how long, how
        fast (and `detail`, if given, instead of the last), if any line was shown: a
        command done before its first line prints none, so quick commands keep a quiet
        stderr."""
        if detail is not None:
            self.detail = detail
        if final and self.lines:
            self._show(self.line(finished=True))
        if self.shown:
            click.echo(err=True)
            self.shown = False
