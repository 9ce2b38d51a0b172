"""What a request may hand ``vkit serve``: an upload (saved under a name the server makes), a path under
``--data-root``, a body no larger than the limit, a video no longer than the limit.

- An uploaded file's name is never used as a path: the file is written to the
  server's upload folder as ``<random hex><suffix>``, the suffix picked from
  :data:`SUFFIXES` by comparing the lower-cased name's ending (anything else is
  refused), and the name itself is kept only as display text.
- A JSON ``{"path": ...}`` is resolved (symlinks followed) and must lie under
  the resolved data root and be a regular file; otherwise 403 / 404 / 422.
- :class:`BodyLimit` (ASGI middleware) answers 413 as soon as a body passes
  the limit, by its ``Content-Length`` or while it streams.

Example::

    path = resolve_data_path(Path("/data"), "cams/a.mp4")       # Path('/data/cams/a.mp4')
    suffix_of("Scan 1.NII.GZ")                                  # '.nii.gz'
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from vkit.registry.errors import DataError

__all__ = ["BodyLimit", "PathRefused", "SUFFIXES", "VIDEO_SUFFIXES", "check_duration", "resolve_data_path",
           "save_upload", "suffix_of"]

#: Video containers (their duration is checked against the limit).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")
#: File types an upload may be (the longest match wins: ``.nii.gz`` before ``.gz``).
SUFFIXES = (".nii.gz", ".nii", ".dcm", ".nrrd", ".mha", ".mhd", *VIDEO_SUFFIXES)


class PathRefused(DataError):
    """A path outside ``--data-root`` (or no data root configured): HTTP 403."""


def suffix_of(name: str) -> str:
    """The known suffix ``name`` ends with (case-insensitive); :class:`DataError` naming the accepted ones."""
    lower = name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    raise DataError(f"upload {display_name(name)!r}: unsupported file type; expected one of {', '.join(SUFFIXES)}")


def display_name(name: str | None) -> str:
    """A client's file name as display text: control characters dropped, at most 200 characters."""
    text = "".join(ch for ch in str(name or "upload") if ch.isprintable())
    return (text or "upload")[:200]


async def save_upload(upload: Any, folder: Path, limit: int) -> tuple[Path, str]:
    """Copy a Starlette ``UploadFile`` to ``folder/<hex><suffix>``; returns ``(path, display name)``.

    Raises:
        DataError: unsupported type, empty file, or more than ``limit`` bytes (the partial file is removed).
    """
    name = display_name(upload.filename)
    suffix = suffix_of(upload.filename or "")
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    size = 0
    try:
        with open(path, "xb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload {name!r} is larger than the limit of {limit} bytes (--max-upload-mb)")
                out.write(chunk)
        if size == 0:
            raise DataError(f"upload {name!r} is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, name


class TooLarge(DataError):
    """A body or upload over the size limit: HTTP 413."""


def resolve_data_path(root: Path | None, given: Any) -> Path:
    """``given`` (relative to ``root``, or absolute) resolved and checked to lie under ``root``, a regular file.

    Raises:
        PathRefused: no data root configured, or the resolved path is outside it.
        DataError: not a string, missing, or not a regular file.
    """
    if root is None:
        raise PathRefused("JSON paths need the server started with --data-root DIR; upload the file instead")
    if not isinstance(given, str) or not given or "\0" in given:
        raise DataError(f"'path' must be a non-empty string, got {json.dumps(given)[:80]}")
    base = root.resolve()
    target = (base / given).resolve()
    if not target.is_relative_to(base):
        raise PathRefused(f"path {given!r} is outside the server's --data-root")
    from vkit.core.files import check_regular

    if not target.exists():
        raise DataError(f"path {given!r}: no such file under --data-root")
    try:
        check_regular(target)
    except OSError as err:
        raise DataError(f"path {given!r}: {err}".replace(str(target), given)) from None
    return target


def check_duration(path: Path, name: str, limit: float | None) -> None:
    """A video longer than ``limit`` seconds is refused (:class:`DataError`); other files pass."""
    if limit is None or path.suffix.lower() not in VIDEO_SUFFIXES:
        return
    from vkit.core.video import probe

    try:
        duration = float(probe(path).duration or 0.0)
    except DataError as err:
        raise DataError(f"{name}: cannot be read: {str(err).replace(str(path), name)}") from None
    if duration > limit:
        raise DataError(f"{name}: {duration:.1f} s long; this server takes videos up to {limit:g} s (--max-seconds)")


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 (by ``Content-Length``, or while it streams)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0
        started = False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge(f"request body over {self.limit} bytes")
            return message

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except TooLarge:
            if not started:
                await _too_large(send, self.limit)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than the limit of {limit} bytes (--max-upload-mb)"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
