"""The store's tables as SQLAlchemy 2 ORM classes (the migrations in ``migrations/versions`` build the same schema).

Every child row belongs to a run and goes with it (``ON DELETE CASCADE``);
scores, events and per-video summaries also go with their video. Unique keys
make every write idempotent: ``(run, split, key, step)`` for metrics, ``(run,
path)`` for artifacts, ``(run, split, item)`` for predictions, ``path`` for
videos, ``(run, video, segment)`` for scores, ``(run, video, kind, start)``
for events and ``(run, video)`` for per-video summaries.

Example::

    with store.session() as session:
        n = session.scalar(select(func.count()).select_from(Score))
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Allowed ``runs.status`` values; ``interrupted``: its process died without closing it (``Store.reap_stale_runs``).
RUN_STATUSES = ("running", "finished", "failed", "interrupted")
#: Allowed ``videos.status`` values: inventoried, decoded fine, unreadable, same content as a video already scored,
#: changed while it was scored (rewritten between hashing and decoding, on every try: scored by the next run).
VIDEO_STATUSES = ("pending", "ok", "failed", "duplicate", "changed")
#: What ``runs.kind`` usually holds: made by ``vkit run``, ``vkit score``, ``vkit predict``, ``vkit watch``,
#: ``vkit pretrain`` (free text: plugins may add kinds).
RUN_KINDS = ("train", "score", "predict", "watch", "pretrain", "serve")
#: Allowed ``events.status`` values: ``open`` (a live event still growing, ``vkit watch``), ``closed`` (every event of
#: ``vkit score``), ``interrupted`` (its stream died or the watch stopped while it was open).
EVENT_STATUSES = ("open", "closed", "interrupted")
#: Allowed ``alerts.status`` values: queued for the webhook, delivered (2xx), given up (retries spent or the watch ended).
ALERT_STATUSES = ("pending", "delivered", "failed")
#: Allowed ``video_summaries.status`` values: ``scored``/``failed`` (as in the ``vkit_video_scored`` hook) and
#: ``duplicate`` (content this model already scored at another path: not scored again, no hook call) and
#: ``changed`` (the file changed while it was scored: no rows, no sha256, no hook call; the next run scores it).
SCORED_STATUSES = ("scored", "failed", "duplicate", "changed")

_CASCADE = dict(ondelete="CASCADE")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


#: Constraint names that are stable across backends (Alembic's batch mode on SQLite needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every vkit table; ``Base.metadata`` is the schema at head."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: sa.JSON, Any: sa.JSON, dt.datetime: UTCDateTime}


class Run(Base):
    """One ``vkit run``/``score``/``predict`` invocation (``kind``: which; ``host``/``pid``: the process that started it)."""

    __tablename__ = "runs"
    __table_args__ = (
        sa.CheckConstraint("status IN ('running', 'finished', 'failed', 'interrupted')", name="ck_runs_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(200), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32), index=True, default="train", server_default="train")
    plugin: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16), index=True, default="running")
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[dt.datetime | None]
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int | None]
    versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    work_dir: Mapped[str | None] = mapped_column(sa.Text)
    model_sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    pid: Mapped[int | None]


class Metric(Base):
    """A scalar logged by a run at a step of a split (``NaN`` is stored as NULL)."""

    __tablename__ = "metrics"
    __table_args__ = (sa.UniqueConstraint("run_id", "split", "key", "step", name="uq_metrics_run_split_key_step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE), index=True)
    key: Mapped[str] = mapped_column(sa.String(200))
    value: Mapped[float | None] = mapped_column(sa.Float)
    step: Mapped[int]
    split: Mapped[str] = mapped_column(sa.String(50))
    logged_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    """A file a run produced (checkpoint, report, export) with its sha256 and size."""

    __tablename__ = "artifacts"
    __table_args__ = (sa.UniqueConstraint("run_id", "path", name="uq_artifacts_run_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE), index=True)
    kind: Mapped[str] = mapped_column(sa.String(50))
    path: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    """A per-case prediction of a run on a split (``values``: probabilities or any JSON)."""

    __tablename__ = "predictions"
    __table_args__ = (sa.UniqueConstraint("run_id", "split", "item_id", name="uq_predictions_run_split_item"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE), index=True)
    split: Mapped[str] = mapped_column(sa.String(50))
    item_id: Mapped[str] = mapped_column(sa.String(500))
    label: Mapped[float | None] = mapped_column(sa.Float)
    prediction: Mapped[float | None] = mapped_column(sa.Float)
    values: Mapped[Any | None]


class Video(Base):
    """A video file of an archive, known by path (and content by sha256)."""

    __tablename__ = "videos"
    __table_args__ = (sa.CheckConstraint("status IN ('pending', 'ok', 'failed', 'duplicate', 'changed')",
                                         name="ck_videos_status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(sa.String(2000), unique=True)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    duration: Mapped[float | None] = mapped_column(sa.Float)
    fps: Mapped[float | None] = mapped_column(sa.Float)
    frames: Mapped[int | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    error: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: The exact file name bytes when they are not UTF-8 (``path`` then shows them as ``\xNN``).
    path_bytes: Mapped[bytes | None] = mapped_column(sa.LargeBinary)


class Score(Base):
    """The model's output on one segment (``start``/``end`` in seconds) of a video in a run."""

    __tablename__ = "scores"
    __table_args__ = (sa.UniqueConstraint("run_id", "video_id", "segment", name="uq_scores_run_video_segment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE))
    video_id: Mapped[int] = mapped_column(sa.ForeignKey("videos.id", **_CASCADE), index=True)
    segment: Mapped[int]
    start: Mapped[float] = mapped_column(sa.Float)
    end: Mapped[float] = mapped_column(sa.Float)
    score: Mapped[float | None] = mapped_column(sa.Float)
    values: Mapped[Any | None]
    #: ``vkit watch``: the wall clock (UTC) when the window's last frame arrived, and when its score was computed.
    wall_time: Mapped[dt.datetime | None]
    scored_at: Mapped[dt.datetime | None]


class Event(Base):
    """A detected event (``start``/``end`` in seconds) in a video during a run.

    ``vkit watch`` keeps a live event ``open`` (its ``end`` and ``score`` grow) until the rule closes it
    (``closed``) or its stream dies (``interrupted``); stream gaps are events of kind ``gap``. ``opened_at`` /
    ``closed_at`` are wall times; ``keyframe_path`` / ``keyframe_sha256`` a JPEG of the event's peak window.
    """

    __tablename__ = "events"
    __table_args__ = (sa.UniqueConstraint("run_id", "video_id", "kind", "start", name="uq_events_run_video_kind_start"),
                      sa.CheckConstraint("status IN ('open', 'closed', 'interrupted')", name="ck_events_status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE))
    video_id: Mapped[int] = mapped_column(sa.ForeignKey("videos.id", **_CASCADE), index=True)
    kind: Mapped[str] = mapped_column(sa.String(100))
    start: Mapped[float] = mapped_column(sa.Float)
    end: Mapped[float] = mapped_column(sa.Float)
    score: Mapped[float | None] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(16), default="closed", server_default="closed")
    opened_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    keyframe_path: Mapped[str | None] = mapped_column(sa.Text)
    keyframe_sha256: Mapped[str | None] = mapped_column(sa.String(64))


class Alert(Base):
    """An event's open or close notice for ``vkit watch --webhook``; what was not delivered stays ``pending``/``failed``."""

    __tablename__ = "alerts"
    __table_args__ = (sa.UniqueConstraint("run_id", "event_id", "action", name="uq_alerts_run_event_action"),
                      sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_alerts_status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE), index=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id", **_CASCADE))
    action: Mapped[str] = mapped_column(sa.String(16))
    payload: Mapped[Any]
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]


class LiveSummary(Base):
    """A live group summary of a ``vkit watch`` run (education: a session's "4 of 20 learners low for 2 min")."""

    __tablename__ = "live_summaries"
    __table_args__ = (sa.UniqueConstraint("run_id", "group_name", "step", name="uq_live_summaries_run_group_step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE), index=True)
    group_name: Mapped[str] = mapped_column(sa.String(500))
    step: Mapped[int]
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(sa.Text)
    values: Mapped[Any | None]


class VideoSummary(Base):
    """The outcome of one video in a scoring run; what resuming skips on (model sha256 + video sha256)."""

    __tablename__ = "video_summaries"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "video_id", name="uq_video_summaries_run_video"),
        sa.CheckConstraint("status IN ('scored', 'failed', 'duplicate', 'changed')", name="ck_video_summaries_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE))
    video_id: Mapped[int] = mapped_column(sa.ForeignKey("videos.id", **_CASCADE), index=True)
    video_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)
    segments: Mapped[int] = mapped_column(default=0)
    max_score: Mapped[float | None] = mapped_column(sa.Float)
    mean_score: Mapped[float | None] = mapped_column(sa.Float)
    scored_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The scorer's per-video aggregates and the event count (JSON), kept under ``--aggregate-only`` too.
    values: Mapped[Any | None]


class VideoLease(Base):
    """A scoring run's claim on a video for one model (checkpoint sha256) until ``expires_at``.

    Jobs sharing a store and a checkpoint take a lease before decoding a
    video (``Store.claim_video``), renew it while they work and drop it with
    the video's results; a lease that expired, or whose run is no longer
    ``running``, may be taken over. Once the file is hashed the lease also
    names its content (``video_sha256``, unique per model), so no two videos
    with the same content are scored at once (``Store.claim_content``).
    """

    __tablename__ = "video_leases"
    __table_args__ = (sa.UniqueConstraint("model_sha256", "video_id", name="uq_video_leases_model_video"),
                      sa.UniqueConstraint("model_sha256", "video_sha256", name="uq_video_leases_model_content"))

    id: Mapped[int] = mapped_column(primary_key=True)
    model_sha256: Mapped[str] = mapped_column(sa.String(64))
    video_id: Mapped[int] = mapped_column(sa.ForeignKey("videos.id", **_CASCADE))
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", **_CASCADE), index=True)
    expires_at: Mapped[dt.datetime]
    video_sha256: Mapped[str | None] = mapped_column(sa.String(64))


#: Table name -> ORM class, for reads that return plain dicts (``video_leases`` is bookkeeping, not listed).
TABLES: dict[str, type[Base]] = {
    cls.__tablename__: cls for cls in (Run, Metric, Artifact, Prediction, Video, Score, Alert, Event,
                                       VideoSummary, LiveSummary)
}
