"""Reading and transforming request inputs in loader processes, off the serving process's GIL.

Loading one input (a NIfTI volume through MONAI's transforms, a clip decoded
with PyAV) is mostly Python: on a thread of the server it holds the GIL that
the event loop (HTTP, JSON) and the model's thread need. :class:`LoaderPool`
runs :func:`~vkit.workflows.serve.models.load_input` in ``workers`` spawned
processes instead (``--loaders``; each with one torch thread), so loading runs
on every core while the model runs.

A worker builds the served tasks and warms their loading when it starts
(``models``, ``plugins``), and keeps each model's config by its sha256 (a
reload's new config reaches it with the first request of the new model). A
worker that dies (killed, out of memory) breaks the pool: the pool is replaced
and the request tried once more on the new one; if that breaks too the request
fails with :class:`LoaderFailed` (HTTP 503). Nothing waits forever: a request
gives up after ``timeout`` (503).

Measured on 2 cores (docs/serve.md): the pickling and process hops cost more
CPU per request than the GIL costs the threads, so ``vkit serve`` loads on
threads by default (``--loaders 0``); the pool is for machines with cores to
spare, where the serving process's GIL would be the limit.

Example::

    pool = LoaderPool(2, models={"medical-diagnosis": (sha256, config)})
    pool.warm()
    loaded = await pool.load("medical-diagnosis", sha256, config, Input(path="/data/a.nii.gz", name="a.nii.gz"))
    pool.close()
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import pickle
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from vkit.registry.errors import ConfigError

__all__ = ["LoaderFailed", "LoaderPool"]


class LoaderFailed(RuntimeError):
    """A loader process died while reading this request's input (twice); the request may be sent again (HTTP 503)."""


_PLUGINS: tuple[str, ...] = ()
_TASKS: dict[str, Any] = {}
_CONFIGS: dict[str, Any] = {}


def _init(plugins: tuple[str, ...], models: dict[str, tuple[str, bytes]]) -> None:
    """Loader process start: one torch thread (the cores are shared with the model), the plugins registered, the
    served tasks built and their loading warmed (:func:`~vkit.workflows.serve.models.warm_loading`): once, not on
    the first requests."""
    global _PLUGINS
    import torch

    from vkit.workflows.serve.models import warm_loading

    torch.set_num_threads(1)
    _PLUGINS = tuple(plugins)
    for name, (sha256, blob) in models.items():
        config = _CONFIGS[sha256] = pickle.loads(blob)
        warm_loading(_task(name), config)


def _task(name: str) -> Any:
    task = _TASKS.get(name)
    if task is None:
        from vkit.hooks.manager import get_plugin_manager

        manager = get_plugin_manager(extra=_PLUGINS)
        task = _TASKS[name] = manager.get_task(name)()
        manager.register_components(require=task.plugin)
    return task


def _ready() -> int:
    import os

    return os.getpid()


def _load(task_name: str, sha256: str, config_blob: bytes, item: Any) -> Any:
    """In a loader process: ``item`` loaded by ``task_name`` with the config of model ``sha256``."""
    from vkit.workflows.serve.models import load_input

    task = _task(task_name)
    config = _CONFIGS.get(sha256)
    if config is None:
        config = _CONFIGS[sha256] = pickle.loads(config_blob)
    return _pack(load_input(task, config, item))


class _Array:
    """A tensor sent back as its numpy array: pickled by value (torch's own reduction moves each tensor to shared
    memory and passes its file descriptor, several system calls and a socket round trip per tensor)."""

    def __init__(self, array: Any) -> None:
        self.array = array


def _pack(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor) and value.dtype != torch.bfloat16 and not value.requires_grad:
        return _Array(value.as_subclass(torch.Tensor).numpy())
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_pack(v) for v in value)
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, _Array):
        import torch

        return torch.from_numpy(value.array)
    if isinstance(value, dict):
        return {k: _unpack(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_unpack(v) for v in value)
    return value


class LoaderPool:
    """``workers`` spawned loader processes (see the module docstring).

    Args:
        workers: processes (>= 1).
        models: ``{task name: (model sha256, its config)}`` of the served models (each worker builds the tasks and
            warms their loading when it starts).
        plugins: extra plugin modules the server was started with (the workers register them too).
        timeout: longest one load may take before :class:`TimeoutError`.
    """

    def __init__(self, workers: int, *, models: dict[str, tuple[str, Any]] | None = None,
                 plugins: tuple[str, ...] = (), timeout: float = 120.0) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"serve: loader processes must be an int >= 1, got {workers!r}")
        self.workers, self.plugins, self.timeout = workers, tuple(plugins), float(timeout)
        self.restarts = 0
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}  # model sha256 -> its pickled config
        self.models = {name: (sha256, self._blob(sha256, config)) for name, (sha256, config) in (models or {}).items()}
        self._pool = self._new()

    def _blob(self, sha256: str, config: Any) -> bytes:
        blob = self._blobs.get(sha256)
        if blob is None:
            blob = self._blobs[sha256] = pickle.dumps(config)
        return blob

    def _new(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                      initializer=_init, initargs=(self.plugins, self.models))

    def warm(self, timeout: float = 300.0) -> list[int]:
        """Start every worker now (imports, plugins, tasks: seconds each) instead of on the first requests."""
        futures = [self._pool.submit(_ready) for _ in range(self.workers)]
        return [f.result(timeout) for f in futures]

    def pids(self) -> list[int]:
        """The process ids of the workers started so far."""
        return [proc.pid for proc in (self._pool._processes or {}).values()]

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # the first request to see it broken replaces it
                self.restarts += 1
                self._pool = self._new()
        broken.shutdown(wait=False, cancel_futures=True)

    async def load(self, task: str, sha256: str, config: Any, item: Any) -> Any:
        """``item`` loaded (or its ``BadInput``, returned) in a loader process; :class:`LoaderFailed` if the
        process died twice, :class:`TimeoutError` after ``timeout``."""
        blob = self._blob(sha256, config)
        for attempt in (1, 2):
            pool = self._pool
            try:
                future = pool.submit(_load, task, sha256, blob, item)
                return _unpack(await asyncio.wait_for(asyncio.wrap_future(future), self.timeout))
            except BrokenProcessPool as err:
                self._replace(pool)
                if attempt == 2:
                    raise LoaderFailed(f"the loader process reading {item.name!r} died: {err}") from None
            except RuntimeError as err:  # submit() raced a replacement that shut this pool down: try the new one
                if "shutdown" not in str(err) or attempt == 2:
                    raise
            except TimeoutError:
                raise TimeoutError(f"reading {item.name!r} took longer than {self.timeout:g} s") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers: loads not started are cancelled, a worker still busy after ``timeout`` is terminated
        (a stuck decoder does not hold the server's shutdown)."""
        processes = list((self._pool._processes or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout)
            if process.is_alive():
                process.terminate()
                process.join(5)
