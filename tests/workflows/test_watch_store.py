"""Migration 0010 (vkit watch): live event status, keyframes, score wall times, alerts, live summaries."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from vkit.core.store import downgrade, upgrade
from vkit.core.store.engine import create_store_engine, resolve_url


def _sql(url: str, statement: str) -> list[tuple]:
    engine = create_store_engine(resolve_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_0010_keeps_events_closed_and_adds_live_tables(store_url):
    assert upgrade(store_url, "0009") == (None, "0009")
    _sql(store_url, "INSERT INTO runs (task, plugin, status, started_at, config, versions, kind) "
                    "VALUES ('t', 'p', 'finished', '2025-01-01 00:00:00', '{}', '{}', 'score')")
    (run_id,), = _sql(store_url, "SELECT id FROM runs")
    _sql(store_url, "INSERT INTO videos (path, status, updated_at) VALUES ('/a.mp4', 'ok', '2025-01-01 00:00:00')")
    (video_id,), = _sql(store_url, "SELECT id FROM videos")
    _sql(store_url, f"INSERT INTO events (run_id, video_id, kind, start, \"end\", score) "
                    f"VALUES ({run_id}, {video_id}, 'anomaly', 1.0, 2.0, 0.9)")
    assert upgrade(store_url, "0010") == ("0009", "0010")
    assert _sql(store_url, "SELECT kind, status, keyframe_path FROM events") == [("anomaly", "closed", None)]
    with pytest.raises(sa.exc.IntegrityError):
        _sql(store_url, "UPDATE events SET status = 'ajar'")
    (event_id,), = _sql(store_url, "SELECT id FROM events")
    _sql(store_url, f"INSERT INTO alerts (run_id, event_id, action, payload, status, attempts, created_at) "
                    f"VALUES ({run_id}, {event_id}, 'open', '{{}}', 'pending', 0, '2025-01-01 00:00:00')")
    with pytest.raises(sa.exc.IntegrityError):
        _sql(store_url, "UPDATE alerts SET status = 'lost'")
    _sql(store_url, f"INSERT INTO live_summaries (run_id, group_name, step, at, text) "
                    f"VALUES ({run_id}, 's1', 0, '2025-01-01 00:00:00', '1 of 2 learners low')")
    assert downgrade(store_url, "0009") == ("0010", "0009")
    assert _sql(store_url, "SELECT kind, start FROM events") == [("anomaly", 1.0)]
    assert upgrade(store_url)[0] == "0009"
