"""Find the video files of an archive: folders walked recursively, globs expanded, symlink loops never followed.

Example::

    paths = find_videos(["/archive/cams", "/archive/extra/*.mkv"])
    paths[:2]   # ['/archive/cams/a.mp4', '/archive/cams/b/c.mp4'] (absolute, sorted, unique)
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from vkit.registry.errors import DataError

#: File name endings taken from a folder (a file named explicitly or by a glob is taken whatever its ending).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".ogv")


def _walk(root: Path, suffixes: tuple[str, ...]) -> Iterable[str]:
    """Files under ``root`` with one of ``suffixes``; symlinked folders are followed once (by real path)."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue  # a symlink loop, or a folder reached twice
        seen.add(real)
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            for name in dirnames:
                sub = Path(dirpath) / name
                if sub.is_symlink() and sub.is_dir():
                    stack.append(sub)
            for name in filenames:
                if name.lower().endswith(suffixes) and not name.startswith("."):
                    yield os.path.join(dirpath, name)
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
            seen.add(os.path.realpath(dirpath))


def find_videos(archives: Sequence[str | Path], suffixes: Sequence[str] = VIDEO_SUFFIXES) -> list[str]:
    """The video files named by ``archives``: absolute paths, sorted, each once.

    Args:
        archives: folders (walked recursively, taking files ending in one of
            ``suffixes``), files, or glob patterns (``**`` recurses); a glob
            that names a folder walks it.
        suffixes: endings (lowercase, with the dot) a file found in a folder must have.

    Raises:
        DataError: an archive entry that is neither an existing file/folder nor a glob matching something.
    """
    if isinstance(archives, (str, Path)):
        archives = [archives]
    ends = tuple(s.lower() for s in suffixes)
    found: dict[str, None] = {}
    for entry in archives:
        text = os.path.expanduser(str(entry))
        if glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise DataError(f"archive {str(entry)!r}: the pattern matches no file or folder")
        elif os.path.exists(text):
            matches = [text]
        else:
            raise DataError(f"archive {str(entry)!r}: no such file or folder")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                found.update((os.path.abspath(p), None) for p in _walk(path, ends))
            elif path.is_file():
                found[os.path.abspath(path)] = None
    return sorted(found)


__all__ = ["VIDEO_SUFFIXES", "find_videos"]
