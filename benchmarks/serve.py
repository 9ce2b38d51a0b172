"""``vkit serve`` against its peers: requests/s and p50/p95 latency at 1, 8 and 32 concurrent clients.

Two models, trained once here on a few generated items with each task's default architecture:
medical-diagnosis (a 32³ CT-like volume per request, default TinyC3D) and education-engagement
(a 10-second 25 fps 160x120 webcam clip per request, 16 frames sampled, default TinyC3D).
Each request is a JSON ``{"path": ...}`` under the data root (the same for every server, so
uploads do not differ), a different file each time, round robin.

Servers, each a fresh process on 127.0.0.1, one model copy each:

- ``vkit serve``: FastAPI on uvicorn, the asyncio micro-batcher (``--max-batch 8``, ``--max-wait-ms 5``: waited
  only while other requests are loading, never by a lone client), the model in its fast inference form (BatchNorm
  folded, ``channels_last_3d``, as ``vkit score``), inputs loaded on threads (``--loaders 0``), predictions stored in
  batches as a ``serve`` run;
- ``vkit serve --loaders N`` (``--loaders``, default one per core; 0: no such row): the same, inputs read in N
  spawned loader processes instead of threads (off the serving process's GIL, at the cost of a process hop);
- ``plain``: FastAPI on uvicorn, one ``def`` endpoint that loads the file and calls the model itself
  (uvicorn's thread pool runs concurrent requests, no batching, nothing stored), the usual first version;
- ``ray-serve`` (``--ray``): Ray Serve (local cluster of this machine), one replica, ``@serve.batch``
  (8, 5 ms) over the same replica code as vkit serve; skipped with the reason when ``ray[serve]`` is absent;
- ``vkit predict``: the command once per file (process start, model load, predict, store), 1 client.

Clients are asyncio tasks of this process (httpx); each sends its next request when the last is answered.
Requests per cell: ``--requests`` per client count, at least 16 (warm-up of 4 not timed).
The table is followed by the issue's targets per task: at 8 clients, ``vkit serve``'s req/s over the plain
endpoint's (target >= 1.5) and its p95 over its single-client p95 (target <= 2); by Little's law the latter
needs 8-client throughput >= 4x single-client throughput, printed beside it.

    python benchmarks/serve.py --quick          # medical only, fewer requests
    python benchmarks/serve.py [--ray]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VKIT = shutil.which("vkit") or str(Path(sys.executable).with_name("vkit"))
SMALL_DATA = {
    "medical-diagnosis": ["train.epochs=1", "train.batch_size=4", "data.synthetic.n_train=8", "data.synthetic.n_val=4",
                          "data.synthetic.n_test=8", "compression.stages=[]"],
    "education-engagement": ["train.epochs=1", "train.batch_size=4", "data.synthetic.n_train=8",
                             "data.synthetic.n_val=4", "data.synthetic.n_test=4", "data.synthetic.clips_per_subject=2",
                             "data.synthetic.sessions=1", "data.synthetic.learners=1",
                             "data.synthetic.lesson_seconds=4"],
}

PLAIN = textwrap.dedent('''
    import sys, torch
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel
    from vkit.core.store import open_store
    from vkit.core.trained import load_trained
    from vkit.core.evaluation import predict
    from vkit.hooks.manager import get_plugin_manager

    url, ref, task_name, root, port = sys.argv[1:6]
    manager = get_plugin_manager(); task = manager.get_task(task_name)(); manager.register_components(require=task.plugin)
    trained = load_trained(ref, store=open_store(url), task=task)
    app = FastAPI()

    class Body(BaseModel):
        path: str

    @app.post("/v1/{task}/predict")
    def run(task: str, body: Body):
        dataset = task_obj.prediction_dataset(trained.config, [root + "/" + body.path])
        row = predict(trained.model, dataset, 1)[0]
        probs = torch.as_tensor(row["probs"]).tolist()
        return {"prediction": trained.decision.decide(probs), "probabilities": probs}

    task_obj = task
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
''')

RAY = textwrap.dedent('''
    import sys, time
    from ray import serve
    import ray
    from starlette.requests import Request

    url, ref, task_name, root, port = sys.argv[1:6]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(port)})

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Model:
        def __init__(self):
            from vkit.core.store import open_store
            from vkit.hooks.manager import get_plugin_manager
            from vkit.workflows.serve.models import load_replicas
            manager = get_plugin_manager()
            _, replicas = load_replicas(ref, store=open_store(url), manager=manager, replicas=1, stage=None,
                                        precision="fp32")
            self.replica = replicas[0]

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
        async def run(self, pairs):
            results = self.replica.predict_loaded(pairs)
            return [{k: v for k, v in r.items() if k != "_row"} for r in results]

        async def __call__(self, request: Request):
            import asyncio
            from vkit.workflows.serve.models import Input
            body = await request.json()
            item = Input(path=root + "/" + body["path"], name=body["path"])
            loaded = await asyncio.to_thread(self.replica.load, item)   # as vkit serve: load apart, batch the model
            return await self.run((item, loaded))

    serve.run(Model.bind(), route_prefix="/", blocking=False)
    print("READY", flush=True)
    while True:
        time.sleep(3600)
''')


def cpu_line() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"CPU: {model}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(task: str, tmp: Path) -> tuple[str, str, Path, list[str]]:
    """``(db url, run id, data root, request paths)`` of one small run of ``task``."""
    from vkit.core.store import open_store
    from vkit.workflows.plugin_check import run_task_smoke

    folder = tmp / task
    url = f"sqlite:///{folder / 'vkit.db'}"
    task_cls = __import__("vkit.hooks.manager", fromlist=["get_plugin_manager"]).get_plugin_manager().get_task(task)
    saved, task_cls.smoke_overrides = task_cls.smoke_overrides, tuple(SMALL_DATA[task])
    try:
        result = run_task_smoke(task, tmp_path=folder)
    finally:
        task_cls.smoke_overrides = saved
    store = open_store(url, read_only=True)
    store.close()
    if task == "medical-diagnosis":
        root = folder / "data" / task
        paths = sorted(str(p.relative_to(root)) for p in (root / "imagesTs").iterdir())
    else:
        from vkit.core.testing import make_video

        root = folder / "clips"
        paths = [str(make_video(root / f"clip{i:02d}.mp4", frames=250, size=(120, 160), fps=25, seed=i)
                     .relative_to(root)) for i in range(8)]
    return url, str(result.run_id), root, paths


def start(argv: list[str], port: int, ready: str, log: Path, timeout: float = 300) -> subprocess.Popen:
    """Start a server (output to ``log``) and wait until ``GET /ready`` answers 200 (``-/routes``: lists ``/``)."""
    import httpx

    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, VKIT_DISABLE_PLUGINS="demo"), start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[:3]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/{ready}", timeout=2)
            if answer.status_code == 200 and (ready != "-/routes" or '"/"' in answer.text):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"{argv[:3]} did not answer within {timeout} s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def load(url: str, paths: list[str], clients: int, requests: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    counter = iter(range(10**9))
    errors = 0

    async def client(http: httpx.AsyncClient, n: int, record: bool) -> None:
        nonlocal errors
        for _ in range(n):
            path = paths[next(counter) % len(paths)]
            began = time.perf_counter()
            answer = await http.post(url, json={"path": path})
            if answer.status_code != 200:
                errors += 1
            if record:
                latencies.append(time.perf_counter() - began)

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await asyncio.gather(*[client(http, 1, False) for _ in range(min(clients, 4))])       # warm-up
        each = max(1, requests // clients)
        began = time.perf_counter()
        await asyncio.gather(*[client(http, each, True) for _ in range(clients)])
        wall = time.perf_counter() - began
    latencies.sort()
    return dict(rps=len(latencies) / wall, p50=statistics.median(latencies) * 1000,
                p95=latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1000, errors=errors)


def predict_cli(url: str, ref: str, task: str, root: Path, paths: list[str], n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        began = time.perf_counter()
        subprocess.run([VKIT, "--db", url, "predict", task, "--checkpoint", ref, "--json", str(root / paths[i % len(paths)])],
                       check=True, capture_output=True, env=dict(os.environ, VKIT_DISABLE_PLUGINS="demo"))
        times.append(time.perf_counter() - began)
    times.sort()
    return dict(rps=n / sum(times), p50=statistics.median(times) * 1000, p95=times[-1] * 1000, errors=0)


def servers(task: str, url: str, ref: str, root: Path, tmp: Path, ray: bool, port: int,
            loaders: int = 0) -> list[tuple[str, list[str], str]]:
    """``(name, argv, readiness route)`` of each server of ``task`` on ``port``."""
    serve = [VKIT, "--db", url, "serve", "--checkpoint", ref, "--data-root", str(root), "--max-batch", "8",
             "--max-wait-ms", "5", "--port", str(port)]
    out = [("vkit serve", serve, "healthz")]
    if loaders:
        out.append((f"vkit serve --loaders {loaders}", [*serve, "--loaders", str(loaders)], "healthz"))
    (tmp / "plain_server.py").write_text(PLAIN)
    out.append(("plain FastAPI", [sys.executable, str(tmp / "plain_server.py"), url, ref, task, str(root), str(port)],
                "docs"))
    if ray:
        (tmp / "ray_server.py").write_text("import os\n" + RAY)
        out.append(("ray serve", [sys.executable, str(tmp / "ray_server.py"), url, ref, task, str(root), str(port)],
                    "-/routes"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="medical only, fewer requests")
    parser.add_argument("--requests", type=int, default=64, help="timed requests per cell")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--ray", action="store_true", help="also Ray Serve (needs ray[serve])")
    parser.add_argument("--loaders", type=int, default=os.cpu_count() or 1,
                        help="also vkit serve with inputs read in this many loader processes (0: no such row)")
    args = parser.parse_args()
    print(cpu_line())
    tasks = ["medical-diagnosis"] if args.quick else ["medical-diagnosis", "education-engagement"]
    clients = [int(c) for c in args.clients.split(",")]
    requests = 32 if args.quick else args.requests
    rows = []
    with tempfile.TemporaryDirectory(prefix="vkit-bench-serve-") as tmp_text:
        tmp = Path(tmp_text)
        for task in tasks:
            url, ref, root, paths = train(task, tmp)
            port = free_port()
            for name, argv, ready in servers(task, url, ref, root, tmp, args.ray, port, args.loaders):
                try:
                    proc = start(argv, port, ready, tmp / f"{task}-{name.replace(' ', '_')}.log", timeout=600)
                except RuntimeError as err:
                    rows.append((task, name, "-", f"did not start: {str(err).splitlines()[-1][:80]}", "", "", ""))
                    continue
                route = "/" if name == "ray serve" else f"/v1/{task}/predict"
                try:
                    for n in clients:
                        r = asyncio.run(load(f"http://127.0.0.1:{port}{route}", paths, n, max(requests, 16)))
                        rows.append((task, name, n, f"{r['rps']:.1f}", f"{r['p50']:.0f}", f"{r['p95']:.0f}",
                                     str(r["errors"])))
                finally:
                    stop(proc)
            r = predict_cli(url, ref, task, root, paths, 3 if args.quick else 4)
            rows.append((task, "vkit predict per file", 1, f"{r['rps']:.2f}", f"{r['p50']:.0f}", f"{r['p95']:.0f}", "0"))
    header = ("task", "server", "clients", "req/s", "p50 ms", "p95 ms", "errors")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    for line in targets(rows):
        print(line)
    print(f"(load at the end: {os.getloadavg()[0]:.2f})")


def targets(rows: list[tuple]) -> list[str]:
    """The issue's two targets at 8 clients, per task, from the table's rows (those measured)."""
    cell = {(r[0], r[1], r[2]): r for r in rows if r[2] != "-"}
    out = []
    for task in dict.fromkeys(r[0] for r in rows):
        one, eight, plain = (cell.get((task, "vkit serve", 1)), cell.get((task, "vkit serve", 8)),
                             cell.get((task, "plain FastAPI", 8)))
        if not (one and eight):
            continue
        text = f"{task} at 8 clients:"
        if plain:
            ratio = float(eight[3]) / float(plain[3])
            verdict = "met" if ratio >= 1.5 else "missed"
            text += f" throughput {ratio:.2f}x the plain endpoint (target >= 1.5: {verdict});"
        p95 = float(eight[5]) / float(one[5])
        scale = float(eight[3]) / float(one[3])
        text += (f" p95 {p95:.1f}x the single-client p95 (target <= 2: {'met' if p95 <= 2 else 'missed'});"
                 f" throughput {scale:.1f}x single-client (Little's law: p95 <= 2x needs about >= 4x)")
        out.append(text)
    return out


if __name__ == "__main__":
    main()
