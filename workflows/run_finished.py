"""``vkit score`` and ``vkit predict`` runs announced to plugins, as ``vkit run`` announces its own.

:func:`announced_run` is :meth:`Store.track_run <vkit.core.store.runs.RunRows.track_run>` that, once the
run row is closed, fires ``vkit_run_finished`` through the plugin manager (whose faults are recorded and
warned about, never raised: a plugin's error does not fail the finished command).

Example::

    with announced_run(store, manager, task_cls, config, kind="score", model_sha256=sha) as run_id:
        ...                        # plugins hear {"id": run_id, "kind": "score", "status": "finished", ...}
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from vkit.registry.errors import StoreError


@contextmanager
def announced_run(store: Any, manager: Any, task_cls: Any, config: Mapping[str, Any], *, kind: str,
                  **kwargs: Any) -> Iterator[int]:
    """``store.track_run(task, plugin, config, seed=None, kind=kind, **kwargs)``, then ``vkit_run_finished``.

    The hook's ``run`` carries ``id``, ``task``, ``kind``, ``status`` (``finished``, or ``failed`` when the
    body raised; the exception is re-raised after the hook), ``error`` (``Type: message``), ``metrics``
    (the run's final stored metrics, e.g. a score run's aggregates), ``db`` (masked URL) and ``report``
    (``None``: these commands write no run report).
    """
    run_id: int | None = None
    error: str | None = None
    try:
        with store.track_run(task_cls.name, task_cls.plugin, config, seed=None, kind=kind, **kwargs) as run_id:
            yield run_id
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
        raise
    finally:
        if run_id is not None:
            try:
                metrics = store.final_metrics(run_id)
            except StoreError:  # the store itself failed the run: `error` says so
                metrics = {}
            manager.notify_run_finished(dict(id=run_id, task=task_cls.name, kind=kind,
                                             status="failed" if error else "finished", error=error,
                                             metrics=metrics, db=store.url, report=None))


__all__ = ["announced_run"]
