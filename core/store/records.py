"""What a run logs: metrics, artifacts (files with their sha256) and per-case predictions.

Example::

    store.log_metrics(run_id, {"acc": 0.91}, step=1, split="val")
    store.final_metrics(run_id)                  # {'val/acc': 0.91}
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vkit.core.store.base import StoreBase, _pick
from vkit.core.store.models import Artifact, Metric, Prediction, Run, utcnow
from vkit.core.store.provenance import sha256_file
from vkit.core.store.upsert import upsert
from vkit.registry.errors import StoreError

_PREDICTION_FIELDS = ("item_id", "label", "prediction", "values")


class RunRecords(StoreBase):
    """The ``metrics``, ``artifacts`` and ``predictions`` tables."""

    def log_metrics(self, run_id: int, metrics: Mapping[str, Any], step: int, split: str) -> None:
        """Record ``metrics`` (``{key: number}``) of ``split`` at ``step`` in one transaction; NaN is kept as NaN."""
        now = utcnow()
        rows = [
            dict(run_id=run_id, key=str(key), value=_metric_value(run_id, key, value), step=int(step),
                 split=str(split), logged_at=now)
            for key, value in metrics.items()
        ]
        with self.session() as session:
            self._run(session, run_id)
            upsert(session, Metric.__table__, rows, keys=("run_id", "split", "key", "step"))

    def run_metrics(self, run_id: int, split: str | None = None) -> list[dict[str, Any]]:
        """Every metric row of run ``run_id`` (by split, step, key)."""
        where = [Metric.run_id == run_id] + ([Metric.split == split] if split else [])
        rows = self._select(Metric, *where, order_by=(Metric.split, Metric.step, Metric.key))
        for row in rows:
            row["value"] = math.nan if row["value"] is None else row["value"]
        return rows

    def final_metrics(self, run_id: int) -> dict[str, float]:
        """``{"split/key": value}`` at the last step each metric was logged."""
        return {f"{row['split']}/{row['key']}": row["value"] for row in self.run_metrics(run_id)}

    # ----------------------------------------------------------- artifacts

    def add_artifact(self, run_id: int, kind: str, path: str | Path,
                     digest: tuple[str, int] | None = None) -> dict[str, Any]:
        """Record the file at ``path`` (absolute) with its streamed sha256 and size; returns the row.

        ``digest``: ``(sha256, size)`` of the bytes the caller already read from ``path`` (a run's ``pretrained``
        file, hashed as it was loaded): recorded as they are, the file is not read again.
        """
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise StoreError(f"add_artifact(run {run_id}, {kind!r}): {file} is not a file")
        digest, size = digest if digest is not None else sha256_file(file)
        row = dict(run_id=run_id, kind=str(kind), path=str(file), sha256=digest, bytes=size, created_at=utcnow())
        with self.session() as session:
            self._run(session, run_id)
            upsert(session, Artifact.__table__, [row], keys=("run_id", "path"))
        return next(a for a in self.run_artifacts(run_id) if a["path"] == str(file))

    def run_artifacts(self, run_id: int) -> list[dict[str, Any]]:
        """Every artifact of run ``run_id``."""
        return self._select(Artifact, Artifact.run_id == run_id, order_by=(Artifact.id,))

    def artifacts_at(self, path: str | Path) -> list[dict[str, Any]]:
        """Every artifact recorded at ``path`` (resolved), by any run, oldest first."""
        file = str(Path(path).expanduser().resolve())
        return self._select(Artifact, Artifact.path == file, order_by=(Artifact.id,))

    def folder_references(self, folder: str | Path) -> set[int]:
        """Ids of the runs whose work dir is ``folder`` (resolved) or that recorded an artifact inside it."""
        root = str(Path(folder).expanduser().resolve())
        inside = root.rstrip("/") + "/"
        with self.session(write=False) as session:
            runs = session.scalars(sa.select(Run.id).where(Run.work_dir == root))
            files = session.execute(sa.select(Artifact.run_id, Artifact.path).where(
                sa.func.substr(Artifact.path, 1, len(inside)) == inside))
            return {*runs, *(run_id for run_id, _ in files)}

    # --------------------------------------------------------- predictions

    def add_predictions(self, run_id: int, split: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record per-case rows (``item_id``, ``label``, ``prediction``, ``values``); same item again updates it."""
        clean = [
            dict(_pick(row, _PREDICTION_FIELDS, "predictions", required=("item_id",)), run_id=run_id, split=str(split))
            for row in rows
        ]
        for row in clean:  # values (JSON) are encoded by upsert
            row["item_id"] = str(row["item_id"])
        with self.session() as session:
            self._run(session, run_id)
            return upsert(session, Prediction.__table__, clean, keys=("run_id", "split", "item_id"), owned=True)

    def run_predictions(self, run_id: int, split: str | None = None) -> list[dict[str, Any]]:
        """Every prediction of run ``run_id`` (optionally one split), by item id."""
        where = [Prediction.run_id == run_id] + ([Prediction.split == split] if split else [])
        return self._select(Prediction, *where, order_by=(Prediction.split, Prediction.item_id))


def _metric_value(run_id: int, key: Any, value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StoreError(f"log_metrics(run {run_id}): metric {key!r} must be a number, got {value!r}") from None
    return None if math.isnan(number) else number
