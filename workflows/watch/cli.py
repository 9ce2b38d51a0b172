"""``vkit watch TASK SOURCE... --checkpoint RUN``: live scoring of streams, events as they happen (``docs/watch.md``).

Example::

    summary = watch("security-anomaly", ["rtsp://cam1/live"], "12", options=WatchOptions(seconds=60), as_json=True)
    summary["run_id"], summary["streams"][0]["dropped_frames"]
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from vkit.registry.errors import ConfigError, VkitError

#: Seconds readers and the webhook get to finish once the watch stops.
STOP_GRACE = 2.0


def parse_ui(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765`` for IPv6) as ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--ui {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


def _live_page_starter() -> Callable[..., Any]:
    try:
        from vkit.workflows.watch_ui import start_live_page
    except ImportError as err:
        raise VkitError(f"the live page is not available in this build (vkit.workflows.watch_ui: {err}); "
                        f"run without --ui, or install vkit with its web extra") from None
    return start_live_page


def _live_adapter(task_cls: Any, scorer: Any, specs: list[Any], span: float) -> Any:
    """A task's live side: the task's ``live_adapter`` attribute (``"module:function"``), else
    ``<its plugin package>.live.live_adapter`` (education's); ``None`` when it has none.

    The function takes ``(scorer, specs, span=seconds)``, may rename each spec's stored path (``spec.shown``, e.g.
    a pseudonym) and returns an object whose ``summaries(streams)`` gives ``(group, text, values)`` rows."""
    import importlib

    named = getattr(task_cls, "live_adapter", None)
    if isinstance(named, str) and ":" in named:
        module_name, _, function = named.partition(":")
        adapter = getattr(importlib.import_module(module_name), function, None)
        if adapter is None:
            raise ConfigError(f"task {task_cls.name!r}: live_adapter {named!r} names no function")
        return adapter(scorer, specs, span=span)
    package = task_cls.__module__.rpartition(".")[0]
    if not package:  # a plugin that is one module and names no live side
        return None
    try:
        module = importlib.import_module(f"{package}.live")
    except ModuleNotFoundError as err:
        if err.name and f"{package}.live".startswith(err.name):
            return None
        raise
    adapter = getattr(module, "live_adapter", None)
    return adapter(scorer, specs, span=span) if adapter is not None else None


def _validation(scorer: Any, specs: Sequence[Any]) -> Callable[[], Any]:
    """What ``--precision auto|int8`` gates and calibrates on: the scorer's own clips, else the file sources."""
    def make() -> Any:
        from vkit.core.capabilities import scorer_supports
        from vkit.core.precision import archive_validation

        files = [s.url for s in specs if s.kind == "file"]
        if not files and "validation_clips" not in scorer_supports(scorer):
            raise ConfigError("watch: --precision auto/int8 needs validation clips: the scorer has none and no "
                              "SOURCE is a file; pass --precision fp32 or bf16, or add a recording as a source")
        return archive_validation(scorer, files)
    return make


