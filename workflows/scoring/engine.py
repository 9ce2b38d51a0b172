"""The per-video work of ``vkit score``, shared by the local and the Ray engine.

One video goes through three steps:

1. :func:`prepare_video` (a worker process or a Ray actor): stream its sha256
   (regular files only), skip it if this model already scored that content,
   probe it, check it is long enough, decode its clips with ``scorer.decode``,
   and check the file did not change meanwhile (else hash and decode again,
   or ``changed``). Every failure becomes a ``failed`` outcome with its
   reason; nothing raises.
2. :class:`ClipBatcher` (the model's process): clips of many videos are copied
   into one preallocated ``channels_last_3d`` batch and scored together, so a
   batch never waits for one video and memory holds at most one batch plus the
   videos in flight.
3. :func:`finish_video`: segment rows (``start``/``end`` in seconds) and
   ``scorer.summarize`` events.

The outcome of a video is a plain dict (the writer and the Ray engine pass it
on as is)::

    dict(path=..., status="scored" | "failed" | "skipped" | "changed", error=None | "reason",
         video=dict(path, sha256, size, duration, fps, frames, status="ok" | "failed" | "changed", error),
         scores=[dict(segment, start, end, score)], events=[dict(kind, start, end, score)], clips=32)

An embedding scorer (``scorer.embedding = True``: ``score`` returns ``(B, D)``)
gives segment rows with ``score=None`` and the vector in ``values``.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vkit.registry.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from vkit.core.files import FileState
    from vkit.core.scoring import VideoScorer

#: ``(path, sha256 this model already scored at this path or None)``: one video to score.
Job = tuple[str, "str | None"]


def check_scorer(scorer: Any, owner: str) -> None:
    """Raise a :class:`ConfigError` naming ``owner`` unless ``scorer`` fulfils the VideoScorer contract."""
    from vkit.core.scoring import VideoScorer

    missing = [name for name in ("decode", "score", "summarize") if not callable(getattr(scorer, name, None))]
    if missing or not isinstance(scorer, VideoScorer):
        missing += [a for a in ("model_sha256", "num_segments") if not hasattr(scorer, a)]
        raise ConfigError(f"{owner}: build_scorer() returned {type(scorer).__name__}, which lacks {missing}; "
                          f"expected a vkit.core.scoring.VideoScorer")
    sha = getattr(scorer, "model_sha256")
    if not isinstance(sha, str) or not sha:
        raise ConfigError(f"{owner}: scorer.model_sha256 must be a non-empty str (the checkpoint's sha256), got {sha!r}")
    segments = getattr(scorer, "num_segments")
    if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
        raise ConfigError(f"{owner}: scorer.num_segments must be a positive int, got {segments!r}")
    from vkit.core.capabilities import scorer_problem

    why = scorer_problem(scorer)  # what it declares in ``supports`` must be there
    if why:
        raise ConfigError(f"{owner}: {why}")


def min_frames(scorer: Any) -> int:
    """Frames a video needs to be scored: ``scorer.min_frames`` if set, else one per segment."""
    value = getattr(scorer, "min_frames", None)
    return int(value) if value else int(scorer.num_segments)


def _video_row(path: str, **fields: Any) -> dict[str, Any]:
    row = dict(path=path, sha256=None, size=None, duration=None, fps=None, frames=None, status="failed", error=None)
    row.update(fields)
    return row


def _failed(path: str, error: str, video: dict[str, Any]) -> dict[str, Any]:
    video.update(status="failed", error=error)
    return dict(path=path, status="failed", error=error, video=video, scores=[], events=[], clips=0)


def _same_content(path: str, video: dict[str, Any], claim: dict[str, Any] | None,
                  scorer: Any = None) -> dict[str, Any] | None:
    """The outcome of a hashed video whose content is held or already scored elsewhere, else ``None`` (score it).

    A scorer whose ``may_share_content(path, other)`` says no keeps the two paths unlinked: scored here.
    """
    empty = dict(path=path, error=None, scores=[], events=[], clips=0)
    if claim is None:
        return dict(empty, status="busy", video=None)
    if claim["scored_path"] is None:
        return None
    if claim["scored_video_id"] == claim.get("video_id"):  # nothing new to write
        return dict(empty, status="skipped", video=video)
    share = getattr(scorer, "may_share_content", None)
    if share is not None and not share(path, claim["scored_path"]):
        return None  # no row may name the other path for this one (e.g. a pseudonymous link and a named recording)
    if claim["recorded"]:
        return dict(empty, status="skipped", video=video)
    reason = f"duplicate of {claim['scored_path']} (same sha256, scored in run {claim['scored_run_id']})"
    video.update(status="duplicate", error=reason)
    return dict(empty, status="duplicate", error=reason, video=video)


#: Times a video is hashed and decoded before one that keeps changing meanwhile is recorded ``changed``.
CHANGE_TRIES = 3


def prepare_video(path: str, skip_sha256: str | None, scorer: Any,
                  content: Callable[[str], dict[str, Any] | None] | None = None,
                  tries: int = CHANGE_TRIES) -> dict[str, Any]:
    """Hash, probe and decode one video; returns its outcome with ``clips`` (tensor) and ``info`` when it decoded.

    What is decoded is what was hashed: the file's :class:`~vkit.core.files.FileState`
    (device, inode, size, mtime, ctime) is taken before hashing and compared
    after decoding; a file rewritten or replaced meanwhile is hashed and
    decoded again, up to ``tries`` times, then its outcome is ``changed``
    (no sha256, no rows: the next run scores it). Only regular files are read:
    a FIFO or a device (a symlink to ``/dev/zero``) is ``failed`` with
    ``not a regular file (FIFO)`` before a byte is read.

    Args:
        path: the video file.
        skip_sha256: the content this model already scored at ``path``; equal content is ``skipped`` undecoded.
        scorer: the :class:`~vkit.core.scoring.VideoScorer` (only ``decode``, ``num_segments``, ``min_frames``
            and ``may_share_content`` used).
        content: claims the hashed content (:meth:`~vkit.core.store.Store.claim_content`'s answer): ``None``
            makes the outcome ``busy`` (another path with that content is being scored); content already
            scored at another path makes it ``duplicate`` (``error``: ``duplicate of <path>``), or ``skipped``
            when this path was recorded as its duplicate before; a scorer's ``may_share_content(path, other)``
            may refuse the link (the video is then scored).
        tries: hash-and-decode attempts of a file that changes while it is read.
    """
    from vkit.core.files import FileState

    for _ in range(tries):
        try:
            before = FileState.of(path)
        except OSError as err:
            return _failed(path, f"{path}: unreadable ({err.strerror or err})", _video_row(path))
        outcome = _hash_and_decode(path, skip_sha256, scorer, content)
        if outcome["status"] not in ("scored", "failed") or _state(path) == before:
            return outcome
    reason = (f"{path}: changed while being scored ({tries} tries; its size, times or inode differed after "
              f"decoding): nothing recorded for it, the next run scores it")
    video = _video_row(path, status="changed", error=reason)
    return dict(path=path, status="changed", error=reason, video=video, scores=[], events=[], clips=0)


def _state(path: str) -> FileState | None:
    """The file's state now (``None``: it is gone)."""
    from vkit.core.files import FileState

    try:
        return FileState.of(path)
    except OSError:
        return None


def _hash_and_decode(path: str, skip_sha256: str | None, scorer: Any,
                     content: Callable[[str], dict[str, Any] | None] | None) -> dict[str, Any]:
    """One attempt of :func:`prepare_video` (its outcome, whatever happened to the file meanwhile)."""
    from vkit.core.store.provenance import sha256_file
    from vkit.core.video import probe

    video = _video_row(path)
    try:
        video["sha256"], video["size"] = sha256_file(path)
    except DataError as err:  # not a regular file
        return _failed(path, str(err), video)
    except OSError as err:
        return _failed(path, f"{path}: unreadable ({err.strerror or err})", video)
    if skip_sha256 is not None and video["sha256"] == skip_sha256:
        return dict(path=path, status="skipped", error=None, video=video, scores=[], events=[], clips=0)
    if content is not None:
        done = _same_content(path, video, content(video["sha256"]), scorer)
        if done is not None:
            return done
    try:
        info = probe(path)
        video.update(duration=float(info.duration), fps=float(info.fps), frames=int(info.frames))
        need = min_frames(scorer)
        if info.frames < need:
            raise DataError(f"{path}: too short: {info.frames} frames, the scorer needs at least {need}")
        clips = _as_batch_layout(scorer.decode(path), scorer)
        if clips.dim() != 5 or clips.shape[0] != scorer.num_segments:
            raise DataError(f"{path}: scorer.decode returned shape {tuple(clips.shape)}, expected "
                            f"(num_segments={scorer.num_segments}, C, T, H, W)")
    except DataError as err:
        return _failed(path, str(err), video)
    except Exception as err:  # one bad video never stops the batch
        return _failed(path, f"{path}: {type(err).__name__}: {err}", video)
    video.update(status="ok", error=None)
    return dict(path=path, status="scored", error=None, video=video, scores=[], events=[],
                clips=int(clips.shape[0]), tensor=clips, info=info)


def _as_batch_layout(clips: Any, scorer: Any) -> torch.Tensor:
    """``clips`` as a float32 tensor laid out like the batch buffer (``scorer.memory_format``), made in the worker.

    A decoder that builds ``(S, C, T, H, W)`` as a transposed view of decoded
    ``(S, T, H, W, C)`` frames already holds ``channels_last_3d`` memory: it is
    kept as is (no copy), and the model process copies it into the batch with
    one ``memcpy`` instead of two transposes (one here, one back there).
    """
    if isinstance(clips, torch.Tensor):
        tensor = clips.to(torch.float32)
    else:
        array = np.asarray(clips)
        array = array if array.dtype == np.float32 else array.astype(np.float32)  # keeps the memory order
        if not array.flags.writeable or any(step < 0 for step in array.strides):
            array = np.array(array, order="K")
        tensor = torch.from_numpy(array)
    return tensor.contiguous(memory_format=_memory_format(scorer)) if tensor.dim() == 5 else tensor.contiguous()


def finish_video(item: dict[str, Any], segment_scores: np.ndarray, scorer: Any) -> dict[str, Any]:
    """The outcome of a decoded video once all its segments are scored: segment rows and summarized events."""
    from vkit.core.scoring import video_results

    info = item.pop("info")
    item.pop("tensor", None)
    try:
        item.update(video_results(segment_scores, info, scorer))
    except Exception as err:
        return _failed(item["path"], f"{item['path']}: scorer.summarize failed: {type(err).__name__}: {err}",
                       item["video"])
    return item


def _memory_format(scorer: Any) -> torch.memory_format:
    fmt = getattr(scorer, "memory_format", "channels_last_3d")
    if isinstance(fmt, torch.memory_format):
        return fmt
    formats = {"channels_last_3d": torch.channels_last_3d, "contiguous": torch.contiguous_format}
    if fmt not in formats:
        raise ConfigError(f"scorer.memory_format={fmt!r}; expected one of {sorted(formats)} or a torch.memory_format")
    return formats[fmt]


class ClipBatcher:
    """Scores clips of many videos in fixed-size batches; yields each video's outcome when its last clip is scored.

    The batch buffer is allocated once, in the scorer's ``memory_format``
    (``channels_last_3d`` unless the scorer says ``'contiguous'``), so laying the
    clips out costs no copy beyond the one into the batch.

    Args:
        scorer: the :class:`~vkit.core.scoring.VideoScorer`.
        batch_size: clips per ``scorer.score`` call, or ``'auto'``: the fastest
            size up to ``auto_limit``, found on the first batches
            (:class:`~vkit.workflows.batch_size.BatchSizeTuner`).
        device: where the batch goes (``'cpu'``, ``'cuda'``, ``'cuda:1'``).
        auto_limit: the largest size ``'auto'`` tries.

    Example::

        batcher = ClipBatcher(scorer, batch_size="auto")
        for item in items:                       # outcomes of prepare_video
            for outcome in batcher.add(item):    # videos whose clips are all scored
                write(outcome)
        for outcome in batcher.drain():
            write(outcome)
    """

    def __init__(self, scorer: Any, batch_size: int | str = "auto", device: str = "cpu", auto_limit: int = 16) -> None:
        from vkit.workflows.batch_size import BatchSizeTuner

        self.tuner: BatchSizeTuner | None = None
        if batch_size == "auto":
            self.tuner = BatchSizeTuner(limit=auto_limit)
        elif not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"score: batch_size must be a positive int or 'auto', got {batch_size!r}")
        self.scorer, self._fixed_size = scorer, batch_size
        self.device = torch.device(device)
        self.memory_format = _memory_format(scorer)
        self._queue: deque[list[Any]] = deque()  # [item, next segment, scores so far]
        self._queued = 0
        self._buffer: torch.Tensor | None = None
        #: Clips scored and seconds spent in ``scorer.score`` so far.
        self.clips, self.model_seconds = 0, 0.0

    @property
    def batch_size(self) -> int:
        """Clips in the next full batch (with ``'auto'``: the size under trial, then the chosen one)."""
        return self.tuner.size if self.tuner is not None else int(self._fixed_size)

    def add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """Queue a decoded video's clips; returns the outcomes of videos finished by the batches this filled."""
        tensor = item["tensor"]
        done: list[dict[str, Any]] = []
        if self._buffer is not None and tuple(self._buffer.shape[1:]) != tuple(tensor.shape[1:]):
            done += self.drain()  # a new clip shape: score what is queued, then re-allocate
            self._buffer = None
        self._queue.append([item, 0, None])  # scores: (segments,) or (segments, D), made on the first batch
        self._queued += tensor.shape[0]
        while self._queued >= self.batch_size:
            done += self._run()
        return done

    def drain(self) -> list[dict[str, Any]]:
        """Score every queued clip (a last, smaller batch) and return the finished outcomes."""
        done: list[dict[str, Any]] = []
        while self._queued:
            done += self._run()
        return done

    def _alloc(self, size: int, shape: Sequence[int]) -> torch.Tensor:
        if self._buffer is None or self._buffer.shape[0] < size:  # 'auto' grows it while it tries sizes
            pin = self.device.type == "cuda"
            buffer = torch.empty((size, *shape), dtype=torch.float32, pin_memory=pin)
            self._buffer = buffer.contiguous(memory_format=self.memory_format) if buffer.dim() == 5 else buffer
        return self._buffer

    def _batch(self, size: int) -> tuple[torch.Tensor, list[tuple[list[Any], int, int, int]], int]:
        """The next batch of up to ``size`` clips and where they came from: ``(batch, spans, filled)``.

        Clips of one video in the scorer's layout are handed over as a view, with
        no copy (the worker already laid them out); clips of several videos are
        copied into the preallocated buffer.
        """
        spans, filled = [], 0
        for entry in self._queue:
            if filled == size:
                break
            item, start, _ = entry
            take = min(item["tensor"].shape[0] - start, size - filled)
            spans.append((entry, start, take, filled))
            filled += take
        if len(spans) == 1:
            entry, start, take, _ = spans[0]
            view = entry[0]["tensor"][start:start + take]
            if view.dim() != 5 or view.is_contiguous(memory_format=self.memory_format):
                return view, spans, filled
        buffer = self._alloc(size, self._queue[0][0]["tensor"].shape[1:])
        for entry, start, take, at in spans:
            buffer[at:at + take].copy_(entry[0]["tensor"][start:start + take])
        return buffer[:filled], spans, filled

    def _run(self) -> list[dict[str, Any]]:
        batch, spans, filled = self._batch(self.batch_size)
        batch = batch.to(self.device, non_blocking=True)
        began = time.perf_counter()
        with torch.inference_mode():
            out = self.scorer.score(batch)
        values = _segment_values(out, filled, self.scorer)
        seconds = time.perf_counter() - began
        self.model_seconds += seconds
        if self.tuner is not None:
            self.tuner.record(filled, seconds)
        self.clips += filled
        self._queued -= filled
        done = []
        for entry, start, take, at in spans:
            if entry[2] is None:
                entry[2] = np.empty((entry[0]["tensor"].shape[0], *values.shape[1:]), dtype=np.float64)
            entry[2][start:start + take] = values[at:at + take]
            entry[1] = start + take
        while self._queue and self._queue[0][1] == self._queue[0][0]["tensor"].shape[0]:
            item, _, scores = self._queue.popleft()
            done.append(finish_video(item, scores, self.scorer))
        return done


