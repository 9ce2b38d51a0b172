"""``vkit watch`` live: latency, streams scored in real time, memory over a long stream (CPU model printed first).

Models: ``security-anomaly`` with its default features (MotionStats over 32 x 6
frames at 64x64; the MIL head trained 1 epoch on the embedded clips) and
``education-engagement`` with its default model (TinyC3D 8/16/32, 16 frames at
32x32, frame differences; trained 1 epoch), each a fresh run cached in
``--work``. Streams: a generated 640x360 25 fps H.264 clip of moving blocks,
published as MPEG-TS over TCP at its own rate, one publisher per stream, all
scored by one ``vkit watch`` process (one model, batches across streams).

Tables:

1. per model and stream count: windows scored, the share of frames dropped
   (the drop-oldest policy), p50/p95 seconds from a window's last frame to its
   committed score row; "real time" = under 1 % of frames dropped and p95 <= 1 s.
2. alert latency: seconds from an event's end (stream time, placed on the
   wall clock by the stream's score rows) to its close alert arriving at a
   local webhook, with the tests' brightness scorer (events every 2 s).
3. RSS of a ``vkit watch`` subprocess over ``--rss-minutes`` of stream time
   (security model; the clip looped, published as fast as it decodes: accelerated),
   sampled each 10 % of the way; flat = the last sample within 10 % of the one at 20 %.
4. X3D-S (``--only x3d``): table 1 for education-engagement with mmaction2's X3D-S
   (13 frames at 160x160, random init, trained on the smoke settings: throughput only)
   at fp32, then at the precision ``--precision auto``'s gate picks on this CPU
   (gated on the stream file's clips; the gate's lines are printed first), or
   ``not run: <reason>`` when the gate cannot run.

    python benchmarks/live.py --quick     # 1, 2, 4 streams for 8 s; 5 minutes of stream for RSS
    python benchmarks/live.py             # 1, 2, 4, 8 (education up to 16) streams for 20 s; 30 minutes for RSS
    python benchmarks/live.py --only x3d  # X3D-S, 1, 2, 4 streams (--x3d-streams) for 20 s each: about 4 minutes
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "workflows")]

MODELS = {
    "security-anomaly": ["features.num_segments=32", "features.frames_per_segment=6", "features.size=(64,64)"],
    "education-engagement": ["data.num_frames=16", "data.size=32", "data.synthetic.size=32",
                             "model.backbones.video.widths=(8,16,32)", "model.backbones.video.num_frames=16",
                             "model.backbones.video.input_size=(32,32)"],
}
WINDOWS = {"security-anomaly": 1.0, "education-engagement": None}  # None: the checkpoint's clip length
#: X3D-S (mmaction2 x3d_s_13x6x1: 13 frames at 160x160, random init) as education-engagement's video backbone,
#: trained on the smoke settings (8 clips, 1 epoch): an untrained-quality model, for throughput only.
X3D_S = ("education-engagement", ["data.num_frames=13", "data.size=160", "data.synthetic.size=160",
                                  "model.backbones.video={type: X3D, setting: s, num_frames: 13, "
                                  "input_size: [160, 160], _delete_: true}"])


def cpu_model() -> str:
    from vkit.core.precision.cpu import _cpu_model

    return f"{_cpu_model()} ({os.cpu_count()} logical CPUs)"


def trained(task: str, work: Path, overrides: list[str] | None = None, name: str | None = None) -> str:
    """The checkpoint path of a cached (or new) run of ``task`` with the default model (or ``overrides``, cached as ``name``)."""
    marker = work / (name or task) / "run.json"
    if marker.is_file():
        return json.loads(marker.read_text())["checkpoint"]
    from vkit.core.store import open_store
    from vkit.workflows.plugin_check import run_task_smoke

    result = run_task_smoke(task, MODELS[task] if overrides is None else overrides, work / (name or task))
    with open_store(result.db_url) as store:
        path = [a["path"] for a in store.run_artifacts(result.run_id) if a["kind"] == "checkpoint"][-1]
    marker.write_text(json.dumps(dict(checkpoint=path)))
    return path


def clip(work: Path, seconds: float) -> Path:
    """640x360 25 fps moving blocks, ``seconds`` long (cached)."""
    from vkit.core.video import write_video

    path = work / f"stream-{seconds:g}s.mp4"
    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(9, 16, 3), dtype=np.uint8)
    frames = (np.kron(np.roll(base, t // 5, axis=1), np.ones((40, 40, 1), np.uint8)) for t in range(int(seconds * 25)))
    return write_video(path, frames, fps=25)


def watch_streams(task: str, checkpoint: str, source: Path, streams: int, seconds: float, work: Path,
                  webhook: str | None = None, window: float | None = None, precision: str = "fp32") -> dict[str, Any]:
    from fixtures.streams import TcpPublisher

    from vkit.workflows.watch.cli import watch
    from vkit.workflows.watch.engine import WatchOptions

    os.environ.setdefault("VKIT_LEARNER_SALT", "benchmark-salt")
    publishers = [TcpPublisher(source, clients=1) for _ in range(streams)]
    for publisher in publishers:
        publisher.__enter__()
    try:
        options = WatchOptions(seconds=seconds, window=window, webhook=webhook, webhook_retries=0, precision=precision)
        os.chdir(work)
        return watch(task, [p.url for p in publishers], checkpoint, db_url=f"sqlite:///{work / 'live.db'}",
                     options=options, echo=lambda line: None, emit=lambda payload: None)
    finally:
        for publisher in publishers:
            publisher.__exit__()


STREAMS_HEADER = ("\n| model | streams | windows scored | frames dropped | p50 window end -> row (s) | p95 (s) | real time |"
                  "\n|---|---|---|---|---|---|---|")


def _row(label: str, n: int, summary: dict[str, Any]) -> None:
    frames = sum(s["frames"] for s in summary["streams"])
    dropped = sum(s["dropped_frames"] for s in summary["streams"])
    share = dropped / frames if frames else 1.0
    p95 = summary["latency_p95"]
    ok = share < 0.01 and p95 is not None and p95 <= 1.0
    print(f"| {label} | {n} | {sum(s['scored'] for s in summary['streams'])} | {100 * share:.1f} % | "
          f"{summary['latency_p50']} | {p95} | {'yes' if ok else 'no'} |", flush=True)


def table_streams(args: argparse.Namespace, work: Path, source: Path) -> None:
    print(STREAMS_HEADER)
    for task in MODELS:
        checkpoint = trained(task, work)
        counts = args.streams + ([16] if task == "education-engagement" and not args.quick and not args.given else [])
        for n in counts:
            _row(task, n, watch_streams(task, checkpoint, source, n, args.seconds, work, window=WINDOWS[task]))


def gate_precision(task: str, checkpoint: str, source: Path) -> tuple[str, list[str]]:
    """``--precision auto``'s choice for ``checkpoint`` on this CPU, gated on clips of ``source`` (cached under
    ``$VKIT_CACHE/precision``, where ``vkit watch --precision auto`` then finds the decision and int8 calibration),
    and the gate's lines."""
    from vkit.core.precision import apply_precision, archive_validation
    from vkit.workflows.scoring.score import build_task_scorer

    scorer = build_task_scorer(task, checkpoint, "cpu", ())
    lines: list[str] = []
    _, choice = apply_precision(scorer, "auto", archive_validation(scorer, [str(source)]), log=lines.append)
    return choice.precision, lines


