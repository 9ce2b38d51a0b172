"""The ``VideoScorer`` contract between a task and ``vkit score`` (batch scoring of archives).

A task that scores videos implements ``Task.build_scorer(checkpoint, device)``
and returns an object with this shape; the scoring engine (local worker
processes or Ray actors) does the rest: inventory, resume, batching, store
writes, progress.

Most scorers subclass :class:`SegmentScorer`: it decodes with a
:class:`~vkit.core.sampling.FrameSampler` and summarises with the one event rule
(:func:`vkit.core.events.events`), so a vertical writes only ``score(clips)``.

Example (a task's side)::

    class MyScorer(SegmentScorer):
        def __init__(self, checkpoint, device="cpu"):
            trained = load_trained(checkpoint, device=device)
            self.model, self.model_sha256 = trained.model, trained.sha256
            self.sampler = FrameSampler("uniform", num_segments=32, frames_per_segment=8)
            self.size = (112, 112)
            self.event_rule = dict(threshold=trained.decision.threshold, kind="moving")

        def score(self, clips):                     # model process: (B, C, T, H, W) -> (B,)
            return self.model(clips).softmax(-1)[:, 1]
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vkit.registry.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from vkit.core.sampling import FrameSampler
    from vkit.core.video import VideoInfo


@runtime_checkable
class VideoScorer(Protocol):
    """What a task hands ``vkit score``: decode in workers, score in batches, summarise per video.

    Attributes:
        model_sha256: identifies the model; a video already scored by the same
            model is skipped when a job is re-run.
        num_segments: segments per video (one score each).

    Optional attributes the engine reads when present:
        embedding: ``True`` when :meth:`score` returns a vector per clip, ``(B, D)``
            (an embedding, e.g. item content for recommendation): each segment row
            then has ``score=None`` and the vector in ``values``.
        min_frames: shorter videos fail as "too short" (default ``num_segments``).
        memory_format: ``"channels_last_3d"`` (default) or ``"contiguous"``, the
            layout of the batch buffer handed to :meth:`score`.
        int8_module: dotted path of the conv backbone ``--precision int8`` quantizes
            (e.g. ``"model.backbone"``; :mod:`vkit.core.int8`).
        compressed_module: dotted path of the model the run's compression chain compressed
            (e.g. ``"model"``); ``--compressed`` puts the saved compressed model there
            (:mod:`vkit.workflows.compressed`).
        validation_clips(): ``(clips, labels)`` that ``--precision auto`` gates on and
            int8 calibrates on (:func:`vkit.core.precision.archive_validation`).
        may_share_content(path, other_path): ``False`` keeps a video at ``path`` from being recorded
            as a ``duplicate`` of the same content this model scored at ``other_path`` (no row then
            names the one for the other; the video is scored again), e.g. a pseudonymous link and
            a recording named by a person (default: always shared).
        group_aggregates(videos): aggregates over a job's scored videos, ``{group kind: {group:
            {name: number}}}`` (e.g. per session and per learner), stored as metrics of the scoring
            run (:mod:`vkit.workflows.scoring.aggregates`); ``videos`` are the newest summaries of
            the job's videos by this model (``path``, ``duration``, ``mean_score``, ``values``, ...).
    """

    model_sha256: str
    num_segments: int

    def decode(self, path: str) -> np.ndarray:
        """Clips of one video, ``(num_segments, C, T, H, W)`` float32; raise ``DataError`` on a bad file."""

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` in [0, 1] for a batch of clips ``(B, C, T, H, W)`` from any videos."""

    def summarize(self, segment_scores: np.ndarray, info: VideoInfo) -> dict[str, Any]:
        """Per-video results: at least ``events``, a list of ``{"kind", "start", "end", "score"}`` in seconds;
        optionally ``aggregates``, ``{name: number}`` kept in the video's summary row (``values``)."""