def _segment_values(out: Any, filled: int, scorer: Any) -> np.ndarray:
    """``scorer.score``'s output as ``(filled,)`` scores, or ``(filled, D)`` vectors of an embedding scorer."""
    tensor = torch.as_tensor(out).detach().float().cpu()
    if getattr(scorer, "embedding", False):
        if tensor.dim() != 2 or tensor.shape[0] != filled:
            raise ConfigError(f"scorer.score (an embedding scorer) returned shape {tuple(tensor.shape)} for a batch of "
                              f"{filled} clips; expected ({filled}, D)")
        return tensor.numpy()
    values = tensor.reshape(-1).numpy()
    if values.shape[0] != filled:
        raise ConfigError(f"scorer.score returned {values.shape[0]} scores for a batch of {filled} clips; "
                          f"expected one per clip, shape ({filled},)")
    return values


class VideoStream(IterableDataset):
    """An ``IterableDataset`` of :func:`prepare_video` outcomes, its jobs sharded over the DataLoader's workers.

    Args:
        jobs: ``(path, sha256 already scored there or None)`` per video.
        scorer: decodes (``scorer.decode``) in the worker processes.

    Example::

        loader = DataLoader(VideoStream(jobs, scorer), batch_size=None, num_workers=2, collate_fn=lambda x: x)
    """

    def __init__(self, jobs: Sequence[Job], scorer: Any) -> None:
        super().__init__()
        self.jobs, self.scorer = list(jobs), scorer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        jobs = self.jobs if worker is None else self.jobs[worker.id::worker.num_workers]
        for path, skip in jobs:
            yield prepare_video(path, skip, self.scorer)


def score_items(items: Iterator[dict[str, Any]], batcher: ClipBatcher) -> Iterator[dict[str, Any]]:
    """Outcomes of ``items`` (from :func:`prepare_video`): decoded ones go through ``batcher``, others straight on."""
    for item in items:
        if "tensor" in item:
            yield from batcher.add(item)
        else:
            yield item
    yield from batcher.drain()


ScorerFactory = Callable[[], "VideoScorer"]

__all__ = ["ClipBatcher", "Job", "ScorerFactory", "check_scorer", "finish_video", "min_frames", "prepare_video",
           "score_items", "VideoStream"]
