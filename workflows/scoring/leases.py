"""Cooperating ``vkit score`` jobs: a video is leased (claimed) before it is decoded, so jobs sharing a store split the work.

Several jobs — processes on one machine or many machines on one PostgreSQL
store — can score the same archive with the same checkpoint: each claims a
video with :meth:`~vkit.core.store.Store.claim_video` (one atomic statement)
right before decoding it, skips a video another live job holds, renews its
leases while it works (:class:`Heartbeat`) and releases each lease in the
transaction that writes the video's results. A job that dies (``kill -9``)
leaves leases that expire, or that are free at once when its run is reaped as
``interrupted``; the others take them over. A job that ends a pass with
videos held by others waits and tries them again, so every video is scored
exactly once whoever dies.

Example::

    claimer = LeaseClaimer(store_url, run_id, model_sha256, seconds=60)
    stream = LeasedStream([(path, video_id), ...], scorer, claimer)   # an IterableDataset of outcomes
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from vkit.registry.errors import StoreError

#: Default lease length (seconds); a lease is renewed every third of it.
LEASE_SECONDS = 120.0


class LeaseClaimer:
    """Claims and releases video leases for one run; picklable, opens its own store in each process.

    Args:
        url: the store URL (with its password: worker processes connect with it).
        run_id: the scoring run.
        model_sha256: the checkpoint's sha256 (a lease is per model and video).
        seconds: lease length.
        retry_failed: redo videos this model failed on before (else they stay failed).
    """

    def __init__(self, url: str, run_id: int, model_sha256: str, seconds: float = LEASE_SECONDS,
                 retry_failed: bool = False) -> None:
        self.url, self.run_id, self.model_sha256 = url, run_id, model_sha256
        self.seconds, self.retry_failed = float(seconds), retry_failed
        self._store: Any = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None, "_pid": None}

    @property
    def store(self) -> Any:
        """This process's own store connection (an engine must not cross a fork)."""
        if self._store is None or self._pid != os.getpid():
            from vkit.core.store import open_store

            # create=False: a Ray worker on another machine must not make a stray SQLite store of its own
            self._store, self._pid = open_store(self.url, create=False), os.getpid()
        return self._store

    def claim(self, video_id: int) -> dict[str, Any] | None:
        """The claim (see :meth:`~vkit.core.store.Store.claim_video`), or ``None`` when another live job holds it."""
        return self.store.claim_video(self.run_id, self.model_sha256, video_id, self.seconds)

    def claim_content(self, video_id: int, sha256: str) -> dict[str, Any] | None:
        """Extend the lease on ``video_id`` to its content (:meth:`~vkit.core.store.Store.claim_content`, plus
        ``video_id``), or ``None`` when another video with that content is being scored."""
        answer = self.store.claim_content(self.run_id, self.model_sha256, video_id, sha256)
        return None if answer is None else dict(answer, video_id=video_id)

    def release(self, video_id: int) -> None:
        """Drop this run's lease on ``video_id`` (a video skipped without results)."""
        self.store.release_leases(self.run_id, [video_id])

    def release_quietly(self, video_id: int) -> None:
        """:meth:`release`, where the store may be unreachable (the lease then expires)."""
        try:
            self.release(video_id)
        except StoreError:
            pass


def skip_plan(claim: dict[str, Any], retry_failed: bool) -> tuple[str | None, str | None]:
    """``(sha256 to skip on, why)`` for a claimed video: content this model scored, or failed on (unless retrying).

    ``why`` is ``'scored'`` or ``'failed'``; ``(None, 'failed')`` means: skip
    without reading the file (it failed before it could even be hashed).
    """
    if claim["failed"] and not retry_failed:
        return claim["failed_sha256"], "failed"
    return claim["scored_sha256"], "scored" if claim["scored_sha256"] else None


