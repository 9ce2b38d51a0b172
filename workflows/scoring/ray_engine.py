"""The Ray engine of ``vkit score``: the same per-video work on a Ray Data actor pool.

``ray.data.from_items(jobs).map_batches(ScorerActor, concurrency=N)``: each
actor builds the task's scorer once (the model stays in the actor), decodes
its videos from their paths (file paths travel, never frames), scores their
clips in batches and returns one JSON outcome per video. A bad video is a
``failed`` outcome inside the block, so it never drops the others. The driver
commits the outcomes with the same writer as the local engine, so both
engines write the same rows.

Given the run's :class:`~vkit.workflows.scoring.leases.LeaseClaimer`, an actor
claims each video right before decoding it (as the local engine's
``LeasedStream`` does), so Ray and local jobs on one store split an archive
and take a killed job's videos over; the actors then reach the store
themselves (on a multi-machine cluster: a PostgreSQL store).

Plugin modules given with ``--plugin`` must be importable on the Ray workers
(an installed package, or on ``PYTHONPATH`` of a local instance).

Ray starts through :func:`vkit.core.raylog.ray_session`: its own logging (the
token-auth notice, deprecations, Ray Data's execution log, the C++ core's
``E core_worker`` lines, warnings from Ray's files) goes to the ``vkit.ray``
logger, shown with ``vkit --debug``.

Example::

    for outcome in ray_outcomes(jobs, functools.partial(build_task_scorer, "security-anomaly", ckpt), ScoreOptions(engine="ray")):
        print(outcome["path"], outcome["status"])
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np



class ScorerActor:
    """A Ray Data actor: holds one scorer and turns a block of jobs into JSON outcomes.

    Args:
        factory: builds the :class:`~vkit.core.scoring.VideoScorer` (picklable, e.g. ``functools.partial``).
        batch_size: clips per inference batch.
        device: torch device of the model in this actor.
        claimer: the run's :class:`~vkit.workflows.scoring.leases.LeaseClaimer`: each video is claimed right
            before it is decoded (jobs carry ``video_id``); ``None``: jobs carry the sha256 to skip on.
    """

    def __init__(self, factory: Any, batch_size: int, device: str, claimer: Any = None) -> None:
        from vkit.workflows.scoring.engine import ClipBatcher

        self.scorer = factory()
        self.batcher = ClipBatcher(self.scorer, batch_size, device)
        self.claimer = claimer

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from vkit.workflows.scoring.engine import prepare_video, score_items
        from vkit.workflows.scoring.leases import LeasedStream

        if self.claimer is not None:
            jobs = [(str(path), int(video_id)) for path, video_id in zip(batch["path"], batch["video_id"])]
            items = iter(LeasedStream(jobs, self.scorer, self.claimer))   # claims lazily, one video at a time
        else:
            skips = [str(s) or None for s in batch["skip_sha256"]]
            items = (prepare_video(str(path), skip, self.scorer) for path, skip in zip(batch["path"], skips))
        outcomes = [json.dumps(o, allow_nan=True) for o in score_items(items, self.batcher)]
        return {"outcome": np.array(outcomes, dtype=object)}


@contextmanager
def ray_session(options: Any) -> Iterator[Any]:
    """Ray, started for the block (``options.ray_address``: a cluster to join) unless already running; yields it."""
    from vkit.core.raylog import ray_session as session

    with session(options.ray_address) as ray:
        yield ray


def ray_outcomes(jobs: Sequence[tuple[str, Any]], factory: Any, options: Any,
                 claimer: Any = None) -> Iterator[dict[str, Any]]:
    """Outcomes of ``jobs`` scored on Ray (``options``: a :class:`~vkit.workflows.scoring.score.ScoreOptions`).

    ``jobs``: ``(path, video_id)`` with a ``claimer`` (the actors claim each video before decoding it; outcomes
    as :class:`~vkit.workflows.scoring.leases.LeasedStream`'s), else ``(path, sha256 to skip on or None)``.
    """
    with ray_session(options) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        if claimer is not None:
            items = [dict(path=path, video_id=int(video_id)) for path, video_id in jobs]
        else:
            items = [dict(path=path, skip_sha256=skip or "") for path, skip in jobs]
        gpu = 1 if str(options.device).startswith("cuda") else 0
        dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // options.videos_per_task)))
        dataset = dataset.map_batches(
            ScorerActor, fn_constructor_kwargs=dict(factory=factory, batch_size=options.batch_size,
                                                    device=options.device, claimer=claimer),
            batch_size=options.videos_per_task, batch_format="numpy", concurrency=max(1, options.workers),
            num_cpus=1, num_gpus=gpu,
        )
        for row in dataset.iter_rows():
            yield json.loads(row["outcome"])


__all__ = ["ScorerActor", "ray_outcomes", "ray_session"]
