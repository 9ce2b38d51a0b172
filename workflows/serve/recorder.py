"""Every prediction and recommendation ``vkit serve`` answers is stored: one run of kind ``serve`` per served
model, rows written in batches from a background thread (never one transaction per request).

A served model gets its run when the server starts (and a new one when
``/v1/admin/reload`` swaps the model, so a run always names the one model
its rows came from). Rows wait in memory at most ``flush_seconds`` (or until
``flush_rows`` are waiting) and are written with one ``add_predictions`` per
run; :meth:`close` writes what is left and closes the runs ``finished``
(``interrupted`` when the server was stopped by a signal). A server killed
with ``kill -9`` loses at most the last ``flush_seconds`` of rows, and its
runs are reaped ``interrupted`` by the next command.

Example::

    recorder = PredictionRecorder(store, flush_seconds=1.0)
    run_id = recorder.start_run(served)          # kind 'serve', the model's sha256
    recorder.add(run_id, row)                    # item_id, label, prediction, values (split 'serve')
    recorder.add(run_id, row, split=RECOMMEND)   # a recommendation answered (split 'recommend')
    recorder.close()
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

__all__ = ["RECOMMEND", "SPLIT", "PredictionRecorder"]

log = logging.getLogger("vkit.serve")

#: The predictions split serve writes predictions under.
SPLIT = "serve"
#: The split of the recommendations it answers (the one ``vkit recommend --users`` writes).
RECOMMEND = "recommend"


class PredictionRecorder:
    """Buffers prediction rows per run and writes them in batches.

    Args:
        store: the open store.
        flush_seconds: longest a row waits before it is written.
        flush_rows: rows waiting that trigger a write at once.
    """

    def __init__(self, store: Any, *, flush_seconds: float = 1.0, flush_rows: int = 256) -> None:
        self.store, self.flush_seconds, self.flush_rows = store, float(flush_seconds), int(flush_rows)
        self._rows: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)  # (run id, split) -> rows
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.written, self.writes, self.errors = 0, 0, 0
        self.last_error: str | None = None
        self.runs: list[int] = []
        self._thread = threading.Thread(target=self._loop, name="vkit-serve-recorder", daemon=True)
        self._thread.start()

    def start_run(self, served: Any, config: dict[str, Any]) -> int:
        """A ``serve`` run for ``served`` (its task, plugin and model sha256); returns its id."""
        run_id = self.store.start_run(served.name, served.task.plugin, config, None, kind="serve",
                                      model_sha256=served.sha256 or None)
        self.runs.append(run_id)
        return run_id

    def finish_run(self, run_id: int, status: str = "finished") -> None:
        """Write ``run_id``'s waiting rows, then close it."""
        self.flush()
        self.store.finish_run(run_id, status)
        if run_id in self.runs:
            self.runs.remove(run_id)

    def add(self, run_id: int, row: dict[str, Any], split: str = SPLIT) -> None:
        """Queue one row of run ``run_id`` (a prediction; ``split=RECOMMEND``: a recommendation)."""
        with self._lock:
            self._rows[(run_id, split)].append(row)
            waiting = sum(len(r) for r in self._rows.values())
        if waiting >= self.flush_rows:
            self._wake.set()

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._rows.values())

    def flush(self) -> None:
        """Write every waiting row now (one transaction per run and split)."""
        with self._lock:
            pending, self._rows = self._rows, defaultdict(list)
        for (run_id, split), rows in pending.items():
            if not rows:
                continue
            try:
                self.store.add_predictions(run_id, split, rows)
                self.written += len(rows)
                self.writes += 1
            except Exception as err:  # noqa: BLE001 - keep serving; retry these rows with the next flush
                self.errors += 1
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("serve: storing %d %s rows of run %d failed (will retry): %s", len(rows), split, run_id,
                            self.last_error)
                with self._lock:
                    self._rows[(run_id, split)][:0] = rows

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self, status: str = "finished") -> None:
        """Stop the writer, write what is left and close every open run with ``status``."""
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        self.flush()
        for run_id in list(self.runs):
            try:
                self.finish_run(run_id, status)
            except Exception as err:  # noqa: BLE001 - closing: say so, go on with the others
                log.warning("serve: closing run %d failed: %s", run_id, err)

    def wait_written(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` rows were written (tests, shutdown checks)."""
        deadline = time.monotonic() + timeout
        while self.written < count and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        return self.written >= count
