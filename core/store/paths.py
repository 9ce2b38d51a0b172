"""File names that are not UTF-8: a display form for text columns and messages, the exact bytes kept apart.

On POSIX a file name is bytes; Python decodes undecodable ones with
``surrogateescape`` (``b'caf\\xe9.mp4'`` → ``'caf\\udce9.mp4'``), which no
database text column, JSON encoder or terminal accepts. :func:`display_path`
turns such a name into text with ``\\xNN`` escapes and returns the exact bytes
(``os.fsencode``) to store next to it, so nothing is lost.

Example::

    display_path(os.fsdecode(b"/cams/caf\\xe9.mp4"))   # ('/cams/caf\\\\xe9.mp4', b'/cams/caf\\xe9.mp4')
    display_path("/cams/ok.mp4")                      # ('/cams/ok.mp4', None)
"""
from __future__ import annotations

import os


def display_text(text: str) -> str:
    """``text`` with every undecodable byte (a lone surrogate) written as ``\\xNN``; plain text is returned as is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that did not come from surrogateescape
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def display_path(path: str | os.PathLike[str]) -> tuple[str, bytes | None]:
    """``(text to store and show, exact bytes or None)``: bytes only when the name is not valid UTF-8."""
    text = os.fspath(path)
    shown = display_text(text)
    return shown, (None if shown == text else os.fsencode(text))


__all__ = ["display_path", "display_text"]
