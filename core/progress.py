"""Progress of vkit's long loops — training, data generation, feature extraction, compression — with rate and ETA.

One :class:`Progress` per loop. How it shows depends on the process's mode:

- ``"bar"``: a rich bar on stderr (label, M/N, rate, elapsed, ETA) while the loop runs; lines
  written with :meth:`Progress.note` (an epoch's loss) stay above it. Chosen when stdout and
  stderr are both terminals.
- ``"lines"``: no bar; one line per epoch or stage (:meth:`Progress.note`, with the rate and the
  ETA) and one closing line per loop. Chosen when the output goes to a file or a pipe.
- ``"off"``: nothing (``--json``: stdout carries only the JSON).

The CLI sets the mode once (:func:`set_mode`); otherwise it follows the terminal.
Training reports through :class:`vkit.core.engine.ProgressHook`, an mmengine
hook that :func:`vkit.core.engine.build_runner` adds to every Runner. This
module imports nothing heavy (no torch, no mmengine): the CLI sets the mode
before any command runs.

Example::

    from vkit.core.progress import Progress, track

    for case in track(range(n), "generating cases", unit="cases"):
        write(case)

    with Progress("compression", total=len(stages), unit="stages") as bar:
        for stage in stages:
            apply(stage)
            bar.advance(note=f"{stage.name} done")
"""
from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

MODES = ("bar", "lines", "off")
T = TypeVar("T")

_mode: str | None = None  # None: follow the terminal
_display: Any = None  # the rich Progress on screen, shared by the open bars
_lines_echo: Callable[[str], Any] | None = None  # where a loop without its own echo writes lines (lines_to)
_open: weakref.WeakSet[Progress] = weakref.WeakSet()  # bars on screen (closed by close_all after an error)


def set_mode(mode: str | None) -> None:
    """Fix how every later :class:`Progress` shows: ``"bar"``, ``"lines"``, ``"off"``, or ``None`` (follow the terminal)."""
    global _mode
    if mode is not None and mode not in MODES:
        raise ValueError(f"progress mode: expected one of {list(MODES)} or None, got {mode!r}")
    _mode = mode


def current_mode() -> str:
    """The mode set by :func:`set_mode`, else ``"bar"`` when stdout and stderr are terminals, else ``"lines"``."""
    if _mode is not None:
        return _mode
    return "bar" if _isatty(sys.stdout) and _isatty(sys.stderr) else "lines"


def _shared_bar() -> Any:
    """The one rich display every open bar is a row of (a nested loop, e.g. recovery inside compression, adds a row)."""
    global _display
    if _display is None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        from vkit.core.console import console

        plain = dict(markup=False)  # a label or status from data prints as it is
        _display = RichProgress(
            TextColumn("{task.description}", **plain), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}", **plain), TimeElapsedColumn(), TextColumn("ETA", **plain),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}", **plain),
            console=console(stderr=True), transient=True,
        )
        _display.start()
    return _display


def _stop_shared_bar() -> None:
    global _display
    if _display is not None:
        _display.stop()
        _display = None


def above_bars(echo: Callable[[str], Any]) -> Callable[[str], Any]:
    """``echo`` made safe while bars are on screen: a line then prints above them (through the display's console),
    otherwise through ``echo``. What ``vkit run`` gives its tasks as ``ctx.echo``.

    Example::

        ctx_echo = above_bars(lambda line: console.print(line))
    """
    def write(text: str) -> Any:
        if _display is not None:
            return _display.console.print(text, soft_wrap=True)
        return echo(text)

    return write


@contextmanager
def lines_to(echo: Callable[[str], Any]) -> Iterator[None]:
    """Within the block, loops given no ``echo`` (a data generator, feature extraction) write their lines through
    ``echo`` instead of stderr: ``vkit run`` sends them where its other lines go.

    Example::

        with lines_to(ctx.echo):
            run_lifecycle(task, cfg, ctx)
    """
    global _lines_echo
    before, _lines_echo = _lines_echo, echo
    try:
        yield
    finally:
        _lines_echo = before


def close_all() -> None:
    """Stop every bar still on screen (after an error, before it is printed); what is closed stays closed."""
    for bar in list(_open):
        bar.close()
    _stop_shared_bar()


