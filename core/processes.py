"""Processes that end with the job: worker processes die with their parent, SIGTERM stops a job like Ctrl-C.

A decoding worker busy in C code (FFmpeg, a long read) never looks at its
parent, so a parent killed with SIGTERM or SIGKILL would leave it running.
:func:`die_with_parent` (a ``DataLoader`` ``worker_init_fn``) asks the Linux
kernel to kill the worker when its parent dies (``PR_SET_PDEATHSIG``), or
watches the parent from a thread elsewhere. :func:`sigterm_interrupts` turns
SIGTERM into :class:`Terminated` (a ``KeyboardInterrupt``), so a job stopped by
``kill``, systemd or a batch scheduler ends as a Ctrl-C does: finished videos
written, its run row ``interrupted``, its workers shut down.

Example::

    loader = DataLoader(stream, num_workers=2, worker_init_fn=functools.partial(die_with_parent, os.getpid()))
    with sigterm_interrupts():
        for item in loader:
            ...
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["Terminated", "die_with_parent", "sigterm_interrupts"]

_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the job stops as on Ctrl-C (its ``str`` names the signal)."""


def die_with_parent(parent_pid: int, _worker_id: int | None = None) -> None:
    """Make this (child) process die as soon as process ``parent_pid`` does; exit now if it is already gone.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, the kernel kills the child
    even while it is stuck in C code. Elsewhere: a daemon thread polls the
    parent pid each second and ends the process with ``os._exit``. SIGTERM
    gets its default action back (a forked child inherits the parent's
    :func:`sigterm_interrupts` handler), so ``kill`` ends the child at once.

    Args:
        parent_pid: the pid of the process that started this one (``os.getpid()`` there, before the fork).
        _worker_id: ignored (so it can be a ``DataLoader`` ``worker_init_fn`` via ``functools.partial``).

    Example::

        DataLoader(dataset, num_workers=2, worker_init_fn=functools.partial(die_with_parent, os.getpid()))
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux") and _pdeathsig():
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="vkit-parent-watch", daemon=True).start()


def _pdeathsig() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, every: float = 1.0) -> None:
    while os.getppid() == parent_pid:
        time.sleep(every)
    os._exit(1)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no change).

    The previous handler comes back on exit; a block entered from another
    thread (signal handlers belong to the main thread) changes nothing.

    Example::

        with sigterm_interrupts():
            score_everything()        # `kill PID`: Terminated, a KeyboardInterrupt, unwinds this cleanly
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
