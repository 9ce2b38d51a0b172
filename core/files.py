"""Files named by data, opened safely: regular files only (a FIFO never blocks), and a file's identity for change checks.

A path in an archive or a datalist may name a FIFO, a device (a symlink to
``/dev/zero``) or a socket: reading one blocks forever or never ends. Every
read of such a path goes through :func:`open_regular`, which opens with
``O_NONBLOCK`` (so opening a FIFO returns at once) and checks ``fstat`` on the
open descriptor before a byte is read. :class:`FileState` is what a file looks
like from outside (device, inode, size, modification and change times): equal
states before and after reading mean the bytes read are the bytes hashed.

Example::

    with open_regular("cam1.mp4") as handle:          # NotRegularFileError on a FIFO, device, folder or socket
        head = handle.read(12)
    before = FileState.of("cam1.mp4")
    ...                                               # hash, decode
    FileState.of("cam1.mp4") == before                # False when it was rewritten or replaced meanwhile
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vkit.registry.errors import DataError

__all__ = ["FileState", "NotRegularFileError", "check_regular", "file_kind", "make_folder", "open_regular"]

_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symbolic link"))


class NotRegularFileError(DataError, OSError):
    """A path that is not a regular file (FIFO, device, socket, folder); an ``OSError`` too, for callers of ``open``."""


def file_kind(mode: int) -> str:
    """What ``st_mode`` says the file is: ``'regular file'``, ``'FIFO'``, ``'character device'``, ``'folder'``…

    Example::

        >>> file_kind(os.stat("/dev/null").st_mode)
        'character device'
    """
    if stat.S_ISREG(mode):
        return "regular file"
    return next((kind for test, kind in _KINDS if test(mode)), "unknown kind")


def _refuse(path: str | Path, mode: int) -> NotRegularFileError:
    return NotRegularFileError(f"{path}: not a regular file ({file_kind(mode)})")


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` opened for binary reading when it resolves to a regular file, without ever blocking.

    Opens with ``O_NONBLOCK`` (a FIFO with no writer opens at once) and checks
    the open descriptor's ``fstat``, so the file read is the file checked.

    Raises:
        NotRegularFileError: a FIFO, device, socket or folder, e.g. ``"x.mp4: not a regular file (FIFO)"``.
        OSError: the path cannot be opened (missing, permission denied).

    Example::

        with open_regular("clip.mp4") as handle:
            handle.read(4)
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        mode = _mode(path)  # a socket refuses open() (ENXIO): name what it is instead
        if mode is not None and not stat.S_ISREG(mode):
            raise _refuse(path, mode) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path) -> os.stat_result:
    """The ``stat`` of ``path`` when it is a regular file (checked as :func:`open_regular` does), else an error.

    Raises:
        NotRegularFileError: not a regular file.
        OSError: the path cannot be opened.
    """
    with open_regular(path) as handle:
        return os.fstat(handle.fileno())


def make_folder(path: str | Path, what: str) -> Path:
    """Create the output folder ``path`` (and its parents); a file, FIFO or device in the way is a one-line error.

    ``what`` names the option or key in the error, e.g. ``"--output"``.

    Example::

        make_folder("exports/run3", "--output")   # ConfigError: --output 'exports/run3': not a folder (FIFO)
    """
    from vkit.registry.errors import ConfigError

    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        blocker = next((p for p in (folder, *folder.parents) if _mode(p) is not None and not stat.S_ISDIR(_mode(p))), folder)
        mode = _mode(blocker)
        kind = file_kind(mode) if mode is not None else err.strerror
        raise ConfigError(f"{what} {str(path)!r}: not a folder ({blocker} is a {kind})") from None
    return folder


def _mode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


@dataclass(frozen=True)
class FileState:
    """A file as seen from outside: it changed when any field differs (rewritten in place, replaced, truncated).

    ``ctime_ns`` changes on every write, even one that restores the old
    ``mtime`` (``touch -r``); ``ino``/``dev`` change when another file is moved
    over the path.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: str | Path) -> FileState:
        """The state of the file ``path`` resolves to (symlinks followed, as readers follow them).

        Raises:
            OSError: the path cannot be stat'ed (missing, dangling link).
        """
        info = os.stat(path)
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