def watch(task_name: str, sources: Sequence[str], checkpoint: str, *, db_url: str | None = None,
          plugins: Sequence[str] = (), options: Any = None, as_json: bool = False, ui: str | None = None,
          ui_token: str | None = None, echo: Callable[[str], None] | None = None,
          emit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Watch ``sources`` with ``task_name``'s scorer until they end, ``options.seconds`` pass, Ctrl-C or SIGTERM.

    ``echo`` receives the progress lines (default: stderr), ``emit`` each event/summary/run payload (default:
    JSON lines with ``as_json``, else a text line each, on stdout). Returns the final summary (run id, status, per-stream counters, latencies). Raises a
    :class:`~vkit.registry.errors.VkitError` for a bad task, checkpoint, source or option before any row is written.
    """
    from vkit.core.checkpoint import load_meta
    from vkit.core.precision import apply_precision
    from vkit.core.run_checkpoint import resolve_checkpoint
    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.run_finished import announced_run
    from vkit.workflows.scoring.score import build_task_scorer
    from vkit.workflows.watch.alerts import check_webhook
    from vkit.workflows.watch.engine import WatchOptions, check_windowed, window_seconds
    from vkit.workflows.watch.sources import parse_source

    options = options or WatchOptions()
    say = echo or (lambda line: click.echo(line, err=True))
    if not sources:
        raise ConfigError("watch: give at least one SOURCE (a URL, a device or a file)")
    ui_at = parse_ui(ui) if ui else None
    if ui_at:
        from vkit.core.extras import require_extra

        require_extra("web", purpose="vkit watch --ui")  # before a model loads or a watch run is recorded
    start_page = _live_page_starter() if ui_at else None
    if ui_at and ui_at[0] not in ("127.0.0.1", "localhost", "::1") and not ui_token:
        raise ConfigError(f"--ui {ui}: serving beyond this machine needs --ui-token (16+ characters)")
    if options.webhook:
        check_webhook(options.webhook)
    manager = get_plugin_manager(extra=tuple(plugins))
    task_cls = manager.get_task(task_name)
    specs = [parse_source(s, realtime=options.realtime, follow=options.follow, rtsp_transport=options.rtsp_transport)
             for s in sources]
    store = open_store(db_url)
    try:
        files = resolve_checkpoint(checkpoint, store)
        ckpt = files.weights.resolve()
        factory = functools.partial(build_task_scorer, task_cls.name, str(ckpt), options.device, tuple(plugins))
        scorer = factory()
        check_windowed(scorer, f"task {task_cls.name!r} (plugin {task_cls.plugin!r})")
        try:
            meta = load_meta(ckpt)
        except VkitError:
            meta = {}
        window, hop = window_seconds(scorer, meta, options.window, options.hop)
        scorer, precision = apply_precision(scorer, options.precision, _validation(scorer, specs), log=say)
        live = _live_adapter(task_cls, scorer, specs, options.summary_span)
        shown = [s.shown for s in specs]
        twice = sorted({s for s in shown if shown.count(s) > 1})
        if twice:
            raise ConfigError(f"watch: source(s) {twice} given twice (one stream each)")
        config = dict(sources=shown, checkpoint=str(ckpt), window_seconds=window, hop_seconds=hop,
                      precision_used=precision.to_dict(),
                      **{k: v for k, v in asdict(options).items() if k not in ("webhook", "window", "hop")},
                      webhook=None if not options.webhook else "(set)")
        with announced_run(store, manager, task_cls, config, kind="watch", model_sha256=scorer.model_sha256,
                           versions={"plugins": manager.versions()}) as run_id:
            return _watch_run(store, run_id, task_cls, scorer, specs, options, window, hop, live,
                              emit or _emitter(as_json), say, start_page, ui_at, ui_token, precision.precision)
    finally:
        store.close()


def _watch_run(store: Any, run_id: int, task_cls: Any, scorer: Any, specs: list[Any], options: Any, window: float,
               hop: float, live: Any, emit: Callable[[dict[str, Any]], None], say: Callable[[str], None], start_page: Any,
               ui_at: tuple[str, int] | None, ui_token: str | None, precision: str) -> dict[str, Any]:
    from vkit.core.processes import sigterm_interrupts
    from vkit.core.workdir import new_work_dir
    from vkit.workflows.watch.alerts import WebhookSender
    from vkit.workflows.watch.engine import StreamScoring, WatchEngine
    from vkit.workflows.watch.sources import StreamReader
    from vkit.workflows.watch.windows import StreamState
    from vkit.workflows.watch.writer import WatchWriter

    work_dir = new_work_dir(Path("work_dirs"), f"{task_cls.name}-watch", run_id, store.identity)
    store.set_work_dir(run_id, work_dir)
    ids = store.upsert_videos([dict(path=s.shown, status="ok") for s in specs])
    sender = None
    if options.webhook:
        sender = WebhookSender(options.webhook, store, queue_size=options.webhook_queue,
                               retries=options.webhook_retries, timeout=options.webhook_timeout)
        sender.start()
    writer = WatchWriter(store, run_id, work_dir, emit, sender, every=options.commit_seconds,
                         streams={ids[s.shown]: s.shown for s in specs})
    stop = threading.Event()
    streams, readers = [], []
    for index, spec in enumerate(specs):
        state = StreamState(index, spec, scorer.sampler, getattr(scorer, "size", None), window, hop, options.queue)
        streams.append(StreamScoring(state, ids[spec.shown], scorer, hop))
        readers.append(StreamReader(spec, state, stop, open_timeout=options.open_timeout))
    engine = WatchEngine(scorer, streams, writer, options, live=live)
    page = None
    began = time.monotonic()
    reason = "failed"
    try:
        with sigterm_interrupts():
            if start_page is not None:
                page = start_page(store.engine.url.render_as_string(hide_password=False), run_id, ui_at[0],
                                  ui_at[1], token=ui_token)
                say(f"live page: {page.url}")
            say(f"watch run {run_id}: {len(specs)} stream(s), windows of {window:g} s every {hop:g} s, "
                f"precision {precision}; store {store.url}")
            for reader in readers:
                reader.start()
            reason = engine.run(stop)
    finally:
        stop.set()
        for stream in streams:
            stream.state.wake()
        engine.stop_all("interrupted")
        for reader in readers:
            reader.join(timeout=STOP_GRACE)
        if sender is not None:
            sender.close(wait=STOP_GRACE)
        if page is not None:
            page.stop()
    summary = _summary(run_id, reason, engine, writer, sender, time.monotonic() - began, store.url)
    emit(dict(type="run", **summary))
    return summary


def _emitter(as_json: bool) -> Callable[[dict[str, Any]], None]:
    from vkit.workflows.watch.alerts import JsonLines

    if as_json:
        return JsonLines(True)

    def text(payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        if kind == "event":
            score = "" if payload.get("score") is None else f" score {payload['score']:.3f}"
            click.echo(f"{payload['action']:5s} {payload['kind']} {payload['stream']} "
                       f"{payload['start']:.3f}-{payload['end']:.3f} s {payload['status']}{score}")
        elif kind == "summary":
            click.echo(f"summary {payload['group']}: {payload['text']}")
        elif kind == "run":
            click.echo(f"watch run {payload['run_id']} {payload['status']} after {payload['seconds']:.1f} s "
                       f"({payload['stopped']}); store {payload['db_url']}")
            for s in payload["streams"]:
                click.echo(f"  {s['stream']}: {s['scored']} windows scored, {s['frames']} frames, dropped "
                           f"{s['dropped_frames']} frames ({s['dropped_windows']} windows), {s['corrupt_packets']} "
                           f"corrupt packets, {s['reconnects']} reconnects, state {s['state']}")
    return text


def _summary(run_id: int, reason: str, engine: Any, writer: Any, sender: Any, seconds: float,
             db_url: str) -> dict[str, Any]:
    import numpy as np

    latencies = np.asarray(list(writer.latencies), dtype=np.float64)
    return dict(run_id=run_id, status="finished", stopped=reason, seconds=round(seconds, 3), db_url=db_url,
                streams=engine.counters(), batches=engine.batches, model_seconds=round(engine.model_seconds, 3),
                latency_p50=round(float(np.percentile(latencies, 50)), 4) if len(latencies) else None,
                latency_p95=round(float(np.percentile(latencies, 95)), 4) if len(latencies) else None,
                alerts=None if sender is None else dict(delivered=sender.delivered, failed=sender.failed,
                                                        overflow=sender.overflow))


@click.command("watch")
@click.argument("task")
@click.argument("sources", nargs=-1, required=True)
@click.option("--checkpoint", required=True, metavar="RUN_OR_PATH", help="A run id or a .safetensors file.")
@click.option("--for", "seconds", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop after this long (default: until every source ends, Ctrl-C or SIGTERM).")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Window length (default: the checkpoint's, else the scorer's training clip).")
@click.option("--hop", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Seconds between window starts (default: the checkpoint's when the window is too, else the window).")
@click.option("--realtime", is_flag=True, help="Play file sources at their own frame rate.")
@click.option("--follow", is_flag=True, help="Follow file sources while they grow (MPEG-TS, MJPEG).")
@click.option("--rtsp-transport", type=click.Choice(("tcp", "udp")), default="tcp", show_default=True)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Windows per inference batch.")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the model.")
@click.option("--precision", type=click.Choice(("auto", "fp32", "bf16", "int8")), default="fp32", show_default=True,
              help="Model precision, as for vkit score.")
@click.option("--queue", default=8, show_default=True, type=click.IntRange(1),
              help="Windows per stream that may wait for scoring; beyond it the oldest is dropped (counted).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout: events, summaries, a last run line.")
@click.option("--webhook", default=None, metavar="URL", help="POST each event open/close here (retries, backoff).")
@click.option("--webhook-queue", default=1000, show_default=True, type=click.IntRange(1),
              help="Alerts that may wait for the webhook; beyond it they stay pending in the store.")
@click.option("--webhook-timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--webhook-retries", default=5, show_default=True, type=click.IntRange(0))
@click.option("--summary-every", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between live class summaries (tasks with a live summary: education).")
@click.option("--summary-span", default=120.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a learner must have been low to count as low in the summary.")
@click.option("--ui", default=None, metavar="HOST:PORT", help="Serve the live page here (127.0.0.1 by default).")
@click.option("--ui-token", default=None, envvar="VKIT_UI_TOKEN", help="Token the live page requires (needed "
              "when --ui is not a loopback address; env VKIT_UI_TOKEN).")
@click.pass_context
def watch_cmd(ctx: click.Context, task: str, sources: tuple[str, ...], checkpoint: str, seconds: float | None,
              window: float | None, hop: float | None, realtime: bool, follow: bool, rtsp_transport: str,
              batch_size: int, device: str, precision: str, queue: int, as_json: bool, webhook: str | None,
              webhook_queue: int, webhook_timeout: float, webhook_retries: int, summary_every: float, summary_span: float,
              ui: str | None, ui_token: str | None) -> None:
    """Score live SOURCES (rtsp/rtmp/http/tcp/udp/srt URLs, /dev/video0, files) with a trained TASK model as they play.

    Events open and close as scores arrive; every row goes to the store as a run of kind 'watch'.
    """
    from vkit.workflows.watch.engine import WatchOptions

    obj = ctx.find_root().obj or {}
    options = WatchOptions(window=window, hop=hop, batch_size=batch_size, device=device, precision=precision,
                           queue=queue, seconds=seconds, realtime=realtime, follow=follow,
                           rtsp_transport=rtsp_transport, webhook=webhook, webhook_queue=webhook_queue,
                           webhook_retries=webhook_retries,
                           webhook_timeout=webhook_timeout, summary_every=summary_every, summary_span=summary_span)
    watch(task, sources, checkpoint, db_url=obj.get("db_url"), plugins=obj.get("plugins", ()), options=options,
          as_json=as_json, ui=ui, ui_token=ui_token)


__all__ = ["parse_ui", "watch", "watch_cmd"]
