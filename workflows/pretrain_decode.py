"""The decoding half of ``vkit pretrain``: the archive's files through the scoring engine into the clip cache.

Each file goes through :func:`~vkit.workflows.scoring.engine.prepare_video`
(hash, probe, decode, change check; :func:`~vkit.core.ssl.decode.prepare_volume`
for scans) in a ``DataLoader`` worker or a Ray Data actor, which writes the
decoded clips into the run's :class:`~vkit.core.ssl.train.ClipCache` itself:
only a small JSON-able outcome travels back. The driver records every file in
the ``videos`` table and as the run's per-file summary (``scored``: decoded
and used; ``failed`` with its reason). Files the run decoded before (a
resume) are hashed again and skipped when unchanged and still cached.

Example::

    shas = decode_archive(store, run_id, files, ClipDecoder(4, 8, (36, 36)), work_dir / "clips", options,
                          summary, echo=print)
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset


def decode_one(path: str, skip_sha256: str | None, decoder: Any, cache_dir: str) -> dict[str, Any]:
    """One file's outcome (the scoring engine's shape); decoded clips go into the clip cache here, in the worker."""
    from vkit.core.ssl.decode import VolumeDecoder, prepare_volume
    from vkit.core.ssl.train import ClipCache
    from vkit.workflows.scoring.engine import prepare_video

    if isinstance(decoder, VolumeDecoder):
        outcome = prepare_volume(path, decoder, skip_sha256)
    else:
        outcome = prepare_video(path, skip_sha256, decoder)
    tensor = outcome.pop("tensor", None)
    outcome.pop("info", None)
    if tensor is not None:
        try:
            ClipCache(cache_dir).put(outcome["video"]["sha256"], tensor.numpy())
        except OSError as err:
            reason = f"{path}: decoded, but its clips could not be cached in {cache_dir} ({err.strerror or err})"
            outcome.update(status="failed", error=reason)
            outcome["video"].update(status="failed", error=reason)
    return outcome


class DecodeStream(IterableDataset):
    """An ``IterableDataset`` of :func:`decode_one` outcomes, jobs sharded over the DataLoader's workers."""

    def __init__(self, jobs: Sequence[tuple[str, str | None]], decoder: Any, cache_dir: str) -> None:
        super().__init__()
        self.jobs, self.decoder, self.cache_dir = list(jobs), decoder, cache_dir

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from torch.utils.data import get_worker_info

        worker = get_worker_info()
        jobs = self.jobs if worker is None else self.jobs[worker.id::worker.num_workers]
        for path, skip in jobs:
            yield decode_one(path, skip, self.decoder, self.cache_dir)


def _local_decode(jobs: Sequence[tuple[str, str | None]], decoder: Any, cache_dir: str,
                  options: Any) -> Iterator[dict[str, Any]]:
    import multiprocessing

    from torch.utils.data import DataLoader

    from vkit.core.processes import die_with_parent
    from vkit.workflows.scoring.score import _identity

    stream = DecodeStream(jobs, decoder, cache_dir)
    workers = min(options.workers, len(jobs))
    context = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_identity,
                        multiprocessing_context=context,
                        worker_init_fn=functools.partial(die_with_parent, os.getpid()) if workers else None)
    try:
        yield from loader
    finally:
        del loader


class DecodeActor:
    """A Ray Data actor: decodes a block of files into the clip cache, returns JSON outcomes (paths travel, not frames).

    The cache folder must be reachable from the actors (a local Ray instance, or a shared file system).
    """

    def __init__(self, decoder: Any, cache_dir: str) -> None:
        self.decoder, self.cache_dir = decoder, cache_dir

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = [json.dumps(decode_one(str(p), str(s) or None, self.decoder, self.cache_dir), allow_nan=True)
               for p, s in zip(batch["path"], batch["skip_sha256"])]
        return {"outcome": np.array(out, dtype=object)}


def _ray_decode(jobs: Sequence[tuple[str, str | None]], decoder: Any, cache_dir: str,
                options: Any) -> Iterator[dict[str, Any]]:
    from vkit.workflows.scoring.ray_engine import ray_session

    with ray_session(options) as ray:
        ray.data.DataContext.get_current().enable_progress_bars = False
        items = [dict(path=p, skip_sha256=s or "") for p, s in jobs]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // 4)))
        dataset = dataset.map_batches(DecodeActor, fn_constructor_kwargs=dict(decoder=decoder, cache_dir=cache_dir),
                                      batch_size=4, batch_format="numpy", concurrency=max(1, options.workers),
                                      num_cpus=1)
        for row in dataset.iter_rows():
            yield json.loads(row["outcome"])


def decode_archive(store: Any, run_id: int, files: Sequence[str], decoder: Any, cache_dir: Path,
                   options: Any, summary: Any,
                   echo: Callable[[str], None]) -> list[str]:
    """Decode ``files`` into the clip cache, recording each in the store; returns the sha256s to train on (sorted by path).

    Files this run decoded before (a resume) are hashed again and skipped when unchanged and still cached.
    """
    from vkit.core.ssl.train import ClipCache

    cache = ClipCache(cache_dir)
    earlier = _decoded_before(store, run_id, files, cache)
    jobs = [(path, earlier.get(path)) for path in files]
    run = _ray_decode if options.engine == "ray" else _local_decode
    use: dict[str, str] = {}
    pending: list[dict[str, Any]] = []
    started = time.perf_counter()
    for outcome in run(jobs, decoder, str(cache_dir), options):
        status, path = outcome["status"], outcome["path"]
        if status == "skipped":
            summary.reused += 1
            use[path] = earlier[path]
            continue
        pending.append(outcome)
        if status == "scored":
            summary.decoded += 1
            use[path] = outcome["video"]["sha256"]
        else:
            summary.failed += 1
            if len(summary.failures) < 50:
                summary.failures.append(dict(path=path, error=str(outcome["error"])))
        if len(pending) >= 16:
            _record(store, run_id, pending)
        done = summary.decoded + summary.reused + summary.failed
        if done % 50 == 0:
            echo(f"decoded {done}/{len(files)} files ({time.perf_counter() - started:.0f} s)")
    _record(store, run_id, pending)
    return [use[path] for path in sorted(use)]


def _decoded_before(store: Any, run_id: int, files: Sequence[str], cache: Any) -> dict[str, str]:
    """``{path: sha256}`` of the files this run decoded before whose clips are still cached."""
    summaries = {s["video_id"]: s for s in store.video_summaries(run_id) if s["status"] == "scored"}
    if not summaries:
        return {}
    return {v["path"]: v["sha256"] for v in store.get_videos(list(files))
            if v["id"] in summaries and v["sha256"] and summaries[v["id"]]["video_sha256"] == v["sha256"]
            and cache.has(v["sha256"])}


def _record(store: Any, run_id: int, outcomes: list[dict[str, Any]]) -> None:
    """Videos rows, then one summary per file in this run (``scored``: decoded and used; ``failed``/``changed``)."""
    if not outcomes:
        return
    ids = store.upsert_videos([o["video"] for o in outcomes])
    store.add_video_results(run_id, [dict(video_id=ids[o["path"]], status=o["status"], error=o.get("error"))
                                     for o in outcomes])
    outcomes.clear()


__all__ = ["DecodeActor", "DecodeStream", "decode_archive", "decode_one"]
