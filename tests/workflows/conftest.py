"""Stores for workflow tests (runs, export, report), filled with one run of each kind.

The ``store``/``store_url`` fixtures (SQLite and PostgreSQL) are in
``tests/conftest.py``; here the PostgreSQL URL carries a password (trust auth
accepts any), so the tests can check it is never shown.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

#: The test server with a password in the URL: trust auth ignores it, and it must never be shown.
PG_URL = os.environ.get("VKIT_TEST_PG_URL", "postgresql+psycopg://postgres:pg-s3cret-pw@127.0.0.1:5432/test")
PASSWORD = sa.make_url(PG_URL).password or "pg-s3cret-pw"


@pytest.fixture
def pg_base_url() -> str:
    """Fresh PostgreSQL schemas for these tests come with a password in the URL (see ``PG_URL``)."""
    return PG_URL


def fill_store(store: Any, root: Path) -> dict[str, int]:
    """One finished run of each kind: ``train`` (curves, predictions, checkpoint), ``score`` (videos, scores, events),
    ``predict``; returns ``{kind: run_id}``."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = dict(seed=0, train=dict(epochs=3, lr=0.01), model=dict(type="VideoModel", head=dict(num_classes=2)),
               db="postgresql+psycopg://bob:cfg-s3cret@db.local/vkit")
    work = root / "work-train"
    work.mkdir()
    train = store.start_run("demo-task", "demo", cfg, seed=0, work_dir=work)
    for epoch in range(1, 4):
        store.log_metrics(train, {"epoch_loss": 1.0 / epoch}, step=epoch, split="train")
        store.log_metrics(train, {"auc": 0.5 + 0.1 * epoch, "acc": 0.6 + 0.05 * epoch}, step=epoch, split="val")
    store.log_metrics(train, {"auc": 0.81, "acc": 0.75, "sensitivity": math.nan}, step=0, split="test")
    store.log_metrics(train, {"size_mb": 4.0, "auc": 0.80}, step=0, split="compression")
    rows = []
    for i in range(24):
        label = i % 2
        p1 = min(0.95, max(0.05, 0.3 + 0.4 * label + 0.15 * math.sin(i)))
        rows.append(dict(item_id=f"case-{i:02d}", label=label, prediction=int(p1 >= 0.5), values=dict(probs=[1 - p1, p1])))
    store.add_predictions(train, "test", rows)
    ckpt = work / "model.safetensors"
    ckpt.write_bytes(b"weights" * 10)
    store.add_artifact(train, "checkpoint", ckpt)
    store.finish_run(train, "finished")

    cfg2 = dict(cfg, train=dict(epochs=5, lr=0.01), extra=dict(flag=True))
    other = store.start_run("demo-task", "demo", cfg2, seed=1)
    store.log_metrics(other, {"auc": 0.9, "acc": 0.8}, step=0, split="test")
    store.finish_run(other, "finished")

    score = store.start_run("demo-task", "demo", dict(checkpoint=str(ckpt)), seed=None, model_sha256="ab" * 32,
                            kind="score")
    ids = store.upsert_videos([dict(path=str(root / f"cam{v}.mp4"), sha256=f"{v:064x}", size=1000 + v, duration=4.0,
                                    fps=8.0, frames=32, status="ok") for v in range(3)])
    results = []
    for v, (path, video_id) in enumerate(ids.items()):
        scores = [dict(segment=s, start=s * 0.5, end=s * 0.5 + 0.5, score=0.1 * v + 0.05 * s, values=dict(raw=[s]))
                  for s in range(8)]
        events = [dict(kind="anomaly", start=1.0, end=2.0, score=0.2 + 0.1 * v)] if v else []
        results.append(dict(video_id=video_id, status="scored", scores=scores, events=events))
    store.add_video_results(score, results)
    store.finish_run(score, "finished")

    predict = store.start_run("demo-task", "demo", dict(checkpoint=str(ckpt), inputs=["a.mp4"]), seed=None,
                              kind="predict", model_sha256="cd" * 32)
    store.add_predictions(predict, "predict", [dict(item_id="a.mp4", prediction=1, values=dict(probs=[0.3, 0.7]))])
    store.finish_run(predict, "finished")
    return dict(train=train, other=other, score=score, predict=predict)


@pytest.fixture
def filled(store: Any, tmp_path: Path) -> dict[str, int]:
    """``store`` holding :func:`fill_store`'s runs."""
    return fill_store(store, tmp_path / "runs")


@pytest.fixture
def db_password() -> str:
    """The password in the PostgreSQL test URL (it must never be shown)."""
    return PASSWORD


@pytest.fixture
def fill_runs() -> Any:
    """:func:`fill_store`, for tests that fill a store of their own."""
    return fill_store


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[tuple[Any, dict[str, int]]]:
    """``(store, {kind: run_id})`` on SQLite only, for tests whose subject does not depend on the backend."""
    from vkit.core.store import open_store

    opened = open_store(f"sqlite:///{tmp_path / 'lite' / 'vkit.db'}")
    yield opened, fill_store(opened, tmp_path / "lite-runs")
    opened.close()
