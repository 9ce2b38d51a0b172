"""`vkit serve` in-process (httpx over ASGI, one event loop): concurrent clients each get their own prediction, equal
to `vkit predict`'s; bad uploads get a 4xx with the reason and the server keeps serving; a reload under load drops
nothing; a broken replica's requests are retried or answered 503; the token is required off localhost; predictions
are stored as a `serve` run written in batches; metrics, runs and score jobs answer.

One tiny medical-diagnosis run is trained once for the module (a few seconds).
"""
from __future__ import annotations

import asyncio
import json
import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from vkit.core.store import open_store
from vkit.registry.errors import ConfigError
from vkit.workflows.serve.app import build_app
from vkit.workflows.serve.service import ServeSettings

TASK = "medical-diagnosis"
TOKEN = "s" * 24


@pytest.fixture(scope="module")
def medical(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained tiny run, its store, its test scans under a data root, and a second checkpoint (other weights)."""
    from vkit.core.checkpoint import load_meta, save_checkpoint
    from vkit.workflows.plugin_check import run_task_smoke

    tmp = tmp_path_factory.mktemp("serve")
    result = run_task_smoke(TASK, tmp_path=tmp)
    url = f"sqlite:///{tmp / 'vkit.db'}"
    data = tmp / "data" / TASK
    scans = sorted(str(p.relative_to(data)) for p in (data / "imagesTs").iterdir())[:4]
    store = open_store(url)
    weights = Path(next(a["path"] for a in store.run_artifacts(result.run_id) if a["kind"] == "checkpoint"))
    store.close()
    from safetensors.torch import load_file

    state = {k: v + 0.05 if v.is_floating_point() else v for k, v in load_file(weights).items()}
    meta = {k: v for k, v in load_meta(weights).items() if k not in ("sha256", "bytes", "tensors", "format")}
    other = save_checkpoint(state, tmp / "other" / "model.safetensors", meta=meta)
    return dict(url=url, run=str(result.run_id), data=data, scans=scans, other=str(other), tmp=tmp)


@asynccontextmanager
async def serving(settings: ServeSettings):  # noqa: ANN201 - an async context manager
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
            yield app, client


def _settings(medical: dict[str, Any], **extra: Any) -> ServeSettings:
    return ServeSettings(checkpoints=[medical["run"]], db_url=medical["url"], data_root=medical["data"],
                         flush_seconds=0.2, **extra)


def _upload(medical: dict[str, Any], scan: str, name: str | None = None) -> dict[str, Any]:
    return dict(files={"file": (name or Path(scan).name, (medical["data"] / scan).read_bytes())})


def test_concurrent_clients_get_their_own_results_equal_to_vkit_predict(medical: dict[str, Any]) -> None:
    from vkit.workflows.predict import predict_task

    _, rows = predict_task(TASK, medical["run"], [str(medical["data"] / s) for s in medical["scans"]],
                           db_url=medical["url"])
    expected = {Path(s).name: row["labelled"] for s, row in zip(medical["scans"], rows)}
    classes = {Path(s).name: row["class"] for s, row in zip(medical["scans"], rows)}

    async def main() -> tuple[list[httpx.Response], list[str], Any]:
        async with serving(_settings(medical, max_batch=4, max_wait_ms=20)) as (app, client):
            calls, asked = [], []
            for round_ in range(3):
                for scan in medical["scans"]:                      # uploads and data-root paths, interleaved
                    if round_ % 2:
                        calls.append(client.post(f"/v1/{TASK}/predict", json={"path": scan}))
                    else:
                        calls.append(client.post(f"/v1/{TASK}/predict", **_upload(medical, scan)))
                    asked.append(Path(scan).name)
            answers = await asyncio.gather(*calls)
            service = app.state.service
            assert service.recorder.wait_written(len(calls))
            return answers, asked, (service.batchers[TASK].stats, service.runs[TASK])

    answers, asked, (stats, run_id) = asyncio.run(main())
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers if a.status_code != 200]
    for name, answer in zip(asked, answers):
        body = answer.json()
        assert Path(body["item"]).name == name and body["class"] == classes[name]
        assert body["probabilities"] == pytest.approx(expected[name], abs=1e-5), name     # no cross-talk
        assert body["decision"].startswith("positive if P(positive) >=") and len(body["model_sha256"]) == 64
    assert max(stats.sizes) > 1, f"requests were never batched together: {stats.sizes}"
    store = open_store(medical["url"], read_only=True)
    run = store.get_run(run_id)
    assert run["kind"] == "serve" and run["status"] == "finished" and run["model_sha256"] == answers[0].json()["model_sha256"]
    stored = store.run_predictions(run_id, "serve")
    assert len(stored) == len(answers) and {r["values"]["source"] for r in stored} == {"upload", "path"}
    assert {r["item_id"].split(":", 1)[0] for r in stored} == {a.json()["request_id"] for a in answers}
    store.close()


def test_bad_requests_get_a_4xx_with_the_reason_and_the_server_keeps_serving(medical: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    outside = tmp_path / "secret.nii.gz"
    shutil.copyfile(medical["data"] / medical["scans"][0], outside)
    (medical["data"] / "escape.nii.gz").unlink(missing_ok=True)
    (medical["data"] / "escape.nii.gz").symlink_to(outside)

    async def main() -> dict[str, httpx.Response]:
        async with serving(_settings(medical, max_upload_mb=0.05)) as (_, client):
            predict = f"/v1/{TASK}/predict"
            return dict(
                corrupt=await client.post(predict, files={"file": ("scan.nii.gz", b"\x1f\x8b not really gzip" * 20)}),
                kind=await client.post(predict, files={"file": ("run.sh", b"#!/bin/sh\nrm -rf /")}),
                empty=await client.post(predict, files={"file": ("a.nii.gz", b"")}),
                large=await client.post(predict, files={"file": ("big.nii.gz", b"\0" * 200_000)}),
                outside=await client.post(predict, json={"path": "../../../../etc/passwd"}),
                symlink=await client.post(predict, json={"path": "escape.nii.gz"}),
                missing=await client.post(predict, json={"path": "imagesTs/none.nii.gz"}),
                no_field=await client.post(predict, files={"other": ("a.nii.gz", b"x")}),
                bad_json=await client.post(predict, content=b"{", headers={"content-type": "application/json"}),
                task=await client.post("/v1/no-such-task/predict", json={"path": medical["scans"][0]}),
                good=await client.post(predict, **_upload(medical, medical["scans"][0], "../../x; rm -rf ~.nii.gz")),
            )

    got = asyncio.run(main())
    status = {k: r.status_code for k, r in got.items()}
    assert status == dict(corrupt=422, kind=422, empty=422, large=413, outside=403, symlink=403, missing=422,
                          no_field=400, bad_json=400, task=404, good=200), {k: r.text for k, r in got.items()}
    assert "scan.nii.gz: cannot be read" in got["corrupt"].json()["detail"]
    assert "unsupported file type" in got["kind"].json()["detail"]
    assert "outside the server's --data-root" in got["outside"].json()["detail"]
    assert got["good"].json()["item"] == "../../x; rm -rf ~.nii.gz"                   # a name, shown, never a path
    (medical["data"] / "escape.nii.gz").unlink()


def test_a_reload_under_load_drops_nothing_and_each_row_names_its_model(medical: dict[str, Any]) -> None:
    async def main() -> tuple[list[httpx.Response], httpx.Response, list[httpx.Response], Any]:
        async with serving(_settings(medical, max_batch=2)) as (app, client):
            scan = medical["scans"][0]
            load = [client.post(f"/v1/{TASK}/predict", json={"path": scan}) for _ in range(24)]
            pending = [asyncio.ensure_future(c) for c in load]
            await asyncio.sleep(0.05)
            reload = await client.post("/v1/admin/reload", json={"task": TASK, "checkpoint": medical["other"]})
            during = await asyncio.gather(*pending)
            after = await asyncio.gather(*[client.post(f"/v1/{TASK}/predict", json={"path": scan}) for _ in range(3)])
            assert app.state.service.recorder.wait_written(27)
            return during, reload, after, app.state.service.runs[TASK]

    during, reload, after, new_run = asyncio.run(main())
    assert reload.status_code == 200, reload.text
    swap = reload.json()
    assert swap["model_sha256"] != swap["previous_sha256"] and swap["run_id"] == new_run
    assert [r.status_code for r in during + after] == [200] * 27
    assert {r.json()["model_sha256"] for r in during} <= {swap["previous_sha256"], swap["model_sha256"]}
    assert {r.json()["model_sha256"] for r in after} == {swap["model_sha256"]}
    store = open_store(medical["url"], read_only=True)
    rows = {run: store.run_predictions(run, "serve") for run in (swap["previous_run_id"], swap["run_id"])}
    assert sum(map(len, rows.values())) == 27                                           # every request stored once
    for run, stored in rows.items():
        assert {r["values"]["sha256"] for r in stored} <= {store.get_run(run)["model_sha256"]}
    assert store.get_run(swap["previous_run_id"])["status"] == "finished"
    store.close()


def test_a_broken_replica_is_retried_or_answered_503(medical: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[list[int], list[int]]:
        async with serving(_settings(medical, replicas=2, request_timeout=20)) as (app, client):
            batcher = app.state.service.batchers[TASK]
            healthy = batcher.replicas[1]

            def killed(items: list[Any]) -> list[Any]:
                raise RuntimeError("replica process gone")

            batcher.replicas = [killed, healthy]                          # replica 0 dies mid-service
            batcher.cooldown = 0.5
            calls = [client.post(f"/v1/{TASK}/predict", json={"path": medical["scans"][0]}) for _ in range(8)]
            retried = [r.status_code for r in await asyncio.gather(*calls)]
            batcher.replicas = [killed, killed]                           # every replica dead
            batcher.cooldown = 0.01
            dead = await asyncio.gather(*[client.post(f"/v1/{TASK}/predict", json={"path": medical["scans"][0]})
                                          for _ in range(3)])
            assert all("prediction failed, retry" in r.json()["detail"] for r in dead)
            return retried, [r.status_code for r in dead]

    retried, dead = asyncio.run(asyncio.wait_for(main(), 60))
    assert set(retried) <= {200, 503} and retried.count(200) >= 4, retried
    assert dead == [503, 503, 503]


class _KillsItsLoader:
    """Unpickled in a loader process, this ends it at once (as a kill -9 or the OOM killer would)."""

    name = "killer.nii.gz"

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        import os

        return os._exit, (9,)


def test_a_killed_loader_process_is_replaced_and_its_request_retried_or_answered_503(medical: dict[str, Any]) -> None:
    import os
    import signal

    from vkit.workflows.serve.loaders import LoaderFailed
    from vkit.workflows.serve.models import Input

    async def main() -> tuple[int, int, str, int, int]:
        async with serving(_settings(medical, loaders=1, request_timeout=60)) as (app, client):
            service = app.state.service
            [pid] = service.loaders.pids()
            os.kill(pid, signal.SIGKILL)                                  # killed between requests
            after_kill = await client.post(f"/v1/{TASK}/predict", json={"path": medical["scans"][0]})
            restarts = service.loaders.restarts
            served = service.tasks[TASK].replicas[0]
            [on_thread] = served.predict([Input(path=str(medical["data"] / medical["scans"][0]), name="x")])
            assert after_kill.json()["probabilities"] == pytest.approx(on_thread["probabilities"], abs=1e-6)
            with pytest.raises(LoaderFailed, match="the loader process reading 'killer.nii.gz' died") as failed:
                await asyncio.wait_for(service.loaders.load(TASK, served.sha256, served.trained.config,
                                                            _KillsItsLoader()), 60)   # dies on both tries
            again = await client.post(f"/v1/{TASK}/predict", json={"path": medical["scans"][1]})
            health = (await client.get("/healthz")).json()
            return after_kill.status_code, restarts, str(failed.value), again.status_code, health["loaders"]["restarts"]

    after_kill, restarts, reason, again, total = asyncio.run(asyncio.wait_for(main(), 120))
    assert after_kill == 200 and restarts == 1                           # retried on a fresh loader process
    assert again == 200 and total == 3, reason                           # the pool recovered after two more deaths


def test_the_token_is_required_off_localhost(medical: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"bound to '0.0.0.0' .* needs a bearer token"):
        ServeSettings(checkpoints=[medical["run"]], host="0.0.0.0")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        ServeSettings(checkpoints=[medical["run"]], host="0.0.0.0", token="short")

    async def main() -> dict[str, int]:
        async with serving(_settings(medical, host="0.0.0.0", token=TOKEN)) as (_, client):
            body = {"path": medical["scans"][0]}
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            return dict(
                none=(await client.post(f"/v1/{TASK}/predict", json=body)).status_code,
                wrong=(await client.post(f"/v1/{TASK}/predict", json=body,
                                         headers={"Authorization": "Bearer " + "x" * 24})).status_code,
                right=(await client.post(f"/v1/{TASK}/predict", json=body, headers=bearer)).status_code,
                metrics=(await client.get("/metrics")).status_code,
                docs=(await client.get("/docs")).status_code,
                health=(await client.get("/healthz")).status_code,
            )

    assert asyncio.run(main()) == dict(none=401, wrong=401, right=200, metrics=401, docs=401, health=200)


def test_metrics_runs_and_score_jobs_answer(medical: dict[str, Any]) -> None:
    async def main() -> dict[str, httpx.Response]:
        async with serving(_settings(medical)) as (app, client):
            await client.post(f"/v1/{TASK}/predict", json={"path": medical["scans"][0]})
            run_id = app.state.service.runs[TASK]
            assert app.state.service.recorder.wait_written(1)
            return dict(
                metrics=await client.get("/metrics"),
                run=await client.get(f"/v1/runs/{run_id}"),
                no_run=await client.get("/v1/runs/99999"),
                score=await client.post(f"/v1/{TASK}/score", json={"path": "imagesTs"}),   # medical cannot score
                recommend=await client.get("/v1/recommendation/users/u1"),
                docs=await client.get("/openapi.json"),
            )

    got = asyncio.run(main())
    text = got["metrics"].text
    assert 'vkit_serve_requests_total{endpoint="/v1/{task}/predict",method="POST",status="200"} 1.0' in text
    assert "vkit_serve_batch_size_bucket" in text and 'vkit_serve_queue_depth{task="medical-diagnosis"}' in text
    assert 'vkit_serve_model_info{precision="fp32",replicas="1",sha256="' in text
    run = got["run"].json()
    assert run["kind"] == "serve" and run["status"] == "running" and run["predictions"] == 1
    assert got["no_run"].status_code == 404
    assert got["score"].status_code == 404 and "does not declare the 'score' capability" in got["score"].text
    assert got["recommend"].status_code == 404
    paths = json.loads(got["docs"].text)["paths"]
    assert {"/v1/{task}/predict", "/v1/{task}/score", "/v1/runs/{run_id}", "/v1/admin/reload", "/metrics",
            "/healthz", "/v1/recommendation/users/{user_id}"} <= set(paths)
    assert set(paths["/v1/{task}/predict"]["post"]["requestBody"]["content"]) == {"multipart/form-data",
                                                                                  "application/json"}


def test_the_installed_command_serves_and_its_docs_open_in_headless_chromium(medical: dict[str, Any]) -> None:
    """One real `vkit serve` (uvicorn) process: a prediction over HTTP, /docs rendered offline by Chromium, and a
    SIGTERM that closes the serve run `finished` with its rows written."""
    import importlib.util
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    spec = importlib.util.spec_from_file_location("report_browser", Path(__file__).with_name("test_report_browser.py"))
    browser = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser)  # the DevTools client of the report's browser test
    if browser.CHROMIUM is None:
        pytest.skip("headless Chromium not installed: run `make chromium`")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    vkit = shutil.which("vkit") or str(Path(sys.executable).with_name("vkit"))
    server = subprocess.Popen([vkit, "--db", medical["url"], "serve", "--checkpoint", medical["run"], "--port",
                               str(port), "--data-root", str(medical["data"])], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=dict(os.environ, VKIT_DISABLE_PLUGINS="demo"))
    base = f"http://127.0.0.1:{port}"
    tools = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.poll() else "no start"
            time.sleep(0.2)
        answer = httpx.post(f"{base}/v1/{TASK}/predict", json={"path": medical["scans"][0]}, timeout=60)
        assert answer.status_code == 200 and answer.json()["class"] in ("negative", "positive")
        tools = browser.DevTools(medical["tmp"] / "profile")
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            tools.send(f"{domain}.enable", session=session)
        tools.send("Page.navigate", {"url": f"{base}/docs"}, session=session)
        tools.wait_for("Page.loadEventFired")
        found = None
        for _ in range(150):
            found = tools.send("Runtime.evaluate", {"expression": "Array.from(document.querySelectorAll("
                               "'.opblock-summary-path')).map(e => e.textContent).join(' ')", "returnByValue": True},
                               session=session)["result"].get("value")
            if found and "/v1/{task}/predict" in found:
                break
            time.sleep(0.1)
        assert found and "/v1/{task}/predict" in found and "/v1/admin/reload" in found, found
        requests = [e["params"]["request"]["url"] for e in tools.events if e.get("method") == "Network.requestWillBeSent"]
        failed = [e["params"] for e in tools.events if e.get("method") == "Network.loadingFailed"]
        assert not failed, failed
        assert requests and all(url.startswith(base) or url.startswith("data:") for url in requests), requests  # offline
    finally:
        if tools is not None:
            tools.close()
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert server.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal after a graceful stop
    store = open_store(medical["url"], read_only=True)
    run = store.list_runs(kind="serve", limit=1)[0]
    assert run["status"] == "finished" and len(store.run_predictions(run["id"], "serve")) == 1, (run, output)
    store.close()


def _serve_runs(medical: dict[str, Any]) -> list[int]:
    store = open_store(medical["url"], read_only=True)
    try:
        return [r["id"] for r in store.list_runs(kind="serve", limit=10_000)]
    finally:
        store.close()


def test_bad_checkpoints_refuse_to_start_before_any_serve_run_is_recorded(medical: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    from vkit.registry.errors import CheckpointError

    foreign = tmp_path / "x3d_s.safetensors"
    foreign.write_bytes(b"not ours")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    folder = tmp_path / "emptydir"
    folder.mkdir()
    before = _serve_runs(medical)
    expected = r"expected a run id or a vkit checkpoint \(a \.safetensors with its \.json sidecar written by vkit run\)"
    cases = {
        (medical["run"], medical["run"]): r"two checkpoints of task 'medical-diagnosis'.*serve one model per task",
        (medical["run"], medical["other"]): r"two checkpoints of task 'medical-diagnosis'",
        (medical["run"], str(foreign)): expected,
        (str(notes),): expected,
        (str(folder),): r"emptydir. is a folder, not a checkpoint file \(expected a run id or a \.safetensors file\)",
    }
    for refs, pattern in cases.items():
        with pytest.raises((ConfigError, CheckpointError), match=pattern) as err:
            build_app(ServeSettings(checkpoints=list(refs), db_url=medical["url"]))
        assert "metadata file" not in str(err.value) and "not a regular file" not in str(err.value), str(err.value)
        assert _serve_runs(medical) == before, (refs, str(err.value))                  # no run row, not even failed


def test_reload_never_reveals_server_paths_and_speaks_api(medical: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "exists.safetensors").write_bytes(b"x")

    async def main() -> dict[str, httpx.Response]:
        async with serving(_settings(medical)) as (_, client):
            reload = "/v1/admin/reload"
            return dict(
                passwd=await client.post(reload, json={"task": TASK, "checkpoint": "/etc/passwd"}),
                nothing=await client.post(reload, json={"task": TASK, "checkpoint": "/no/such/file.safetensors"}),
                exists=await client.post(reload, json={"task": TASK, "checkpoint": str(tmp_path / "exists.safetensors")}),
                run=await client.post(reload, json={"task": TASK, "checkpoint": 99999}),
                good=await client.post(reload, json={"task": TASK, "checkpoint": medical["other"]}),
            )

    got = asyncio.run(main())
    assert {k: r.status_code for k, r in got.items()} == dict(passwd=422, nothing=422, exists=422, run=422, good=200)
    details = {k: r.json()["detail"] for k, r in got.items() if k != "good"}
    assert details["passwd"] == details["nothing"] == details["exists"], details      # existence cannot be probed
    for key, detail in details.items():
        assert "/etc" not in detail and "/no/such" not in detail and str(tmp_path) not in detail, detail
        assert ".json" not in detail and "--checkpoint" not in detail and "sqlite" not in detail, detail
        assert "still serving the previous model" in detail and "'checkpoint'" in detail, detail


def test_admin_routes_need_the_token_and_a_wrong_token_is_told_so(medical: dict[str, Any]) -> None:
    async def main() -> dict[str, httpx.Response]:
        async with serving(_settings(medical, token=TOKEN)) as (_, client):
            body = {"task": TASK, "checkpoint": "/etc/passwd"}
            return dict(
                none=await client.post("/v1/admin/reload", json=body),
                wrong=await client.post("/v1/admin/reload", json=body, headers={"Authorization": "Bearer " + "x" * 24}),
                right=await client.post("/v1/admin/reload", json=body, headers={"Authorization": f"Bearer {TOKEN}"}),
            )

    got = asyncio.run(main())
    assert {k: r.status_code for k, r in got.items()} == dict(none=401, wrong=401, right=422)
    assert "a bearer token is required" in got["none"].json()["detail"]
    assert "wrong token" in got["wrong"].json()["detail"] and "required" not in got["wrong"].json()["detail"]



def _answers(medical: dict[str, Any], **calls: Any) -> dict[str, httpx.Response]:
    """Each ``name=(method, url, kwargs)`` asked of one in-process server."""
    async def main() -> dict[str, httpx.Response]:
        async with serving(_settings(medical)) as (_, client):
            return {name: await client.request(method, url, **kw) for name, (method, url, kw) in calls.items()}

    return asyncio.run(main())


def test_a_malformed_path_or_query_is_a_400_with_a_string_detail(medical: dict[str, Any]) -> None:
    got = _answers(medical, run=("GET", "/v1/runs/abc", {}), k=("GET", "/v1/recommendation/users/u1?k=many", {}))
    assert got["run"].status_code == 400 and got["k"].status_code == 400, (got["run"].text, got["k"].text)
    assert got["run"].json() == {"detail": "run_id 'abc': expected an integer"}
    assert got["k"].json() == {"detail": "k 'many': expected an integer"}


def test_openapi_json_is_counted_under_its_route(medical: dict[str, Any]) -> None:
    got = _answers(medical, openapi=("GET", "/openapi.json", {}), docs=("GET", "/docs", {}),
                   metrics=("GET", "/metrics", {}))
    assert 'endpoint="/openapi.json",method="GET",status="200"' in got["metrics"].text
    assert 'endpoint="/docs",method="GET",status="200"' in got["metrics"].text
    assert "(unmatched)" not in got["metrics"].text


def test_input_errors_name_the_field_and_the_file_once(medical: dict[str, Any]) -> None:
    predict = f"/v1/{TASK}/predict"
    got = _answers(medical, field=("POST", predict, dict(json={"pth": medical["scans"][0]})),
                   null=("POST", predict, dict(json={"path": None})),
                   corrupt=("POST", predict, dict(files={"file": ("scan.nii.gz", b"\x1f\x8b not gzip" * 20)})))
    field = got["field"].json()["detail"]
    assert got["field"].status_code == 400 and field == ("the JSON body needs the field 'path' (a file under the "
                                                         "server's --data-root); got the field(s) 'pth'"), field
    assert got["null"].status_code == 422 and "'path' must be a non-empty string, got null" in got["null"].text
    corrupt = got["corrupt"].json()["detail"]
    assert got["corrupt"].status_code == 422 and corrupt.startswith("scan.nii.gz: cannot be read: "), corrupt
    assert "cannot be read: scan.nii.gz" not in corrupt and "<cases>" not in corrupt, corrupt   # the name once
    assert "case 'upload'" not in corrupt and "predict)" not in corrupt, corrupt