class SegmentScorer:
    """The shared half of a :class:`VideoScorer`: frames in by a sampler, events out by the one rule.

    A vertical's scorer subclasses it, sets these in ``__init__`` and writes :meth:`score`:

    Attributes:
        sampler: the :class:`~vkit.core.sampling.FrameSampler` of its clips (the one it trained on);
            ``num_segments`` is the sampler's.
        size: ``(height, width)`` frames are resized to while decoding.
        event_rule: keyword arguments of :func:`vkit.core.events.events` (``threshold``, ``above``,
            ``min_duration``, ``merge_gap``, ``kind``), or ``None`` for a scorer without events.
        model_sha256: the model's identity (see :class:`VideoScorer`).
        min_frames: shorter videos fail as "too short" (default 1).

    Optional overrides: :meth:`prepare` (frames to the model's input, e.g. frame differences) and
    :meth:`summarize` (to add ``aggregates``; call ``super().summarize`` for the events).

    Example::

        class Brightness(SegmentScorer):
            sampler, size, model_sha256 = FrameSampler("uniform", 4, 2), (16, 16), "brightness-v1"
            event_rule = dict(threshold=0.5, kind="bright")

            def score(self, clips):
                return clips.mean((1, 2, 3, 4)) / 255
    """

    sampler: FrameSampler
    size: tuple[int, int] | None = None
    event_rule: dict[str, Any] | None = None
    model_sha256: str
    min_frames: int = 1

    @property
    def num_segments(self) -> int:
        """Segments per video: the sampler's."""
        return int(self.sampler.num_segments)

    def decode(self, path: str) -> np.ndarray:
        """The model inputs of one video, ``(num_segments, C, T, H, W)`` float32 (:meth:`prepare` of the sampled frames)."""
        from vkit.core.video import probe

        info = probe(path)
        if info.frames < self.min_frames:
            raise DataError(f"{path}: too short: {info.frames} frames, the scorer needs at least {self.min_frames}")
        return self.prepare(self.sampler.read(path, self.size, info=info))

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """``uint8`` frames ``(S, T, H, W, 3)`` to the model's input ``(S, C, T, H, W)``; by default RGB float32 in 0..255."""
        import numpy as np

        return np.ascontiguousarray(frames.transpose(0, 4, 1, 2, 3), dtype=np.float32)

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` (or vectors ``(B, D)`` with ``embedding = True``) of clips ``(B, C, T, H, W)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement score(clips)")

    def events(self, segment_scores: np.ndarray, info: VideoInfo) -> list[dict[str, Any]]:
        """The video's events in seconds by :attr:`event_rule` (segment ``i`` spans ``i * duration / S`` onwards,
        as its score row does); ``[]`` without a rule."""
        import numpy as np

        from vkit.core.events import events

        scores = np.asarray(segment_scores, dtype=np.float64)
        if self.event_rule is None or scores.ndim != 1 or not len(scores):
            return []
        step = float(info.duration) / len(scores) if info.duration else 1.0
        return [{k: e[k] for k in _EVENT_FIELDS} for e in events(scores, step=step, **self.event_rule)]

    def summarize(self, segment_scores: np.ndarray, info: VideoInfo) -> dict[str, Any]:
        """``dict(events=...)`` by :meth:`events`."""
        return dict(events=self.events(segment_scores, info))


_EVENT_FIELDS = ("kind", "start", "end", "score")


def video_results(segment_scores: np.ndarray, info: VideoInfo, scorer: VideoScorer) -> dict[str, list[dict[str, Any]]]:
    """The rows one scored video gives the store: ``scores`` (segment, start, end in seconds, score), ``events``
    and the scorer's per-video ``aggregates``.

    The one place segment times and events are computed: ``vkit score`` and a
    task's test-split evaluation both write what this returns (through
    ``Store.add_video_results``), so their rows cannot drift.

    Example::

        rows = video_results(np.array([0.1, 0.9]), probe("cam1.mp4"), scorer)
        rows["scores"][1]   # {"segment": 1, "start": 3.0, "end": 6.0, "score": 0.9}
    """
    import numpy as np

    scores = np.asarray(segment_scores, dtype=np.float64)
    count = len(scores)
    length = float(info.duration) / count if info.duration and count else 0.0
    if scores.ndim == 2:  # an embedding scorer: one vector per segment, kept in ``values``
        rows = [dict(segment=i, start=i * length, end=(i + 1) * length, score=None, values=[float(v) for v in s])
                for i, s in enumerate(scores)]
    else:
        rows = [dict(segment=i, start=i * length, end=(i + 1) * length, score=float(s)) for i, s in enumerate(scores)]
    summary = scorer.summarize(scores, info) or {}
    return dict(scores=rows, events=[_event(e) for e in summary.get("events", ())],
                aggregates=dict(summary.get("aggregates") or {}))


def _event(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or "start" not in event or "end" not in event:
        raise DataError(f"event {event!r}: expected a dict with 'start' and 'end' (seconds), 'kind' and 'score'")
    row = {k: event[k] for k in _EVENT_FIELDS if k in event}
    row.setdefault("kind", "event")
    row["start"], row["end"] = float(row["start"]), float(row["end"])
    if row.get("score") is not None:
        row["score"] = float(row["score"])
    return row


def each_video(paths: Sequence[str | Path], work: Callable[[str, str], tuple[Any, Any]], *,
               skip_bad: bool = False, label: str = "scoring videos") -> list[dict[str, Any]]:
    """The one per-video loop of in-process scoring and feature extraction: hash, work, check, collect failures.

    For each path: its :class:`~vkit.core.files.FileState` is taken, its content hashed, then
    ``work(path, sha256)`` returns ``(result, info)`` (``info``: a :class:`~vkit.core.video.VideoInfo`
    or a mapping with ``frames``, ``fps``, ``duration``); a file that changed meanwhile is a bad video
    (no result under a sha256 it no longer has). A bad video raises :class:`DataError` naming it
    unless ``skip_bad``. ``label`` names the loop in its progress (:mod:`vkit.core.progress`).

    Returns:
        one outcome per path, in order: ``dict(status='ok', path, full, sha256, size, info, result)`` or
        ``dict(status='failed', path, full, error)`` (``full``: the resolved path the store keys on).

    Example::

        outcomes = each_video(["a.mp4"], lambda path, sha: embedder(path, sha), skip_bad=True)
        store.upsert_videos(video_rows(outcomes))
    """
    from vkit.core.files import FileState
    from vkit.core.progress import track
    from vkit.core.store.provenance import sha256_file
    from vkit.registry.errors import VkitError

    outcomes = []
    for path in track([str(p) for p in paths], label, unit="videos"):
        full = str(Path(path).resolve())
        try:
            before = FileState.of(path)
            sha, size = sha256_file(path)
            result, info = work(path, sha)
            if FileState.of(path) != before:
                raise DataError(f"{path}: changed while being scored (its size, times or inode differ after "
                                f"decoding); score it again once it has settled")
        except (VkitError, OSError) as err:
            if not skip_bad:
                raise DataError(f"{path}: {err} (use --skip-bad to record it and go on)") from err
            outcomes.append(dict(status="failed", path=path, full=full, error=str(err)))
            continue
        outcomes.append(dict(status="ok", path=path, full=full, sha256=sha, size=size, info=info, result=result))
    return outcomes


def video_rows(outcomes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The videos-table rows (``Store.upsert_videos``) of :func:`each_video`'s outcomes."""
    rows = []
    for o in outcomes:
        if o["status"] != "ok":
            rows.append(dict(path=o["full"], status="failed", error=o["error"]))
            continue
        info = o["info"]
        facts = {k: info[k] if isinstance(info, Mapping) else getattr(info, k) for k in ("duration", "fps", "frames")}
        rows.append(dict(path=o["full"], sha256=o["sha256"], size=o["size"], duration=float(facts["duration"]),
                         fps=float(facts["fps"]), frames=int(facts["frames"]), status="ok"))
    return rows


def score_videos(scorer: VideoScorer, paths: list[str], *, store: Any = None, run_id: int | None = None,
                 skip_bad: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score whole videos in this process and (with ``store``) write them as ``vkit score`` does.

    What a task's evaluator calls for its test split: each video is hashed,
    probed, decoded and scored by ``scorer`` (a file that changed meanwhile,
    by its :class:`~vkit.core.files.FileState`, is a bad video: no rows under a
    sha256 it no longer has), its rows made by
    :func:`video_results`, then recorded with ``Store.upsert_videos`` and
    ``Store.add_video_results`` under ``run_id`` — the rows ``vkit score``
    would write for the same video and model.

    Returns:
        ``(scored, failed)``: per scored video ``dict(path, sha256, info, segments, scores, events)``
        (``segments`` the raw ``(num_segments,)`` scores, ``(num_segments, D)`` for an embedding scorer); per failure ``dict(path, error)``.
        A bad video raises :class:`DataError` naming it unless ``skip_bad``.

    Example::

        scored, failed = score_videos(scorer, ["a.mp4", "b.mp4"], store=ctx.store, run_id=ctx.run_id)
    """
    import numpy as np
    import torch

    from vkit.core.video import probe

    def work(path: str, sha256: str) -> tuple[np.ndarray, VideoInfo]:
        info = probe(path)
        return np.asarray(torch.as_tensor(scorer.score(torch.as_tensor(scorer.decode(path)))).float().cpu()), info

    outcomes = each_video(paths, work, skip_bad=skip_bad)
    scored = [dict(path=o["full"], sha256=o["sha256"], info=o["info"], segments=o["result"],
                   **video_results(o["result"], o["info"], scorer)) for o in outcomes if o["status"] == "ok"]
    failed = [dict(path=o["full"], error=o["error"]) for o in outcomes if o["status"] == "failed"]
    if store is not None and outcomes:
        ids = store.upsert_videos(video_rows(outcomes))
        store.add_video_results(run_id, [dict(video_id=ids[v["path"]], status="scored", error=None, scores=v["scores"],
                                              events=v["events"], aggregates=v["aggregates"]) for v in scored])
    return scored, failed


def score_in_process(scorer: VideoScorer, paths: list[str], *, store: Any = None,
                     run_id: int | None = None) -> list[dict[str, Any]]:
    """One outcome per path, in order, scored here by :func:`score_videos` (what ``RunContext.score_videos`` does by default).

    Each outcome is ``dict(path, status='scored'|'failed', sha256, segments, error)``:
    ``segments`` the ``(num_segments,)`` scores or ``(num_segments, D)`` vectors of a
    scored video, ``None`` for a failed one (``error`` says why). The full engine of
    ``vkit score`` (inventory, resume, Ray) returns the same outcomes when
    ``vkit run`` installs it (:mod:`vkit.workflows.scoring.video_engine`).
    """
    scored, failed = score_videos(scorer, list(paths), store=store, run_id=run_id, skip_bad=True)
    done = {s["path"]: s for s in scored}
    errors = {f["path"]: f["error"] for f in failed}
    outcomes = []
    for path in paths:
        full = str(Path(path).resolve())
        if full in done:
            outcomes.append(dict(path=str(path), status="scored", sha256=done[full]["sha256"],
                                 segments=done[full]["segments"], error=None))
        else:
            outcomes.append(dict(path=str(path), status="failed", sha256=None, segments=None,
                                 error=errors.get(full, "not scored")))
    return outcomes
