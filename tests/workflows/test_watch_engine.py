"""vkit watch in-process: parity with vkit score, live TCP/UDP streams with drops and corrupt packets, dropped
frames, webhooks that hang or are dead, JSON lines. Tiny clips (2-3 s at 20 fps, 16x16 model input)."""
from __future__ import annotations

import hashlib
import http.server
import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
import test_watch_support as support  # noqa: E402
from fixtures.streams import TcpPublisher, UdpPublisher  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit_cli import vkit_main as _vkit  # noqa: E402  (tests/helpers: vkit ARGS in this process)

WINDOW = "0.25"  # 5 frames at 20 fps: 40 frames = 8 windows, as vkit score cuts them into 8 segments


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.make_checkpoint(tmp_path_factory.mktemp("model") / "model.safetensors")


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _base(url: str) -> list[str]:
    return ["--db", url, "--plugin", "test_watch_support"]


def test_realtime_file_matches_vkit_score(store_url: str, model: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    clip = support.write_clip(tmp_path / "lesson.mp4", support.bright_middle())
    began = time.monotonic()
    code, out, err = _vkit(capsys, *_base(store_url), "watch", "demo-watch", str(clip), "--checkpoint", str(model),
                           "--window", WINDOW, "--realtime", "--json", "--batch-size", "3")
    took = time.monotonic() - began
    assert code == 0, err
    assert took >= 1.9  # played at its own rate: 40 frames at 20 fps
    lines = _lines(out)
    assert [(x["action"], x["kind"], x["status"]) for x in lines if x["type"] == "event"] == [
        ("open", "bright", "open"), ("close", "bright", "closed")]
    run = lines[-1]
    assert run["type"] == "run" and run["stopped"] == "ended" and run["streams"][0]["scored"] == 8
    assert run["streams"][0]["dropped_frames"] == 0 and run["latency_p95"] < 1.0
    code, out, err = _vkit(capsys, *_base(store_url), "score", "demo-watch", str(clip), "--checkpoint", str(model),
                           "--json", "--workers", "0")
    assert code == 0, err
    scored = json.loads(out)["run_id"]
    with open_store(store_url) as store:
        watched = store.get_run(run["run_id"])
        assert (watched["kind"], watched["status"]) == ("watch", "finished")
        live, batch = store.video_scores(run["run_id"]), store.video_scores(scored)
        assert [r["segment"] for r in live] == [r["segment"] for r in batch] == list(range(8))
        assert max(abs(a["score"] - b["score"]) for a, b in zip(live, batch)) <= 1e-5
        assert max(abs(a["start"] - b["start"]) + abs(a["end"] - b["end"]) for a, b in zip(live, batch)) < 1e-6
        assert all(r["wall_time"] is not None and r["scored_at"] >= r["wall_time"] for r in live)
        events, reference = store.run_events(run["run_id"]), store.run_events(scored)
        assert [(e["kind"], e["start"], e["end"]) for e in events] == \
            [(e["kind"], e["start"], e["end"]) for e in reference] == [("bright", 0.75, 1.5)]
        # the same score within the parity bound (rounding both to 5 digits could split them at a boundary)
        assert [e["score"] for e in events] == pytest.approx([e["score"] for e in reference], abs=1e-5)
        assert events[0]["score"] == pytest.approx(0.85467, abs=1e-4)
        event = events[0]
        assert event["status"] == "closed" and event["opened_at"] <= event["closed_at"]
        keyframe = Path(event["keyframe_path"])
        assert keyframe.is_file() and keyframe.parent.name == "keyframes" and keyframe.suffix == ".jpg"
        assert hashlib.sha256(keyframe.read_bytes()).hexdigest() == event["keyframe_sha256"]
        summary = store.video_summaries(run["run_id"])[0]
        assert summary["video_sha256"] is None and summary["segments"] == 8
        assert summary["values"]["frames"] == 40 and summary["values"]["state"] == "ended"
        assert store.get_videos([str(clip.resolve())])[0]["status"] == "ok"
    code, out, err = _vkit(capsys, *_base(store_url), "runs", "show", str(run["run_id"]))
    assert code == 0 and "watch" in out, err
    code, out, err = _vkit(capsys, *_base(store_url), "export", str(run["run_id"]), "--format", "csv",
                           "-o", str(tmp_path / "x"))
    assert code == 0, err
    assert (tmp_path / "x" / f"run{run['run_id']}_scores.csv").read_text().count("\n") == 1 + 8


def test_tcp_stream_dropped_mid_event_reconnects_and_records_the_gap(model: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    clip = support.write_clip(tmp_path / "cam.mp4", support.bright_middle(40, 10, 30))
    with TcpPublisher(clip, drop_after=1.0, clients=2) as publisher:
        code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", publisher.url, "--checkpoint", str(model),
                               "--window", WINDOW, "--json", "--for", "4.5")
    assert code == 0, err
    lines = _lines(out)
    stream = lines[-1]["streams"][0]
    assert stream["reconnects"] == 1 and stream["gaps"] >= 1 and stream["stream"] == publisher.url
    with open_store(db) as store:
        events = store.run_events(lines[-1]["run_id"])
    by_kind = [(e["kind"], e["status"]) for e in sorted(events, key=lambda e: e["start"])]
    assert by_kind[0] == ("bright", "interrupted")  # open when the stream died at 1.0 s
    assert by_kind[1] == ("gap", "closed")
    gap = [e for e in events if e["kind"] == "gap"][0]
    assert 0.9 <= gap["start"] <= 1.0 and gap["end"] - gap["start"] >= 0.4  # at least the first backoff
    assert ("bright", "closed") in by_kind  # the replay's event, after the gap
    replay = [e for e in events if e["kind"] == "bright" and e["status"] == "closed"][0]
    assert replay["start"] >= gap["end"]


def test_udp_stream_with_corrupt_packets_is_scored(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    clip = support.write_clip(tmp_path / "cam.mp4", support.bright_middle(40, 10, 30))
    with UdpPublisher(clip, wait=1.0) as publisher:  # the watcher listens by then
        code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", publisher.url, "--checkpoint", str(model),
                               "--window", WINDOW, "--json", "--for", "4")
    assert code == 0, err
    stream = _lines(out)[-1]["streams"][0]
    assert stream["scored"] >= 3, stream
    with TcpPublisher(clip, realtime=False, corrupt_every=4, clients=1) as publisher:
        code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", publisher.url, "--checkpoint", str(model),
                               "--window", WINDOW, "--json", "--for", "1.5")
    assert code == 0, err
    stream = _lines(out)[-1]["streams"][0]
    assert stream["corrupt_packets"] >= 3 and stream["frames"] >= 30 and stream["scored"] >= 5, stream


