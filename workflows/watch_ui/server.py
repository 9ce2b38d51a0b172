"""The live page of ``vkit watch --ui HOST:PORT``: FastAPI on uvicorn in a background thread, fed by the store.

One poller reads the run every ``poll_seconds`` (:class:`~vkit.workflows.watch_ui.feed.LiveFeed`) and
publishes each non-empty delta; each browser holds one server-sent-events stream (``GET /events``) that starts
with a snapshot and then gets the deltas. Routes: ``/`` (the page: one static HTML file, no CDN),
``/events`` (SSE), ``/snapshot`` (JSON), ``/keyframe/{event_id}`` (the image file the store names for that
event of this run, a regular file with an image suffix) and ``/healthz``.

Bound to 127.0.0.1 by default; bound elsewhere it refuses to start without a token
(:mod:`vkit.workflows.web_access`). Open ``page.url`` (it carries ``?token=`` when there is one).

Example::

    page = start_live_page("sqlite:///vkit.db", run_id=7, host="127.0.0.1", port=0)
    print(page.url)              # http://127.0.0.1:40123/
    page.stop()
"""
# No ``from __future__ import annotations``: FastAPI reads the route annotations (``Request``) at definition time.
import asyncio
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from vkit.registry.errors import ConfigError
from vkit.workflows.web_access import COOKIE, allowed, check_binding, uvicorn_config

__all__ = ["LivePage", "build_app", "start_live_page"]

PAGE = Path(__file__).with_name("static") / "live.html"
_IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


class _Hub:
    """The shared feed: one poller, a bounded log of deltas, browsers waiting on a condition."""

    def __init__(self, feed: Any, poll_seconds: float) -> None:
        self.feed, self.poll_seconds = feed, poll_seconds
        self.version, self.log = 0, deque(maxlen=256)
        self.changed: asyncio.Condition | None = None
        self.lock = threading.Lock()  # feed state is read by snapshots while the poller updates it
        self.error: str | None = None

    async def run(self) -> None:
        self.changed = asyncio.Condition()
        while True:
            try:
                delta = await asyncio.to_thread(self._poll)
                self.error = None
            except Exception as err:  # noqa: BLE001 - a store hiccup is shown on the page and retried
                delta, self.error = None, f"{type(err).__name__}: {err}"
            if delta is not None:
                async with self.changed:
                    self.version += 1
                    self.log.append((self.version, delta))
                    self.changed.notify_all()
            await asyncio.sleep(self.poll_seconds)

    def _poll(self) -> dict[str, Any] | None:
        with self.lock:
            delta = self.feed.poll()
        return delta if any(delta.values()) else None

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            return self.version, self.feed.snapshot()

    def since(self, version: int) -> list[dict[str, Any]] | None:
        """Deltas after ``version``, or ``None`` when the log no longer reaches back that far."""
        if self.log and self.log[0][0] > version + 1:
            return None
        return [delta for v, delta in self.log if v > version]


