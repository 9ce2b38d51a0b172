"""Video rows: the archive's files by path, with their sha256, size, duration and status.

Example::

    ids = store.upsert_videos([{"path": "cam1.mp4", "status": "pending"}])   # {'cam1.mp4': 1}
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from vkit.core.store.base import StoreBase, _pairs, _pick
from vkit.core.store.models import VIDEO_STATUSES, Video, utcnow
from vkit.core.store.paths import display_path, display_text
from vkit.core.store.upsert import upsert
from vkit.registry.errors import StoreError

_VIDEO_FIELDS = ("path", "sha256", "size", "duration", "fps", "frames", "status", "error")


class VideoRows(StoreBase):
    """The ``videos`` table."""

    def upsert_videos(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Insert or update videos by ``path``; returns ``{path: video_id}``.

        A row carries ``path`` and any of ``sha256``, ``size``, ``duration``,
        ``fps``, ``frames``, ``status`` (one of ``VIDEO_STATUSES``: ``pending``,
        ``ok``, ``failed``, ``duplicate``, ``changed``) and ``error``; columns a
        row leaves out keep their stored value.
        """
        rows = list(rows)
        clean = [_video_row(row) for row in rows]
        given = [str(row["path"]) for row in rows]
        paths = [row["path"] for row in clean]
        with self.session() as session:
            upsert(session, Video.__table__, clean, keys=("path",))
            found: dict[str, int] = {}
            for start in range(0, len(paths), 500):
                chunk = paths[start : start + 500]
                found.update(_pairs(session, sa.select(Video.path, Video.id).where(Video.path.in_(chunk))))
        return {name: found[path] for name, path in zip(given, paths)}

    def get_videos(self, paths: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every video (or those at ``paths``), by path."""
        where = [Video.path.in_([display_path(str(p))[0] for p in paths])] if paths is not None else []
        return self._select(Video, *where, order_by=(Video.path,))


def _video_row(row: Mapping[str, Any]) -> dict[str, Any]:
    clean = _pick(row, _VIDEO_FIELDS, "videos", required=("path",))
    clean["path"], raw = display_path(str(clean["path"]))
    if raw is not None:
        clean["path_bytes"] = raw
    if clean.get("error") is not None:
        clean["error"] = display_text(str(clean["error"]))
    if "status" in clean and clean["status"] not in VIDEO_STATUSES:
        raise StoreError(f"videos row {clean['path']!r}: status must be one of {VIDEO_STATUSES}, got {clean['status']!r}")
    clean["updated_at"] = utcnow()
    return clean
