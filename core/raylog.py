"""Ray, started with its own output routed into vkit's logger ``vkit.ray`` (shown with ``vkit --debug``).

Left alone, a local Ray prints about eight lines per command: the token-auth
notice, deprecations, Ray Data's execution log, ``E core_worker`` lines of its
C++ core and Python warnings with Ray's source paths. :func:`ray_session`
starts Ray with:

- every ``ray*`` Python logger's console handler replaced by one that forwards
  its records to ``vkit.ray`` (Ray's log files stay as they are);
- what ``ray.init`` and ``ray.shutdown`` write to the process's stderr (file
  descriptor 2: the C++ core's lines, the token-auth notice Ray logs while it
  sets its logging up) read back and logged to ``vkit.ray`` line by line;
- the C++ core's console log at ``RAY_BACKEND_LOG_LEVEL=fatal`` unless the user
  set that variable or ``vkit.ray`` logs DEBUG (``--debug``);
- warnings raised from Ray's own files logged to ``vkit.ray`` instead of printed.

The ``--engine ray`` paths of ``vkit score``/``vkit run`` and the recommendation
plugin's ``vkit recommend --users --engine ray`` start Ray here.

Example::

    with ray_session(address=None) as ray:
        ray.data.from_items(items).map_batches(...)
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The logger Ray's output goes to (``vkit --debug`` shows it on stderr).
LOG = logging.getLogger("vkit.ray")
LOG.addHandler(logging.NullHandler())  # without --debug nothing reaches stderr (no lastResort handler)


class _ToVkit(logging.Handler):
    """Forwards a Ray record to ``vkit.ray`` as ``<ray logger>: <message>``, at its level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            LOG.log(record.levelno, "%s: %s", record.name, record.getMessage())
        except Exception:  # noqa: BLE001 - logging must never break a job
            self.handleError(record)


_FORWARD = _ToVkit()


def route_ray_logging() -> None:
    """Replace the console handlers of every ``ray*`` logger by :data:`_FORWARD` (idempotent)."""
    names = [n for n in list(logging.root.manager.loggerDict) if n == "ray" or n.startswith("ray.")]
    for name in ["ray", *names]:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        if (name == "ray" or not logger.propagate) and _FORWARD not in logger.handlers:
            logger.addHandler(_FORWARD)
        if name == "ray":
            logger.propagate = False  # never to the root logger (a host application's handlers)


def import_ray() -> Any:
    """``ray`` with Ray Data, its logging routed; a missing ``vkit[ray]`` is a one-line ConfigError with the install line."""
    from vkit.core.extras import require_extra

    require_extra("ray", purpose="--engine ray")
    if not LOG.isEnabledFor(logging.DEBUG):
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the C++ core's `E core_worker` console lines
    with _ray_warnings():
        import ray
        import ray.data  # noqa: F401
    route_ray_logging()
    return ray


@contextmanager
def _ray_warnings() -> Iterator[None]:
    """Warnings raised from Ray's files go to ``vkit.ray``; any other warning is shown as usual."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recorded:  # the filters in force stay: only what passes is recorded
            try:
                yield
            finally:
                caught = list(recorded)
    finally:  # the usual showwarning is back here
        for w in caught:
            if f"{os.sep}ray{os.sep}" in str(w.filename):
                LOG.debug("%s: %s (%s:%s)", w.category.__name__, w.message, w.filename, w.lineno)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@contextmanager
def _stderr_to_log() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file for the block; its lines are then logged to ``vkit.ray``."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (an embedding host): nothing to redirect
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    LOG.debug("ray: %s", line.rstrip())


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray for the block (``address``: a cluster to join), started and shut down here unless already running."""
    ray = import_ray()
    started = not ray.is_initialized()
    with _ray_warnings():
        if started:
            with _stderr_to_log():
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         logging_level=logging.DEBUG if LOG.isEnabledFor(logging.DEBUG) else logging.WARNING)
            route_ray_logging()
        try:
            yield ray
        finally:
            if started:
                with _stderr_to_log():
                    ray.shutdown()


__all__ = ["LOG", "import_ray", "ray_session", "route_ray_logging"]
