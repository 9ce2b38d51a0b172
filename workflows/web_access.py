"""Who may talk to vkit's HTTP servers (``vkit serve``, the live page of ``vkit watch --ui``): loopback by default,
a bearer token required off it.

A server bound to a loopback address (``127.0.0.1``, ``::1``, ``localhost``)
is reachable only from this machine and needs no token unless one is given;
bound to anything else (``0.0.0.0``, a LAN address) it refuses to start
without one. A token is compared in constant time and accepted from an
``Authorization: Bearer`` header, the ``vkit_token`` cookie (set when a page is
opened with ``?token=``, so a browser's ``EventSource`` and ``<img>`` requests
carry it) or the ``token`` query parameter.

Example::

    check_binding("0.0.0.0", None)          # ConfigError: a token is required off localhost
    allowed(request, "s3cret")              # True when the request carries it
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import sys
from typing import Any

from vkit.registry.errors import ConfigError

__all__ = ["COOKIE", "allowed", "check_binding", "is_loopback", "new_token", "parse_host_port", "uvicorn_config"]

#: The cookie a page opened with ``?token=`` gets, so its own requests carry the token.
COOKIE = "vkit_token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (``localhost`` or a loopback address)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None, *, what: str = "the server") -> None:
    """Refuse to bind ``host`` without a token unless it is a loopback address; a token must be 16+ characters."""
    if token is not None and len(token) < 16:
        raise ConfigError(f"{what}: the token must be at least 16 characters (got {len(token)}); "
                          f"make one with `python -c 'import secrets; print(secrets.token_urlsafe(24))'`")
    if token is None and not is_loopback(host):
        raise ConfigError(f"{what}: bound to {host!r} (reachable from other machines) it needs a bearer token "
                          f"(--token or VKIT_TOKEN); bind 127.0.0.1 to run without one")


def new_token() -> str:
    """A random URL-safe token (32 characters)."""
    return secrets.token_urlsafe(24)


def presented(request: Any) -> str | None:
    """The token a Starlette request carries (header, cookie or query), or ``None``."""
    header = request.headers.get("authorization") or ""
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(COOKIE) or request.query_params.get("token")


def allowed(request: Any, token: str | None) -> bool:
    """Whether ``request`` may proceed: no token configured, or it carries that token (constant-time compare)."""
    if token is None:
        return True
    given = presented(request)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def parse_host_port(value: str, default_port: int = 8765) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000``, ``:8000`` meaning 127.0.0.1, ``0.0.0.0:8000``) as ``(host, port)``."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    host = host or "127.0.0.1"
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ConfigError(f"--ui {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8765") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--ui {value!r}: port {port} is out of range 0-65535")
    return host, port


class _SysStreamHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever ``sys.stderr`` / ``sys.stdout`` is when a record comes (not the stream of
    the moment it was made, which a test's capture or a CLI runner may have closed since)."""

    def __init__(self, name: str) -> None:
        self._sys_stream = name
        super().__init__()

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return getattr(sys, self._sys_stream)

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _uvicorn_loggers() -> None:
    """uvicorn's own loggers as its default ``LOGGING_CONFIG`` sets them (formatters, stderr / stdout, no
    propagation), made here once per process instead of through ``logging.config.dictConfig``."""
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    for name, stream, formatter in (
            ("uvicorn", "stderr", DefaultFormatter("%(levelprefix)s %(message)s")),
            ("uvicorn.access", "stdout",
             AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'))):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _SysStreamHandler) for h in logger.handlers):
            handler = _SysStreamHandler(stream)
            handler.setFormatter(formatter)
            logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.propagate = False


def uvicorn_config(app: Any, **options: Any) -> Any:
    """``uvicorn.Config(app, **options)`` that leaves the rest of the process's logging alone.

    uvicorn's default ``log_config`` goes through ``logging.config.dictConfig``, which closes every handler the
    process has ever made: an mmengine Runner's log file among them, so a model built afterwards in the same process
    (mmaction2's ``init_weights`` writes its init dump into that file) crashed. Here ``log_config=None`` and uvicorn's
    loggers get its formatters directly (:func:`_uvicorn_loggers`); ``log_level`` still applies.
    """
    import uvicorn

    _uvicorn_loggers()
    return uvicorn.Config(app, log_config=None, **options)