def table_x3d(args: argparse.Namespace, work: Path, source: Path) -> None:
    """X3D-S rows: fp32, then the precision ``--precision auto``'s gate picks here (``not run: <reason>`` if it cannot)."""
    task, overrides = X3D_S
    checkpoint = trained(task, work, overrides, name="education-x3d-s")
    os.environ["VKIT_CACHE"] = str(work / "cache")  # the gate's decision and calibration, found by watch's auto
    counts = args.x3d_streams
    try:
        precision, lines = gate_precision(task, checkpoint, source)
    except Exception as err:  # shown as the row, not hidden
        precision, lines = None, [f"gate not run: {type(err).__name__}: {err}"]
    for line in lines:
        print(f"# {line}")
    print(STREAMS_HEADER)
    for n in counts:
        _row("education X3D-S fp32", n, watch_streams(task, checkpoint, source, n, args.seconds, work))
    if precision is None:
        print(f"| education X3D-S gate's precision | - | not run: {lines[0]} | | | | |")
    elif precision == "fp32":
        print("| education X3D-S gate's precision | - | the gate keeps fp32 here: the rows above | | | | |")
    else:
        for n in counts:
            _row(f"education X3D-S {precision} (gate)", n,
                 watch_streams(task, checkpoint, source, n, args.seconds, work, precision="auto"))


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[tuple[float, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).got.append((time.time(), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def table_alerts(args: argparse.Namespace, work: Path) -> None:
    import test_watch_support as support
    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager

    get_plugin_manager(extra=("test_watch_support",))
    source = support.write_clip(work / "bright.mp4", [220 if (i // 25) % 2 else 30 for i in range(int(args.seconds * 25))],
                                fps=25)
    checkpoint = support.make_checkpoint(work / "bright.safetensors")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.got = []
    from fixtures.streams import TcpPublisher

    from vkit.workflows.watch.cli import watch
    from vkit.workflows.watch.engine import WatchOptions

    with TcpPublisher(source, clients=1) as publisher:
        os.chdir(work)
        summary = watch("demo-watch", [publisher.url], str(checkpoint), db_url=f"sqlite:///{work / 'live.db'}",
                        plugins=("test_watch_support",),
                        options=WatchOptions(seconds=args.seconds, window=0.2,
                                             webhook=f"http://127.0.0.1:{server.server_port}/"),
                        echo=lambda line: None, emit=lambda payload: None)
    server.shutdown()
    with open_store(f"sqlite:///{work / 'live.db'}") as store:
        rows = store.video_scores(summary["run_id"])
    zero = float(np.median([r["wall_time"].timestamp() - r["end"] for r in rows]))  # wall clock at stream time 0
    delays = [at - (zero + body["end"]) for at, body in _Receiver.got
              if body["action"] == "close" and body["kind"] == "bright" and body["status"] == "closed"]
    print("\n| scorer | window | events closed | p50 event end -> webhook alert (s) | p95 (s) |")
    print("|---|---|---|---|---|")
    print(f"| brightness (tests) | 0.2 s | {len(delays)} | {np.percentile(delays, 50):.3f} | "
          f"{np.percentile(delays, 95):.3f} |" if delays else "| brightness (tests) | 0.2 s | 0 | - | - |")


def table_rss(args: argparse.Namespace, work: Path) -> None:
    from fixtures.streams import TcpPublisher

    task = "security-anomaly"
    checkpoint = trained(task, work)
    source = clip(work, 60.0)
    loops = max(1, int(args.rss_minutes))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "workflows"))
    samples: list[tuple[int, float]] = []
    for stale in work.glob("rss.db*"):  # a fresh store: the frame count read below is this run's
        stale.unlink()
    with TcpPublisher(source, clients=1, realtime=False, loops=loops) as publisher:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("vkit")), "--db", f"sqlite:///{work / 'rss.db'}",
                                 "watch", task, publisher.url, "--checkpoint", checkpoint, "--window", "1", "--json"],
                                cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        began = time.monotonic()
        while proc.poll() is None:
            time.sleep(1.0)
            try:
                rss = int([line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS")][0].split()[1]) / 1024
            except (OSError, IndexError):
                break
            frames = _frames(work / "rss.db")
            samples.append((frames, rss))
            if frames >= loops * 60 * 25 - 50 or time.monotonic() - began > 3600:
                proc.terminate()
        proc.communicate(timeout=60)
    total = loops * 60 * 25
    print(f"\n| stream minutes (accelerated) | RSS MiB at " + " | ".join(f"{p} %" for p in range(10, 101, 10)) + " | flat |")
    print("|---|" + "---|" * 11)
    picks = []
    for share in range(10, 101, 10):
        reached = [rss for frames, rss in samples if frames >= total * share / 100 - 50]
        picks.append(reached[0] if reached else (samples[-1][1] if samples else float("nan")))
    flat = abs(picks[-1] - picks[1]) <= 0.1 * picks[1]
    print(f"| {loops} | " + " | ".join(f"{v:.0f}" for v in picks) + f" | {'yes' if flat else 'no'} |")


def _frames(db: Path) -> int:
    """Frames the watch run's stream summary says it read (0 before the first summary)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT \"values\" FROM video_summaries ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return 0
    return int(json.loads(row[0]).get("frames", 0)) if row and row[0] else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vkit-bench-live"))
    parser.add_argument("--only", choices=("streams", "x3d", "alerts", "rss"), default=None)
    parser.add_argument("--streams", default=None, metavar="N,N", help="stream counts to try (default 1,2,4,8)")
    parser.add_argument("--x3d-streams", default="1,2,4", metavar="N,N", help="stream counts for X3D-S (default 1,2,4)")
    args = parser.parse_args()
    given = args.given = args.streams
    args.streams = [int(n) for n in given.split(",")] if given else [1, 2, 4] if args.quick else [1, 2, 4, 8]
    args.x3d_streams = [int(n) for n in args.x3d_streams.split(",")]
    args.seconds = 8.0 if args.quick else 20.0
    args.rss_minutes = 5 if args.quick else 30
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    print(f"CPU: {cpu_model()}")
    os.environ.setdefault("VKIT_NO_AUTOLOAD", "0")
    if args.only in (None, "streams"):
        table_streams(args, work, clip(work, args.seconds + 10))
    if args.only in (None, "x3d"):
        table_x3d(args, work, clip(work, args.seconds + 10))
    if args.only in (None, "alerts"):
        table_alerts(args, work)
    if args.only in (None, "rss"):
        table_rss(args, work)


if __name__ == "__main__":
    main()
