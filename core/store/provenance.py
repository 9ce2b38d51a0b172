"""What a run records about where it came from: package versions and file digests.

Example::

    >>> sorted(package_versions())[:2]
    ['mmaction2', 'mmengine']
    >>> sha256_file("model.safetensors")   # doctest: +SKIP
    ('9f86d0…', 1234)
"""
from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

#: Distributions whose versions every run records (no import of the packages themselves).
TRACKED_DISTRIBUTIONS = ("vkit", "torch", "mmengine", "mmaction2", "monai")
_CHUNK = 1 << 20


def package_versions(names: tuple[str, ...] = TRACKED_DISTRIBUTIONS) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (``None`` when absent), from package metadata only."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_file(path: str | Path) -> tuple[str, int]:
    """Streamed sha256 (hex) and size in bytes of the regular file at ``path``.

    Raises:
        NotRegularFileError: ``path`` is a FIFO, device, socket or folder (checked before a byte is read).
        OSError: it cannot be opened or read.
    """
    from vkit.core.files import open_regular

    digest = hashlib.sha256()
    size = 0
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