def build_app(feed: Any, *, token: str | None = None, poll_seconds: float = 0.5) -> Any:
    """The FastAPI app of the live page over ``feed`` (a :class:`LiveFeed`)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from fastapi.sse import EventSourceResponse, ServerSentEvent

    hub = _Hub(feed, poll_seconds)

    @asynccontextmanager
    async def lifespan(app: Any):  # noqa: ANN202 - FastAPI's lifespan protocol
        task = asyncio.create_task(hub.run())
        yield
        task.cancel()

    app = FastAPI(title="vkit watch: live page", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if not allowed(request, token):
            return JSONResponse({"detail": "a bearer token is required (open the URL vkit printed)"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        if token is not None and request.query_params.get("token") is not None:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                                       "style-src 'self' 'unsafe-inline'; img-src 'self'")
        return response

    @app.get("/", response_class=HTMLResponse)
    async def page() -> Any:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return dict(status="ok" if hub.error is None else "degraded", run_id=feed.run_id, error=hub.error)

    @app.get("/snapshot")
    async def snapshot() -> dict[str, Any]:
        version, data = await asyncio.to_thread(hub.snapshot)
        return dict(data, version=version)

    @app.get("/events", response_class=EventSourceResponse)
    async def events(request: Request):  # noqa: ANN202 - an SSE generator
        version, data = await asyncio.to_thread(hub.snapshot)
        yield ServerSentEvent(data=data, event="snapshot", retry=1000)
        while not await request.is_disconnected():
            if hub.changed is None:
                await asyncio.sleep(poll_seconds)
                continue
            async with hub.changed:
                try:
                    await asyncio.wait_for(hub.changed.wait(), timeout=10)
                except TimeoutError:
                    yield ServerSentEvent(comment="keep-alive")
                    continue
            deltas = hub.since(version)
            if deltas is None:  # this browser fell behind the log: start it over
                version, data = await asyncio.to_thread(hub.snapshot)
                yield ServerSentEvent(data=data, event="snapshot")
                continue
            for delta in deltas:
                yield ServerSentEvent(data=delta, event="delta")
            version = hub.version

    @app.get("/keyframe/{event_id}")
    async def keyframe(event_id: int) -> Any:
        path = await asyncio.to_thread(feed.keyframe_path, event_id)
        if path is None:
            raise HTTPException(404, f"event {event_id} of run {feed.run_id} has no keyframe")
        kind = _IMAGE_TYPES.get(Path(path).suffix.lower())
        if kind is None:
            raise HTTPException(415, f"event {event_id}: the keyframe is not a .jpg/.png/.webp image")
        from vkit.core.files import check_regular

        try:
            check_regular(path)
        except (OSError, ValueError) as err:
            raise HTTPException(404, f"event {event_id}: keyframe unreadable ({type(err).__name__})") from None
        return FileResponse(path, media_type=kind)

    return app


class LivePage:
    """A running live page: ``url`` to open, ``stop()`` to shut it down (waits for the server thread)."""

    def __init__(self, server: Any, thread: threading.Thread, store: Any, host: str, token: str | None) -> None:
        self._server, self._thread, self._store = server, thread, store
        self.host, self.token = host, token

    @property
    def port(self) -> int:
        """The bound port (the one the OS picked for ``port=0``)."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open event streams are closed) and release the store."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # an event stream that will not end: force it
            self._server.force_exit = True
            self._thread.join(timeout)
        self._store.close()


def start_live_page(store_url: str | None, run_id: int, host: str = "127.0.0.1", port: int = 8765,
                    token: str | None = None, *, poll_seconds: float = 0.5, timeout: float = 20.0) -> LivePage:
    """Serve the live page of run ``run_id`` of the store at ``store_url`` on ``host:port`` from a background thread.

    Args:
        store_url: the store (``None``: ``$VKIT_DB_URL`` or ``./vkit.db``); opened read-only.
        run_id: the run to show (``vkit watch``'s run).
        host: the address to bind; anything but a loopback address needs ``token``.
        port: the port (``0``: any free one; read it back from ``.url``).
        token: the bearer token (16+ characters) the page and its requests must carry.
        poll_seconds: how often the store is read.
        timeout: longest wait for the server to start listening.

    Raises:
        ConfigError: no token off localhost, a short token, or the server did not start (port taken ...).
        StoreError: no store, or no such run.
    """
    import uvicorn

    from vkit.core.store import open_store
    from vkit.workflows.watch_ui.feed import LiveFeed

    check_binding(host, token, what="vkit watch --ui")
    store = open_store(store_url, read_only=True, create=False)
    try:
        app = build_app(LiveFeed(store, run_id), token=token, poll_seconds=poll_seconds)
        config = uvicorn_config(app, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)  # the process's log files stay open
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # the watch command owns SIGINT/SIGTERM
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                server.run()
            except BaseException as err:  # noqa: BLE001 - reported to the caller below
                failure.append(err)

        thread = threading.Thread(target=serve, name=f"vkit-live-page-{run_id}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            server.should_exit = True
            thread.join(5)
            why = f"{type(failure[0]).__name__}: {failure[0]}" if failure else "it did not start listening"
            raise ConfigError(f"vkit watch --ui {host}:{port}: the live page could not start ({why}; is the port "
                              f"free?)")
    except BaseException:
        store.close()
        raise
    return LivePage(server, thread, store, host, token)