def test_frames_are_dropped_and_counted_when_scoring_falls_behind(model: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_TEST_SCORE_DELAY", "0.15")  # a window every 0.1 s; scoring keeps up with ~1 in 2
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    clip = support.write_clip(tmp_path / "cam.mp4", support.bright_middle(50, 10, 30))
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", str(clip), "--checkpoint", str(model),
                           "--window", "0.1", "--realtime", "--json", "--queue", "1", "--batch-size", "1")
    assert code == 0, err
    stream = _lines(out)[-1]["streams"][0]
    assert stream["windows"] == 25 and stream["dropped_windows"] > 0
    assert stream["scored"] + stream["dropped_windows"] == stream["windows"]
    assert stream["dropped_frames"] == 2 * stream["dropped_windows"]  # 2 new frames per 0.1 s window
    with open_store(db) as store:
        summary = store.video_summaries(_lines(out)[-1]["run_id"])[0]["values"]
    assert summary["dropped_frames"] == stream["dropped_frames"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    delay = 0.0
    got: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        type(self).got.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _receiver(delay: float) -> tuple[http.server.ThreadingHTTPServer, type]:
    handler = type("Handler", (_Receiver,), dict(delay=delay, got=[]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_webhook_hanging_or_dead_never_slows_scoring_and_keeps_alerts(model: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from vkit.core.store.models import Alert

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    clip = support.write_clip(tmp_path / "cam.mp4", [220 if (i // 10) % 2 else 30 for i in range(80)])  # 4 events
    fast, fast_handler = _receiver(0.0)
    slow, _ = _receiver(30.0)  # hangs far longer than the watch lasts
    try:
        runs = {}
        for name, url in (("fast", f"http://127.0.0.1:{fast.server_port}/hook"),
                          ("slow", f"http://127.0.0.1:{slow.server_port}/hook"), ("dead", "http://127.0.0.1:9/hook")):
            began = time.monotonic()
            code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", str(clip), "--checkpoint", str(model),
                                   "--window", WINDOW, "--json", "--webhook", url, "--webhook-timeout", "1",
                                   "--webhook-retries", "1")
            assert code == 0, err
            runs[name] = (_lines(out)[-1], time.monotonic() - began)
    finally:
        fast.shutdown()
        slow.shutdown()
    with open_store(db) as store, store.session(write=False) as session:
        import sqlalchemy as sa

        alerts = {name: [(a.action, a.status) for a in session.scalars(
            sa.select(Alert).where(Alert.run_id == run["run_id"]).order_by(Alert.id))] for name, (run, _) in runs.items()}
    assert alerts["fast"] == [("open", "delivered"), ("close", "delivered")] * 4
    assert len(fast_handler.got) == 8 and {a["action"] for a in fast_handler.got} == {"open", "close"}
    assert len(alerts["slow"]) == 8 and all(status in ("pending", "failed") for _, status in alerts["slow"])
    assert len(alerts["dead"]) == 8 and all(status in ("pending", "failed") for _, status in alerts["dead"])
    for name in ("slow", "dead"):  # scoring as fast as without a webhook: only the stop grace is added at the end
        run, took = runs[name]
        assert run["streams"][0]["scored"] == 16 and run["alerts"]["delivered"] == 0
        assert took < runs["fast"][1] + 3.5, (name, took, runs["fast"][1])


def test_bad_sources_and_options_are_one_line_errors(model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    cases = [
        (["watch", "demo-watch", str(tmp_path / "missing.mp4"), "--checkpoint", str(model)], "no such file"),
        (["watch", "demo-watch", "gopher://x/y", "--checkpoint", str(model)], "scheme 'gopher'"),
        (["watch", "demo-watch", "rtsp://bob:pw@cam/live", "--checkpoint", str(model), "--ui", "nonsense"],
         "expected HOST:PORT"),
        (["watch", "demo-watch", "rtsp://cam/live", "--checkpoint", str(model), "--webhook", "ftp://x"],
         "expected an http"),
        (["watch", "demo-watch", "rtsp://cam/live", "--checkpoint", str(model)], "pass --window SECONDS"),
    ]
    for args, expected in cases:
        code, out, err = _vkit(capsys, *_base(db), *args)
        assert code != 0 and expected in err, (args, err)
        assert "pw" not in err and "Traceback" not in err
    with open_store(db) as store:
        assert store.list_runs(kind="watch") == []  # refused before any run row


def test_followed_file_is_scored_while_it_grows(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fixtures.streams import _remux

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    clip = support.write_clip(tmp_path / "cam.mp4", support.bright_middle())
    growing = tmp_path / "recording.ts"
    stop = threading.Event()
    writer = threading.Thread(target=_remux, args=(clip, str(growing)),
                              kwargs=dict(realtime=True, stop=stop, drop_after=None), daemon=True)
    writer.start()
    while not growing.exists():
        time.sleep(0.01)
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", str(growing), "--checkpoint", str(model),
                           "--window", WINDOW, "--follow", "--json", "--for", "3.5")
    stop.set()
    writer.join(5)
    assert code == 0, err
    run = _lines(out)[-1]
    assert run["streams"][0]["frames"] >= 36 and run["streams"][0]["scored"] >= 7, run  # read as it was written
    assert [(x["kind"], x["start"]) for x in _lines(out) if x["type"] == "event" and x["action"] == "open"] == \
        [("bright", 0.75)]


def test_live_page_is_started_for_the_run(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    clip = support.write_clip(tmp_path / "cam.mp4", support.bright_middle())
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", str(clip), "--checkpoint", str(model),
                           "--window", WINDOW, "--ui", "127.0.0.1:0")
    assert code == 0, err
    assert "live page: http://127.0.0.1:" in err
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", str(clip), "--checkpoint", str(model),
                           "--window", WINDOW, "--ui", "0.0.0.0:0")
    assert code != 0 and "needs --ui-token" in err


def test_class_summary_counts_low_learners_under_pseudonyms(model: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from vkit.plugins.education.privacy import learner_hash

    monkeypatch.setenv("VKIT_LEARNER_SALT", "test-salt")
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    ana = support.write_clip(tmp_path / "lesson" / "s1" / "ana.mp4", [30] * 40)          # low all along
    ben = support.write_clip(tmp_path / "lesson" / "s1" / "ben.mp4", [220] * 40, seed=1)  # engaged
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-class", str(ana), str(ben), "--checkpoint", str(model),
                           "--window", WINDOW, "--realtime", "--json", "--summary-every", "0.5",
                           "--summary-span", "1")
    assert code == 0, err
    summaries = [x for x in _lines(out) if x["type"] == "summary"]
    assert summaries and summaries[-1]["text"] == "1 of 2 learners low for the last 1 second"
    assert summaries[-1]["group"] == "s1" and summaries[-1]["low_learners"] == [f"pseudo-{learner_hash('ana', 'test-salt')}"]
    assert "ana" not in out and "ben" not in out  # learners only as pseudonyms
    run_id = _lines(out)[-1]["run_id"]
    with open_store(db) as store:
        paths = sorted(v["path"] for v in store.get_videos())
        rows = store.session(write=False)
        import sqlalchemy as sa

        from vkit.core.store.models import LiveSummary

        with rows as session:
            stored = session.scalars(sa.select(LiveSummary.text).where(LiveSummary.run_id == run_id)).all()
    assert paths == sorted(f"live://s1/pseudo-{learner_hash(n, 'test-salt')}" for n in ("ana", "ben"))
    assert stored[-1] == summaries[-1]["text"]
    monkeypatch.delenv("VKIT_LEARNER_SALT")
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-class", str(ana), "--checkpoint", str(model),
                           "--window", WINDOW)
    assert code != 0 and "VKIT_LEARNER_SALT" in err


def test_precision_auto_gates_on_the_file_sources(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_CACHE", str(tmp_path / "cache"))  # the gate's decision is cached per model and CPU
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    clip = support.write_clip(tmp_path / "cam.mp4", support.bright_middle())
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", str(clip), "--checkpoint", str(model),
                           "--window", WINDOW, "--precision", "auto", "--json")
    assert code == 0, err
    run = _lines(out)[-1]
    with open_store(db) as store:
        used = store.get_run(run["run_id"])["config"]["precision_used"]
    assert used["requested"] == "auto" and used["precision"] in ("fp32", "bf16"), used
    assert run["streams"][0]["scored"] == 8
    monkeypatch.setenv("VKIT_CACHE", str(tmp_path / "cache2"))  # no cached decision: a gate is needed
    from vkit.core.precision import cpu

    # a CPU with native bf16, so auto has a candidate to gate (on one without, auto is fp32 with no gate at all)
    monkeypatch.setattr(cpu, "capabilities", lambda: cpu.Capabilities("test CPU", ("avx512_bf16",), True, "", False,
                                                                      "no vnni (simulated)"))
    code, out, err = _vkit(capsys, *_base(db), "watch", "demo-watch", "tcp://127.0.0.1:9", "--checkpoint",
                           str(model), "--window", WINDOW, "--precision", "auto", "--for", "3")
    assert code != 0 and "needs validation clips" in err
