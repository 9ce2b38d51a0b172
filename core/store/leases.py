"""The lease queue: which job scores a video (and its content) now, so concurrent jobs never score one twice.

Example::

    if store.claim_video(run_id, model_sha256, video_id) is not None:   # this job holds the video
        ...
        store.add_leased_results(run_id, model_sha256, [result])         # written only while still held
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from vkit.core.store.base import _seconds
from vkit.core.store.models import Run, Video, VideoLease, VideoSummary, utcnow
from vkit.core.store.results import Results
from vkit.core.store.upsert import _INSERTS


class LeaseQueue(Results):
    """The ``video_leases`` table; leased results are written through :class:`~vkit.core.store.results.Results`."""

    def claim_video(self, run_id: int, model_sha256: str, video_id: int, seconds: float = 60.0) -> dict[str, Any] | None:
        """Take the lease of (``model_sha256``, ``video_id``) for run ``run_id`` for ``seconds``; ``None`` if held.

        One ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (atomic on SQLite and
        PostgreSQL) takes a lease nobody holds, one that expired, one whose run
        is no longer ``running`` (finished, failed, reaped as ``interrupted``)
        or this run's own; another live run's lease is left alone. In the same
        transaction, after the claim, reads what this model already did with
        the video, so a video another job finished meanwhile is not redone.

        Returns:
            ``None`` when another live run holds the video, else
            ``dict(scored_sha256=..., failed=bool, failed_sha256=...)``: the
            content sha256 of this model's newest ``scored`` summary (or
            ``None``), and whether its newest summary is ``failed`` (with the
            content it failed on).
        """
        table = VideoLease.__table__
        now = utcnow()
        expires = now + _seconds(seconds)
        dead = sa.select(Run.id).where(Run.status != "running").scalar_subquery()
        with self.session() as session:
            insert = _INSERTS[session.get_bind().dialect.name](table)
            stmt = insert.values(model_sha256=model_sha256, video_id=video_id, run_id=run_id, expires_at=expires)
            stmt = stmt.on_conflict_do_update(
                index_elements=["model_sha256", "video_id"],
                set_=dict(run_id=stmt.excluded.run_id, expires_at=stmt.excluded.expires_at, video_sha256=None),
                where=sa.or_(table.c.expires_at < now, table.c.run_id == run_id, table.c.run_id.in_(dead)),
            ).returning(table.c.run_id)
            if session.execute(stmt).scalar() != run_id:
                return None
            return self._previous_outcome(session, model_sha256, video_id)

    def claim_content(self, run_id: int, model_sha256: str, video_id: int, sha256: str) -> dict[str, Any] | None:
        """Extend run ``run_id``'s lease on ``video_id`` to its content ``sha256``; ``None`` if that content is held.

        Call it after :meth:`claim_video`, once the file is hashed. The lease
        row takes ``video_sha256``, unique per model: a live lease of another
        video with the same content (another job's, or this run's own at
        another path still being scored) makes the update fail and the claim
        return ``None``; stale holders (expired, or their run no longer
        ``running``) are cleared first. In the same transaction, reads whether
        this model already scored the content.

        Returns:
            ``None`` when the content is held (or this run lost its lease on
            ``video_id``), else ``dict(scored_path=..., scored_run_id=...,
            scored_video_id=..., recorded=bool)``: where this model's newest
            ``scored`` summary of that content is (all ``None`` if nowhere),
            and ``recorded``: this video already has a ``duplicate`` summary
            of that content (nothing to write again).
        """
        lease = VideoLease.__table__
        now = utcnow()
        dead = sa.select(Run.id).where(Run.status != "running").scalar_subquery()
        with self.session() as session:
            session.execute(sa.update(lease).where(
                lease.c.model_sha256 == model_sha256, lease.c.video_sha256 == sha256, lease.c.run_id != run_id,
                sa.or_(lease.c.expires_at < now, lease.c.run_id.in_(dead))).values(video_sha256=None))
            try:
                with session.begin_nested():  # a savepoint: the unique key refuses a second live holder
                    mine = session.execute(sa.update(lease).where(
                        lease.c.model_sha256 == model_sha256, lease.c.video_id == video_id, lease.c.run_id == run_id,
                    ).values(video_sha256=sha256))
            except sa.exc.IntegrityError:
                return None
            if not mine.rowcount:
                return None
            return self._content_outcome(session, model_sha256, video_id, sha256)

    def _content_outcome(self, session: Session, model_sha256: str, video_id: int, sha256: str) -> dict[str, Any]:
        done = (
            sa.select(VideoSummary.status, VideoSummary.video_id, VideoSummary.run_id, Video.path)
            .join(Run, Run.id == VideoSummary.run_id).join(Video, Video.id == VideoSummary.video_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.video_sha256 == sha256,
                   VideoSummary.status.in_(("scored", "duplicate")))
            .order_by(VideoSummary.scored_at.desc(), VideoSummary.id.desc())
        )
        rows = session.execute(done).all()
        scored = next((r for r in rows if r.status == "scored"), None)
        recorded = any(r.status == "duplicate" and r.video_id == video_id for r in rows)
        return dict(scored_path=scored.path if scored else None, scored_run_id=scored.run_id if scored else None,
                    scored_video_id=scored.video_id if scored else None, recorded=recorded and scored is not None)

    def _previous_outcome(self, session: Session, model_sha256: str, video_id: int) -> dict[str, Any]:
        query = (
            sa.select(VideoSummary.status, VideoSummary.video_sha256)
            .join(Run, Run.id == VideoSummary.run_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.video_id == video_id)
            .order_by(VideoSummary.scored_at.desc(), VideoSummary.id.desc())
        )
        rows = session.execute(query).all()
        scored = next((sha for status, sha in rows if status == "scored"), None)
        newest = rows[0] if rows else None
        failed = newest is not None and newest[0] == "failed"
        return dict(scored_sha256=scored, failed=failed, failed_sha256=newest[1] if failed else None)

    def renew_leases(self, run_id: int, seconds: float = 60.0) -> int:
        """Push the expiry of every lease run ``run_id`` holds ``seconds`` ahead; returns how many it holds."""
        with self.session() as session:
            result = session.execute(sa.update(VideoLease).where(VideoLease.run_id == run_id)
                                     .values(expires_at=utcnow() + _seconds(seconds)))
            return result.rowcount

    def release_leases(self, run_id: int, video_ids: Sequence[int] | None = None) -> int:
        """Drop run ``run_id``'s leases (on ``video_ids``, or all); returns how many were dropped."""
        where = [VideoLease.run_id == run_id] + ([VideoLease.video_id.in_(list(video_ids))] if video_ids is not None else [])
        with self.session() as session:
            return session.execute(sa.delete(VideoLease).where(*where)).rowcount

    def add_leased_results(self, run_id: int, model_sha256: str, results: Iterable[Mapping[str, Any]], *,
                           segment_rows: bool = True) -> tuple[list[dict[str, Any]], list[int]]:
        """Like :meth:`add_video_results`, but only for videos whose lease run ``run_id`` still holds.

        The leases are locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
        writes one at a time), results of videos another run took over are
        dropped, and the leases of the written videos are released, all in one
        transaction: a video's results are never written twice for one model.

        Returns:
            ``(hook payloads of the written videos, ids of the dropped videos)``.
        """
        results = [dict(r) for r in results]
        ids = [r.get("video_id") for r in results]
        with self.session() as session:
            held = set(session.scalars(
                sa.select(VideoLease.video_id)
                .where(VideoLease.model_sha256 == model_sha256, VideoLease.video_id.in_(ids),
                       VideoLease.run_id == run_id)
                .with_for_update()
            ))
            keep = [r for r in results if r.get("video_id") in held]
            payloads = self._write_results(session, run_id, keep, segment_rows)
            if held:
                session.execute(sa.delete(VideoLease).where(VideoLease.model_sha256 == model_sha256,
                                                            VideoLease.run_id == run_id,
                                                            VideoLease.video_id.in_(list(held))))
        return payloads, [i for i in ids if i not in held]
