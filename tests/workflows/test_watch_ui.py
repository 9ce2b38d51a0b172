"""The live page of ``vkit watch --ui``: headless Chromium sees new points and an event while rows land in the store;
names from the store stay text; off localhost a token is required.

Rows are added straight through the store (no watch engine), as ``vkit watch`` writes them: a ``watch`` run, one
``videos`` row per stream, window scores, an event that opens then closes with a keyframe, a live summary.
"""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from vkit.core.store import open_store
from vkit.registry.errors import ConfigError
from vkit.workflows.watch_ui import build_app, start_live_page
from vkit.workflows.watch_ui.feed import LiveFeed

_spec = importlib.util.spec_from_file_location("report_browser", Path(__file__).with_name("test_report_browser.py"))
browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(browser)  # the DevTools client of the report's browser test

HOSTILE = 'cam <img src=x onerror="document.title=\'pwned\'">&amp;'
TOKEN = "t" * 24


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plt.imsave(path, np.linspace(0, 1, 32 * 48).reshape(32, 48))
    return path


def _watch_run(url: str) -> tuple[Any, int, int]:
    store = open_store(url)
    run_id = store.start_run("security-anomaly", "security", {}, None, kind="watch")
    video_id = store.upsert_videos([{"path": HOSTILE, "status": "ok"}])[HOSTILE]
    return store, run_id, video_id


def _scores(store: Any, run_id: int, video_id: int, segments: range) -> None:
    store.add_scores(run_id, [dict(video_id=video_id, segment=i, start=float(i), end=i + 1.0, score=0.1 + 0.05 * i)
                              for i in segments])


def _event(store: Any, run_id: int, video_id: int, status: str, end: float, keyframe: Path | None) -> None:
    """An event row as ``vkit watch`` writes it (status, keyframe path: schema 0010)."""
    import sqlalchemy as sa

    table = sa.Table("events", sa.MetaData(), autoload_with=store.engine)
    row = dict(run_id=run_id, video_id=video_id, kind="anomaly", start=3.0, end=end, score=0.8, status=status,
               keyframe_path=None if keyframe is None else str(keyframe))
    with store.engine.begin() as conn:
        done = conn.execute(sa.update(table).where(table.c.run_id == run_id, table.c.start == 3.0)
                            .values(status=status, end=end, keyframe_path=row["keyframe_path"]))
        if done.rowcount == 0:
            conn.execute(sa.insert(table).values(**row))


def _summary(store: Any, run_id: int, group: str, text: str, step: int = 1) -> None:
    """A live summary row as ``vkit watch`` writes it for a session (schema 0010's ``live_summaries``)."""
    import sqlalchemy as sa

    table = sa.Table("live_summaries", sa.MetaData(), autoload_with=store.engine)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(table).values(run_id=run_id, group_name=group, step=step, at=sa.func.now(), text=text))


def _evaluate(tools: Any, session: str, expression: str) -> Any:
    reply = tools.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
    return reply["result"].get("value")


