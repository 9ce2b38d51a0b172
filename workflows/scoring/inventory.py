"""Find the video files of an archive: folders walked recursively, each real file once, unreadable folders reported.

Rules:

- An argument that exists is taken **literally** (``Videos [2019]`` is a
  folder, not a pattern); only an argument that does not exist is expanded as
  a glob (``**`` recurses).
- Each real file (device + inode) is listed once per call, whatever the paths
  that reach it: hard links, overlapping arguments, symlinked files.
- Symlinked folders are followed once; a link back to a folder on its own
  path (``sub/up -> ..``, a link to the archive root or above it) is a loop and
  is not followed.
- A folder that cannot be read is not skipped silently: it is returned in
  ``Inventory.failures`` with the reason.
- File names that are not UTF-8 are kept as Python decodes them
  (``surrogateescape``), so they open; :func:`vkit.core.store.paths.display_path`
  shows them.

Example::

    found = inventory(["/archive/cams", "/archive/extra/*.mkv"])
    found.files[:2]     # ['/archive/cams/a.mp4', '/archive/cams/b/c.mp4'] (absolute, sorted, unique)
    found.failures      # [('/archive/cams/locked', 'unreadable folder (Permission denied)')]
"""
from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vkit.registry.errors import DataError

#: File name endings taken from a folder (a file named explicitly or by a glob is taken whatever its ending).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".ogv")


@dataclass
class Inventory:
    """What :func:`inventory` found: video files (absolute, sorted, each real file once) and unreadable entries."""

    files: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


class _Walker:
    """Collects files, remembering real files by (device, inode) and folders by real path."""

    def __init__(self, suffixes: tuple[str, ...]) -> None:
        self.suffixes = suffixes
        self.files: dict[str, None] = {}
        self.failures: dict[str, str] = {}
        self._inodes: set[tuple[int, int]] = set()
        self._folders: set[str] = set()

    def add_file(self, path: str) -> None:
        try:
            info = os.stat(path)
        except OSError:  # a dangling link or a file gone already: the scorer reports it with its reason
            info = None
        if info is not None:
            key = (info.st_dev, info.st_ino)
            if key in self._inodes:
                return
            self._inodes.add(key)
        self.files[os.path.abspath(path)] = None

    def fail(self, path: str, reason: str) -> None:
        self.failures.setdefault(os.path.abspath(path), reason)

    def walk(self, root: str) -> None:
        """Files under ``root`` with a wanted ending; symlinked folders followed once, never back up their own path."""
        stack = [os.path.abspath(root)]
        while stack:
            top = stack.pop()
            real = os.path.realpath(top)
            if real in self._folders:
                continue  # reached already (overlapping arguments, two links to one folder)
            for dirpath, dirnames, filenames in os.walk(top, followlinks=False, onerror=self._on_error):
                here = os.path.realpath(dirpath)
                self._folders.add(here)
                for name in sorted(filenames):
                    if name.lower().endswith(self.suffixes) and not name.startswith("."):
                        self.add_file(os.path.join(dirpath, name))
                linked = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
                for name in linked:
                    target = os.path.realpath(os.path.join(dirpath, name))
                    if os.path.isdir(target) and not _is_ancestor(target, here):
                        stack.append(os.path.join(dirpath, name))
                dirnames[:] = sorted(d for d in dirnames if d not in linked)

    def _on_error(self, err: OSError) -> None:
        where = err.filename if err.filename is not None else "?"
        self.fail(os.fsdecode(where), f"unreadable folder ({err.strerror or err})")


def _is_ancestor(folder: str, of: str) -> bool:
    """Whether real path ``folder`` is ``of`` or one of its parents (following it would loop)."""
    return of == folder or of.startswith(folder.rstrip(os.sep) + os.sep)


def inventory(archives: Sequence[str | Path] | str | Path, suffixes: Sequence[str] = VIDEO_SUFFIXES) -> Inventory:
    """The video files named by ``archives`` and the folders that could not be read.

    Args:
        archives: folders (walked recursively, taking files ending in one of
            ``suffixes``), files, or — only when no such path exists — glob
            patterns (``**`` recurses); a glob that names a folder walks it.
        suffixes: endings (lowercase, with the dot) a file found in a folder must have.

    Raises:
        DataError: an argument that is neither an existing path nor a glob matching something.
    """
    if isinstance(archives, (str, Path)):
        archives = [archives]
    walker = _Walker(tuple(s.lower() for s in suffixes))
    for entry in archives:
        text = os.path.expanduser(os.fspath(entry))
        if os.path.lexists(text):
            matches = [text]
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise DataError(f"archive {str(entry)!r}: no such path, and as a pattern it matches no file or folder")
        else:
            raise DataError(f"archive {str(entry)!r}: no such file or folder")
        for match in matches:
            if os.path.isdir(match):
                if not os.access(match, os.R_OK | os.X_OK):
                    walker.fail(match, "unreadable folder (Permission denied)")
                    continue
                walker.walk(match)
            else:  # a file, or a link to nothing: the scorer says why it cannot be read
                walker.add_file(match)
    return Inventory(sorted(walker.files), sorted(walker.failures.items()))


def find_videos(archives: Sequence[str | Path] | str | Path, suffixes: Sequence[str] = VIDEO_SUFFIXES) -> list[str]:
    """The video files named by ``archives`` (see :func:`inventory`), absolute, sorted, each real file once."""
    return inventory(archives, suffixes).files


__all__ = ["Inventory", "VIDEO_SUFFIXES", "find_videos", "inventory"]
