"""The installed ``vkit watch`` stopped by SIGTERM (open events and the run closed ``interrupted``) and by ``kill -9``
(committed rows kept; the next command reaps the run and its open events ``interrupted``)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parents[1] / "workflows"
sys.path[:0] = [str(SUPPORT), str(Path(__file__).parents[1])]
import test_watch_support as support  # noqa: E402
from fixtures.streams import TcpPublisher  # noqa: E402

from vkit.core.store import open_store  # noqa: E402

VKIT = str(Path(sys.executable).with_name("vkit"))


def _start(tmp_path: Path, url: str, model: Path, db: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]),
               VKIT_NO_AUTOLOAD="1")
    return subprocess.Popen([VKIT, "--db", db, "--plugin", "test_watch_support", "watch", "demo-watch", url,
                             "--checkpoint", str(model), "--window", "0.25", "--json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_open(proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    """The first JSON line announcing an open event (the event is committed by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        data = json.loads(line)
        if data.get("type") == "event" and data["action"] == "open" and data["kind"] == "bright":
            return data
    proc.kill()
    raise AssertionError(f"no open event; stderr: {proc.stderr.read()[-2000:]}")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_stopped_watch_closes_open_events_and_its_run(how: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    model = support.make_checkpoint(tmp_path / "model.safetensors")
    clip = support.write_clip(tmp_path / "cam.mp4", [220] * 200)  # bright throughout: one event stays open
    with TcpPublisher(clip, clients=1) as publisher:
        proc = _start(tmp_path, publisher.url, model, db)
        opened = _wait_open(proc)
        proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=60)
    with open_store(db) as store:
        if how == "SIGTERM":
            assert proc.returncode != 0
            run = store.get_run(opened["run_id"])
            assert run["status"] == "interrupted" and "Terminated" in run["error"], run
            lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            assert any(x.get("action") == "close" and x.get("status") == "interrupted" for x in lines), out
        else:
            assert proc.returncode == -signal.SIGKILL
            assert store.get_run(opened["run_id"])["status"] == "running"
            assert [e["status"] for e in store.run_events(opened["run_id"])] == ["open"]  # committed rows stay
            assert store.video_scores(opened["run_id"])
            store.reap_stale_runs()  # what the next vkit command does first
            run = store.get_run(opened["run_id"])
            assert run["status"] == "interrupted" and "ended without finishing" in run["error"]
        events = store.run_events(opened["run_id"])
        assert [(e["kind"], e["status"]) for e in events] == [("bright", "interrupted")], events
        assert events[0]["closed_at"] is not None