def _until(tools: Any, session: str, expression: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = _evaluate(tools, session, expression)
        if value:
            return value
        time.sleep(0.1)
    state = _evaluate(tools, session, "document.body.innerText")
    raise AssertionError(f"the page never showed {expression!r}; it shows:\n{state}")


def test_the_page_shows_new_points_and_an_event_as_rows_arrive(tmp_path: Path) -> None:
    if browser.CHROMIUM is None:
        pytest.skip("headless Chromium not installed: run `make chromium`")
    url = f"sqlite:///{tmp_path / 'v.db'}"
    store, run_id, video_id = _watch_run(url)
    _scores(store, run_id, video_id, range(0, 3))
    page = start_live_page(url, run_id, "127.0.0.1", 0, poll_seconds=0.2)
    tools = browser.DevTools(tmp_path / "profile")
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tools.send("Page.enable", session=session)
        tools.send("Runtime.enable", session=session)
        tools.send("Page.navigate", {"url": page.url}, session=session)
        points = "document.querySelector('.stream .points') && document.querySelector('.stream .points').textContent"
        assert _until(tools, session, f"{points} === '3 points'")
        _scores(store, run_id, video_id, range(3, 8))                      # the stream goes on
        _event(store, run_id, video_id, "open", 5.0, None)
        assert _until(tools, session, f"{points} === '8 points'")
        assert _until(tools, session, "document.querySelector('.event[data-status=open]') !== null")
        assert "anomaly · open · 3.0–5.0 s" in _evaluate(tools, session, "document.querySelector('.event').innerText")
        _summary(store, run_id, "lesson <b>1</b>", "4 of 20 learners low for the last 2 minutes")
        assert _until(tools, session, "document.querySelector('.summary') !== null && document.querySelector("
                      "'.summary').textContent === 'lesson <b>1</b>: 4 of 20 learners low for the last 2 minutes'")
        _event(store, run_id, video_id, "closed", 7.0, _png(tmp_path / "key.png"))   # the rule closes it
        assert _until(tools, session, "document.querySelector('.event[data-status=closed] img') !== null")
        assert _until(tools, session, "document.querySelector('.event img').naturalWidth === 48")
        assert _until(tools, session, "document.getElementById('status').textContent === 'live'")
        name = _evaluate(tools, session, "document.querySelector('.stream h2').textContent")
        assert name == HOSTILE                                              # shown as text ...
        assert _evaluate(tools, session, "document.querySelectorAll('img[src=x]').length") == 0  # ... never as markup
        assert _evaluate(tools, session, "document.title") != "pwned"
        pixels = _evaluate(tools, session, "(() => { const c = document.querySelector('canvas'); const d = "
                           "c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; "
                           "for (let i = 0; i < d.length; i += 4) if (d[i+2] > 200 && d[i] < 80) n++; return n; })()")
        assert pixels > 50, "the chart drew no score line"
    finally:
        tools.close()
        page.stop()
        store.close()


def test_the_feed_sends_only_what_changed_and_summaries(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    store, run_id, video_id = _watch_run(url)
    _scores(store, run_id, video_id, range(0, 2))
    feed = LiveFeed(open_store(url, read_only=True), run_id)
    first = feed.poll()
    assert [s["segment"] for s in first["scores"]] == [0, 1] and first["streams"][0]["path"] == HOSTILE
    assert feed.poll() == dict(run=None, streams=[], scores=[], events=[], summaries=[])
    _summary(store, run_id, "lesson-1", "4 of 20 learners low for the last 2 minutes")
    _event(store, run_id, video_id, "open", 4.0, tmp_path / "k.png")
    delta = feed.poll()
    assert [s["text"] for s in delta["summaries"]] == ["4 of 20 learners low for the last 2 minutes"]
    assert [(e["status"], e["keyframe"]) for e in delta["events"]] == [("open", True)]
    assert "keyframe_path" not in delta["events"][0]                      # the server's paths stay on the server
    assert json.dumps(feed.snapshot())                                    # JSON-safe


def test_a_token_is_required_off_localhost_and_checked(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    url = f"sqlite:///{tmp_path / 'v.db'}"
    store, run_id, video_id = _watch_run(url)
    with pytest.raises(ConfigError, match=r"bound to '0.0.0.0' .* needs a bearer token"):
        start_live_page(url, run_id, "0.0.0.0", 0)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        start_live_page(url, run_id, "0.0.0.0", 0, token="short")
    app = build_app(LiveFeed(store, run_id), token=TOKEN)
    with TestClient(app) as client:
        assert client.get("/").status_code == 401
        assert client.get("/snapshot", headers={"Authorization": "Bearer wrong" + TOKEN}).status_code == 401
        assert client.get("/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        opened = client.get(f"/?token={TOKEN}")
        assert opened.status_code == 200 and "vkit watch" in opened.text
        assert client.get("/snapshot").status_code == 200                # the cookie the page got carries it


def test_a_keyframe_is_served_only_as_a_regular_image_file(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    url = f"sqlite:///{tmp_path / 'v.db'}"
    store, run_id, video_id = _watch_run(url)
    feed = LiveFeed(store, run_id)
    with TestClient(build_app(feed)) as client:
        _event(store, run_id, video_id, "closed", 4.0, tmp_path / "secret.txt")
        (tmp_path / "secret.txt").write_text("not an image")
        event_id = feed.poll()["events"][0]["id"]
        assert client.get(f"/keyframe/{event_id}").status_code == 415
        os.mkfifo(tmp_path / "fifo.png")
        _event(store, run_id, video_id, "closed", 4.0, tmp_path / "fifo.png")
        assert client.get(f"/keyframe/{event_id}").status_code == 404   # a FIFO never blocks the server
        assert client.get("/keyframe/999").status_code == 404


def test_the_page_follows_a_real_vkit_watch_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Integration with the watch engine: `vkit watch --realtime --ui` on a file; the page's snapshot shows the stream,
    its window scores and the `bright` event while the file plays."""
    import socket
    import sys
    import threading

    import httpx

    sys.path.insert(0, str(Path(__file__).parent))
    import test_watch_support as support

    from vkit.workflows.cli import main

    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    monkeypatch.chdir(tmp_path)
    model = support.make_checkpoint(tmp_path / "model.safetensors")
    clip = support.write_clip(tmp_path / "cam.mp4", support.bright_middle())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--db", f"sqlite:///{tmp_path / 'vkit.db'}", "--plugin", "test_watch_support", "watch", "demo-watch",
            str(clip), "--checkpoint", str(model), "--window", "0.25", "--realtime", "--ui", f"127.0.0.1:{port}"]
    ended: list[object] = []

    def run() -> None:
        try:
            main(args)
        except SystemExit as exit_:
            ended.append(exit_.code)
        else:
            ended.append(0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    seen: dict[str, Any] = {}
    while thread.is_alive() and not (seen.get("scores") and seen.get("events")):
        try:
            seen = httpx.get(f"http://127.0.0.1:{port}/snapshot", timeout=2).json()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    thread.join(60)
    assert ended == [0]
    assert seen.get("scores") and seen["streams"][0]["path"].endswith("cam.mp4"), seen
    assert [e["kind"] for e in seen["events"]] == ["bright"] and seen["run"]["kind"] == "watch"