def reset() -> None:
    """:func:`close_all`, then the mode follows the terminal again (the CLI calls it when a command ends)."""
    close_all()
    set_mode(None)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_seconds(seconds: float | None) -> str:
    """``"42 s"``, ``"3m 05s"``, ``"1h 02m"``; ``"?"`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_rate(rate: float, unit: str) -> str:
    """``"3.20 cases/s"``, or ``"12.5 s/case"`` when slower than one a second."""
    if rate <= 0:
        return f"? {unit}/s"
    one = unit[:-1] if unit.endswith("s") and len(unit) > 2 else unit  # "8.6 s/stage", not "s/stages"
    return f"{rate:.2f} {unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{one}"


class Progress:
    """One loop's progress: counts, rate, ETA; a rich bar, lines, or nothing (see the module docstring).

    Args:
        label: what the loop does (``"train"``, ``"generating cases"``).
        total: how many steps, or ``None`` when unknown (no ETA).
        unit: what the steps are (``"it"``, ``"cases"``, ``"videos"``).
        echo: where lines go (the run's ``ctx.echo``); ``None``: stderr.
        start: steps already done (a resumed run): they count toward ``total`` but not the rate.
        closing_line: write ``"label: N unit in T (rate)"`` when the loop ends (above the bars on a terminal).
    """

    def __init__(self, label: str, total: int | None = None, *, unit: str = "it",
                 echo: Callable[[str], Any] | None = None, start: int = 0, closing_line: bool = True) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.echo, self.closing_line = echo, closing_line
        self.mode = current_mode()
        self.start = self.done = int(start)
        self.began = time.perf_counter()
        self.closed = False
        self._bar: Any = None
        if self.mode == "bar":
            self._open_bar()

    def _open_bar(self) -> None:
        self._bar = _shared_bar()
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, rate="", status="")
        _open.add(self)

    # ------------------------------------------------------------------ numbers
    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def rate(self) -> float:
        """Steps a second since this progress began (steps of ``start`` excluded)."""
        counted = self.done - self.start
        return counted / self.elapsed() if counted > 0 and self.elapsed() > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the rate so far; ``None`` without a total or a rate."""
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def summary(self) -> str:
        """``"40/120 it, 3.20 it/s, ETA 25 s"`` (no ETA once done or without a total)."""
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        text = f"{count} {self.unit}, {format_rate(self.rate(), self.unit)}"
        if self.total is not None and self.done < self.total:
            text += f", ETA {format_seconds(self.eta())}"
        return text

    # ------------------------------------------------------------------ updates
    def advance(self, n: int = 1, *, status: str | None = None, note: str | None = None) -> None:
        """``n`` more steps done; ``status`` shows beside the bar, ``note`` is written as a line (:meth:`note`)."""
        self.done += int(n)
        if self._bar is not None:
            fields: dict[str, Any] = dict(rate=format_rate(self.rate(), self.unit))
            if status is not None:
                fields["status"] = status
            self._bar.update(self._task, completed=self.done, **fields)
        if note is not None:
            self.note(note)

    def describe(self, label: str) -> None:
        """Change the label the bar shows (e.g. ``"train epoch 3/12"``)."""
        if self._bar is not None:
            self._bar.update(self._task, description=label)

    def note(self, text: str, *, with_rate: bool = True) -> None:
        """A line that stays: above the bar, or alone in lines mode (followed by the rate and the ETA); nothing when off."""
        if self.mode == "off":
            return
        if with_rate and self.mode == "lines":
            text = f"{text}  ({self.summary()})"
        self._write(text)

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)  # above the bars (a line written past rich would break the display)
        elif self.echo is not None:
            self.echo(text)
        elif _lines_echo is not None:
            _lines_echo(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the bar; in lines mode write the closing line once."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            if self.closing_line:
                self._bar.console.print(self._closing())
            self._bar.remove_task(self._task)
            self._bar = None
            _open.discard(self)
            if not _open:  # the last loop on screen: the display goes
                _stop_shared_bar()
        elif self.mode == "lines" and self.closing_line:
            self._write(self._closing())

    def _closing(self) -> str:
        return (f"{self.label}: {self.done - self.start} {self.unit} in {format_seconds(self.elapsed())} "
                f"({format_rate(self.rate(), self.unit)})")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(items: Iterable[T], label: str, *, total: int | None = None, unit: str = "it",
          echo: Callable[[str], Any] | None = None) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` (``total`` defaults to ``len(items)`` when it has one).

    Example::

        for path in track(paths, "extracting features", unit="videos"):
            ...
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total, unit=unit, echo=echo) as bar:
        for item in items:
            yield item
            bar.advance()


__all__ = ["MODES", "Progress", "above_bars", "close_all", "lines_to", "current_mode", "format_rate", "format_seconds", "reset", "set_mode", "track"]
