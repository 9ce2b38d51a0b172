"""``Store.reap_stale_runs``: runs whose process died (SIGKILL) become ``interrupted``, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from vkit.core.store import open_store
from vkit.core.store.models import Run

# Starts two runs, closes the first, prints both ids and waits to be killed.
_CHILD = """
import sys, time
from vkit.core.store import open_store
store = open_store(sys.argv[1])
done = store.start_run("t", "p", {}, seed=1)
store.finish_run(done)
left = store.start_run("t", "p", {}, seed=1)
print(done, left, flush=True)
time.sleep(60)
"""


def _killed_runs(url: str) -> tuple[int, int, int]:
    """``(finished run, running run, pid)`` of a child process that started them and was then SIGKILLed."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert line, f"child failed: {err}"
    done, left = map(int, line.split())
    return done, left, proc.pid


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _set(store, run_id: int, **values) -> None:
    with store.session() as session:
        session.execute(sa.update(Run).where(Run.id == run_id).values(**values))


def test_start_run_records_host_and_pid(store):
    run = store.get_run(store.start_run("t", "p", {}, seed=1))
    assert (run["host"], run["pid"]) == (socket.gethostname(), os.getpid())


def test_sigkilled_run_is_marked_interrupted(store, store_url):
    done, killed, pid = _killed_runs(store_url)
    mine = store.start_run("t", "p", {}, seed=1)                 # this (live) process
    elsewhere = store.start_run("t", "p", {}, seed=1)
    _set(store, elsewhere, host="another-host.example", pid=pid)  # same dead pid, other machine: cannot know
    no_pid = store.start_run("t", "p", {}, seed=1)
    _set(store, no_pid, pid=None)                                 # started before schema 0003
    assert store.get_run(killed)["status"] == "running" and store.get_run(killed)["pid"] == pid

    assert store.reap_stale_runs() == [killed]
    run = store.get_run(killed)
    host = socket.gethostname()
    assert run["status"] == "interrupted" and run["finished_at"] >= run["started_at"]
    assert run["error"] == (f"process {pid} on {host} ended without finishing the run (killed?); "
                            f"`vkit run t --resume {killed}` continues it from its last finished epoch")
    assert store.get_run(done)["status"] == "finished" and store.get_run(done)["error"] is None
    assert [store.get_run(i)["status"] for i in (mine, elsewhere, no_pid)] == ["running"] * 3
    assert store.reap_stale_runs() == []                          # idempotent
    assert [r["id"] for r in store.list_runs(status="interrupted")] == [killed]


def test_live_pid_of_another_user_is_left_running(store, monkeypatch):
    run_id = store.start_run("t", "p", {}, seed=1)
    _set(store, run_id, pid=_dead_pid())

    def kill(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    assert store.reap_stale_runs() == []
    assert store.get_run(run_id)["status"] == "running"


def test_read_only_store_reaps_nothing(store, store_url):
    run_id = store.start_run("t", "p", {}, seed=1)
    _set(store, run_id, pid=_dead_pid())
    with open_store(store_url, read_only=True) as reader:
        assert reader.reap_stale_runs() == []
    assert store.get_run(run_id)["status"] == "running"
    assert store.reap_stale_runs() == [run_id]


def test_cli_runs_list_and_show_report_interrupted(store, store_url):
    from vkit.workflows.cli import cli

    _, killed, pid = _killed_runs(store_url)
    live = store.start_run("t", "p", {}, seed=1)
    runner = CliRunner()
    listed = runner.invoke(cli, ["--db", store_url, "runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {r["id"]: r["status"] for r in json.loads(listed.output)}[killed] == "interrupted"
    assert {r["id"]: r["status"] for r in json.loads(listed.output)}[live] == "running"
    table = runner.invoke(cli, ["--db", store_url, "runs", "list"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "interrupted" in table.output, table.output
    shown = runner.invoke(cli, ["--db", store_url, "runs", "show", str(killed), "--json"])
    assert shown.exit_code == 0, shown.output
    assert f"process {pid} on " in json.loads(shown.output)["run"]["error"]


def test_cli_runs_list_leaves_a_newer_store_alone(store, store_url):
    from vkit.workflows.cli import cli

    run_id = store.start_run("t", "p", {}, seed=1)
    _set(store, run_id, pid=_dead_pid())
    with store.session() as session:
        session.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    listed = CliRunner().invoke(cli, ["--db", store_url, "runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["status"] for r in json.loads(listed.output)] == ["running"]