class LeasedStream(IterableDataset):
    """``prepare_video`` outcomes of ``jobs``, each video claimed first; sharded over DataLoader workers.

    Outcomes carry ``video_id``; a video another job holds comes out as
    ``status='busy'`` (not decoded), one skipped because this model already
    failed on the same content as ``status='skipped', previous='failed'``.
    Once hashed, the lease is extended to the video's content: content being
    scored at another path is ``busy`` too, content this model already scored
    at another path is ``status='duplicate'`` (not decoded; ``error`` names
    that path).

    Args:
        jobs: ``(path, video_id)`` per video.
        scorer: the VideoScorer (``decode`` runs in the workers).
        claimer: the run's :class:`LeaseClaimer`.
    """

    def __init__(self, jobs: Sequence[tuple[str, int]], scorer: Any, claimer: LeaseClaimer) -> None:
        super().__init__()
        self.jobs, self.scorer, self.claimer = list(jobs), scorer, claimer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from vkit.workflows.scoring.engine import prepare_video

        worker = get_worker_info()
        jobs = self.jobs if worker is None else self.jobs[worker.id::worker.num_workers]
        for path, video_id in jobs:
            yield self.one(path, video_id, prepare_video)

    def one(self, path: str, video_id: int, prepare: Any) -> dict[str, Any]:
        """Claim, then prepare one video (``prepare``: :func:`~vkit.workflows.scoring.engine.prepare_video`)."""
        empty = dict(path=path, video_id=video_id, error=None, video=None, scores=[], events=[], clips=0)
        try:
            claim = self.claimer.claim(video_id)
        except StoreError as err:  # the store is unreachable for a moment: leave the video to a later pass
            return dict(empty, status="busy", error=str(err))
        if claim is None:
            return dict(empty, status="busy")
        skip, why = skip_plan(claim, self.claimer.retry_failed)
        if why == "failed" and skip is None:
            self.claimer.release(video_id)
            return dict(empty, status="skipped", previous="failed")
        try:
            outcome = prepare(path, skip, self.scorer, content=lambda sha: self.claimer.claim_content(video_id, sha))
        except StoreError as err:  # the content claim could not reach the store: a later pass
            self.claimer.release_quietly(video_id)
            return dict(empty, status="busy", error=str(err))
        outcome.update(video_id=video_id, previous=why)  # previous: what a 'skipped' outcome was skipped for
        if outcome["status"] in ("skipped", "busy"):  # busy: its content is being scored at another path
            self.claimer.release(video_id)
        return outcome


class Heartbeat:
    """A daemon thread that renews a run's leases and reaps dead runs every ``seconds / 3``.

    Example::

        with Heartbeat(store, run_id, seconds=60):
            ...   # score
    """

    def __init__(self, store: Any, run_id: int, seconds: float = LEASE_SECONDS) -> None:
        self.store, self.run_id, self.seconds = store, run_id, float(seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"vkit-lease-heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.seconds)

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.store.renew_leases(self.run_id, self.seconds)
                self.store.reap_stale_runs()
            except Exception:  # noqa: BLE001 - a dropped connection: try again on the next beat
                continue


def register_videos(store: Any, paths: Sequence[str], chunk: int = 1000) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Record ``paths`` in the videos table; ``({path: video_id}, [(path, reason)])``: one bad row never sinks a batch.

    A chunk the store refuses is retried one row at a time; rows it still
    refuses come back with the store's reason.
    """
    ids: dict[str, int] = {}
    failures: list[tuple[str, str]] = []
    for start in range(0, len(paths), chunk):
        part = list(paths[start:start + chunk])
        try:
            ids.update(store.upsert_videos([dict(path=p) for p in part]))
            continue
        except StoreError:
            pass
        for path in part:
            try:
                ids.update(store.upsert_videos([dict(path=path)]))
            except StoreError as err:
                failures.append((path, f"cannot be recorded in the store: {err}"))
    return ids, failures


__all__ = ["Heartbeat", "LEASE_SECONDS", "LeaseClaimer", "LeasedStream", "register_videos", "skip_plan"]
