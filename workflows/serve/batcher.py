"""Dynamic batching across concurrent requests: an asyncio micro-batcher feeding one or more model replicas.

Each request puts its item on one queue and awaits its own future. A replica
takes the first waiting item and whatever else is queued, up to ``max_batch``
items, and runs the batch on its own thread (one model per replica: a
replica's thread is the only one calling its model). It waits (at most
``max_wait`` seconds) for more only while other requests are on their way:
announced with :meth:`MicroBatcher.arriving` (the server wraps each request's
file loading in it) and not queued yet. A lone client therefore never waits:
its request is dispatched as soon as it is queued. While a replica is busy,
requests pile up and the next batch is full at once, so batches grow with load.

A batch function returns one result per item: a value, or an exception for
that item alone (a corrupt upload fails its own request, not the batch). A
batch function that raises (the replica broke) has its items retried once on
the next free replica (the broken one stays out of service for ``cooldown``
seconds), then failed with :class:`ReplicaFailed` (HTTP 503).
Nothing waits forever: :meth:`MicroBatcher.submit` gives up after ``timeout``.

Example::

    batcher = MicroBatcher([lambda items: [x * 2 for x in items]], max_batch=8, max_wait=0.005)
    await batcher.submit(21)    # 42
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from vkit.registry.errors import ConfigError

__all__ = ["BatchStats", "MicroBatcher", "ReplicaFailed"]


class ReplicaFailed(RuntimeError):
    """The replica running this request broke (twice); the request may be sent again (HTTP 503)."""


@dataclass
class BatchStats:
    """What a batcher did: batch sizes seen, items retried or failed by a broken replica, and how often a
    replica waited for announced requests (``waits``) before running a batch."""

    batches: int = 0
    waits: int = 0
    items: int = 0
    retried: int = 0
    failed: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


@dataclass
class _Job:
    item: Any
    future: asyncio.Future
    attempts: int = 0


class MicroBatcher:
    """Batches concurrent :meth:`submit` calls for ``replicas`` (one batch function per replica).

    Args:
        replicas: one callable per replica, ``items -> results`` (same length; an exception instance fails
            that item alone). Each runs on its own thread.
        max_batch: most items in one batch.
        max_wait: longest wait (seconds) for more items once a batch has its first; only while requests announced
            with :meth:`arriving` are not queued yet (nothing announced: no wait).
        timeout: longest a request waits for its result before :class:`TimeoutError`.
        on_batch: called with each batch's size (metrics).
        cooldown: seconds a replica whose batch raised stays out of service (its retried items go to the others).
    """

    def __init__(self, replicas: Sequence[Callable[[list[Any]], list[Any]]], *, max_batch: int = 8,
                 max_wait: float = 0.005, timeout: float = 120.0,
                 on_batch: Callable[[int], None] | None = None, cooldown: float = 1.0) -> None:
        if not replicas:
            raise ConfigError("serve: at least one replica is needed")
        if not (isinstance(max_batch, int) and max_batch >= 1):
            raise ConfigError(f"serve: max batch must be an int >= 1, got {max_batch!r}")
        if not max_wait >= 0:
            raise ConfigError(f"serve: max wait must be >= 0 seconds, got {max_wait!r}")
        self.replicas = list(replicas)
        self.max_batch, self.max_wait, self.timeout = max_batch, float(max_wait), float(timeout)
        self.on_batch, self.cooldown = on_batch, float(cooldown)
        self.failures: dict[int, str] = {}  # replica -> its last failure (health)
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._workers: list[asyncio.Task] = []
        self._threads = [concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"vkit-replica-{i}")
                         for i in range(len(self.replicas))]
        self.busy = 0
        self.incoming = 0  # requests announced by arriving() and not queued yet
        self._stir: asyncio.Event | None = None  # set when an item is queued or an announced request ends
        self.generation = 0  # bumped by replace(): which replicas a running batch uses
        self._running: dict[int, int] = {}  # generation -> batches running on it

    @property
    def depth(self) -> int:
        """Requests waiting for a replica."""
        return self._queue.qsize() if self._queue is not None else 0

    def replace(self, replicas: Sequence[Callable[[list[Any]], list[Any]]]) -> int:
        """Swap in new batch functions (a reload): batches already running finish on the old ones, the next
        batch each replica takes runs on the new one; nothing queued is dropped. Returns the old generation
        (:meth:`wait_finished` waits for its batches)."""
        if len(replicas) != len(self.replicas):
            raise ConfigError(f"serve: reload made {len(replicas)} replicas for {len(self.replicas)}")
        old = self.generation
        self.replicas, self.generation = list(replicas), old + 1
        return old

    def wait_finished(self, generation: int, timeout: float) -> bool:
        """Block (a thread, not the loop) until no batch of ``generation`` runs; ``False`` after ``timeout``."""
        import time

        deadline = time.monotonic() + timeout
        while self._running.get(generation, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._running.get(generation, 0)

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a request that will :meth:`submit` soon (wrap its loading): a replica holding a partial batch
        waits (at most ``max_wait``) for announced requests, and for nothing else. Use it on the serving loop."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1
            if self._stir is not None:
                self._stir.set()

    def _start(self) -> None:
        if self._queue is None:  # started on the serving loop's first request (or its startup)
            self._queue = asyncio.Queue()
            self._stir = asyncio.Event()
            self._workers = [asyncio.create_task(self._work(i), name=f"vkit-batcher-{i}")
                             for i in range(len(self.replicas))]

    async def start(self) -> None:
        self._start()

    async def submit(self, item: Any) -> Any:
        """``item``'s result once its batch has run; raises the item's own exception, :class:`ReplicaFailed` or
        :class:`TimeoutError`."""
        self._start()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(item, future))
        self._stir.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {self.timeout:g} s (queue depth {self.depth})") from None

    async def _take(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait
        waited = False
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if self.incoming <= 0 or left <= 0:  # nobody else on the way (a lone client), or waited long enough
                break
            if not waited:
                waited = True
                self.stats.waits += 1
            self._stir.clear()
            try:  # woken by a queued item or an announced request that ended (queued or failed)
                await asyncio.wait_for(self._stir.wait(), left)
            except TimeoutError:
                break
        return [job for job in batch if not job.future.done()]  # a request that gave up is not computed

    async def _work(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._take()
            if not jobs:
                continue
            self.busy += 1
            generation = self.generation
            self._running[generation] = self._running.get(generation, 0) + 1
            try:
                run = self.replicas[index]  # read per batch: a reload takes effect at the next batch
                results = await loop.run_in_executor(self._threads[index], run, [job.item for job in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(f"replica {index} returned {len(results)} results for {len(jobs)} items")
            except asyncio.CancelledError:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(ReplicaFailed("the server is stopping"))
                raise
            except Exception as err:  # noqa: BLE001 - a broken replica: retry its items once elsewhere
                self.failures[index] = f"{type(err).__name__}: {err}"
                await self._retry(jobs, index, err)
                await asyncio.sleep(self.cooldown)  # out of service a while: the others take the retried items
                continue
            finally:
                self.busy -= 1
                self._running[generation] -= 1
            self._count(len(jobs))
            for job, result in zip(jobs, results):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    async def _retry(self, jobs: list[_Job], index: int, err: Exception) -> None:
        for job in jobs:
            if job.future.done():
                continue
            if job.attempts < 1:
                job.attempts += 1
                self.stats.retried += 1
                await self._queue.put(job)
            else:
                self.stats.failed += 1
                job.future.set_exception(ReplicaFailed(f"replica {index} failed: {type(err).__name__}: {err}"))

    def _count(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.items += size
        self.stats.sizes[size] = self.stats.sizes.get(size, 0) + 1
        if self.on_batch is not None:
            self.on_batch(size)

    async def close(self) -> None:
        """Stop the workers (requests still waiting get :class:`ReplicaFailed`) and their threads."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(ReplicaFailed("the server is stopping"))
        for pool in self._threads:
            pool.shutdown(wait=True, cancel_futures=True)
