"""The HTTP API of ``vkit serve`` (FastAPI; OpenAPI at ``/docs``).

| route | what |
|---|---|
| ``POST /v1/{task}/predict`` | multipart upload in the field ``file``, or JSON ``{"path": ...}`` under ``--data-root``: the decision, the probabilities by class name, the model's sha256 |
| ``POST /v1/{task}/score`` | JSON ``{"path": FOLDER}`` under ``--data-root``: starts ``vkit score`` on it, returns its run id (202) |
| ``GET /v1/runs/{id}`` | any run's status, progress (score jobs: videos done of those found) and metrics |
| ``GET /v1/recommendation/users/{id}?k=10`` | top-k items with their reasons (a served recommendation run; stored) |
| ``POST /v1/admin/reload`` | JSON ``{"task": ..., "checkpoint": ...}``: swap in a model; nothing in flight is dropped |
| ``GET /healthz`` | liveness and what is served (no token needed) |
| ``GET /metrics`` | Prometheus text |

Errors are JSON ``{"detail": reason}`` (a string): 400 a malformed request, 422 an input that cannot be read
(the reason names it), 401 no or wrong token, 403 a path outside
the data root, 404 unknown task/run/user route, 413 too large, 429 too many jobs, 503 a replica or a loader process
failed, or the request timed out.

Example::

    app = build_app(ServeSettings(checkpoints=["7"]))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""
# No ``from __future__ import annotations``: FastAPI reads the route annotations (``Request``) at definition time.
import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from vkit.registry.errors import ConfigError, DataError, StoreError
from vkit.workflows.serve.service import ServeService, ServeSettings
from vkit.workflows.web_access import COOKIE, allowed, presented

__all__ = ["build_app"]

log = logging.getLogger("vkit.serve")

_OPEN = ("/healthz",)
_PREDICT_BODY = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "the scan or clip"}}}},
        "application/json": {"schema": {"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string", "description": "a file under the server's --data-root"}}}},
    }}}
_FOLDER_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}}}}}
_RELOAD_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["task"], "properties": {
        "task": {"type": "string"}, "checkpoint": {"type": "string", "description": "run id or path; default: the "
                                                                                    "served one, reloaded"}}}}}}}


def build_app(settings: ServeSettings | ServeService) -> Any:
    """The FastAPI app serving ``settings.checkpoints`` (loaded now: a bad checkpoint fails here, before listening)."""
    from fastapi import HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi_offline import FastAPIOffline

    from vkit.workflows.serve.batcher import ReplicaFailed
    from vkit.workflows.serve.inputs import BodyLimit, PathRefused, TooLarge, resolve_data_path, save_upload
    from vkit.workflows.serve.jobs import JobsFull, run_progress
    from vkit.workflows.serve.loaders import LoaderFailed
    from vkit.workflows.serve.models import BadInput, Input

    service = settings if isinstance(settings, ServeService) else ServeService(settings)
    settings = service.settings

    @asynccontextmanager
    async def lifespan(app: Any):  # noqa: ANN202 - FastAPI's lifespan protocol
        for batcher in service.batchers.values():
            await batcher.start()
        try:
            yield
        finally:
            await service.aclose("finished")

    app = FastAPIOffline(title="vkit serve", version="1", lifespan=lifespan, redoc_url=None,  # /docs: no CDN
                  description="Trained vkit models behind an HTTP API: predictions batched across requests and "
                              "stored as a `serve` run, scoring jobs, recommendations, Prometheus metrics.")
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError) -> Any:  # 400 {"detail": reason}, a string
        return JSONResponse({"detail": _validation_reason(err.errors())}, status_code=400)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        began = time.perf_counter()
        if request.url.path not in _OPEN and not allowed(request, settings.token):
            reason = ("a bearer token is required: Authorization: Bearer TOKEN" if presented(request) is None
                      else "wrong token: the bearer token given is not this server's (--token / VKIT_TOKEN)")
            response = JSONResponse({"detail": reason}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
            if settings.token is not None and request.query_params.get("token") is not None:  # a browser: /docs
                response.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
        endpoint = getattr(request.scope.get("route"), "path", None) or _route_path(app, request.scope)
        service.metrics.observe(endpoint, request.method, response.status_code, time.perf_counter() - began)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.add_middleware(BodyLimit, limit=settings.upload_limit + 64 * 1024)  # multipart framing on top of the file

    def served(task: str, capability: str) -> Any:
        if task not in service.tasks:
            raise HTTPException(404, f"task {task!r} is not served here (served: {sorted(service.tasks)})")
        if not service.tasks[task].can(capability):
            raise HTTPException(404, f"task {task!r} does not declare the {capability!r} capability")
        return service.tasks[task]

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body

    def path_field(body: dict[str, Any], what: str) -> Any:
        if "path" not in body:
            fields = ", ".join(repr(str(k)[:40]) for k in list(body)[:10]) if body else "none"
            raise HTTPException(400, f"the JSON body needs the field 'path' ({what} under the server's --data-root); "
                                     f"got the field(s) {fields}")
        return body["path"]

    @app.post("/v1/{task}/predict", openapi_extra=_PREDICT_BODY, summary="Predict one file")
    async def predict(task: str, request: Request) -> dict[str, Any]:
        served(task, "predict")
        kind = request.headers.get("content-type", "")
        saved: Path | None = None
        try:
            if kind.startswith("multipart/form-data"):
                form = await request.form(max_files=1, max_fields=4)
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise HTTPException(400, "a multipart request needs the file in the field 'file'")
                saved, name = await save_upload(upload, service.upload_dir, settings.upload_limit)
                item = Input(path=str(saved), name=name, source="upload")
            elif kind.startswith("application/json"):
                given = path_field(await json_body(request), "a file")
                path = resolve_data_path(settings.data_root, given)
                item = Input(path=str(path), name=str(given), source="path")
            else:
                raise HTTPException(415, "send multipart/form-data (field 'file') or application/json {\"path\": ...}")
            result = await service.predict(task, item)  # checks a video's duration, then loads and predicts
        except TooLarge as err:
            raise HTTPException(413, str(err)) from None
        except PathRefused as err:
            raise HTTPException(403, str(err)) from None
        except (BadInput, DataError) as err:
            raise HTTPException(422, str(err)) from None
        except (ReplicaFailed, LoaderFailed, TimeoutError) as err:
            raise HTTPException(503, f"prediction failed, retry: {err}", headers={"Retry-After": "1"}) from None
        finally:
            if saved is not None:
                saved.unlink(missing_ok=True)
        return dict(task=task, **result)

    @app.post("/v1/{task}/score", openapi_extra=_FOLDER_BODY, status_code=202, summary="Start a scoring job")
    async def score(task: str, request: Request) -> dict[str, Any]:
        model = served(task, "score")
        given = path_field(await json_body(request), "a folder")
        try:
            if settings.data_root is None:
                raise PathRefused("score jobs need the server started with --data-root DIR")
            folder = (settings.data_root / str(given)).resolve() if isinstance(given, str) and given else None
            if folder is None or not folder.is_relative_to(settings.data_root):
                raise PathRefused(f"path {given!r} is not a folder under the server's --data-root")
            if not folder.is_dir():
                raise DataError(f"path {given!r}: no such folder under --data-root")
            run_id = await asyncio.to_thread(service.jobs.start, task, folder, model.checkpoint, model.stage)
        except PathRefused as err:
            raise HTTPException(403, str(err)) from None
        except JobsFull as err:
            raise HTTPException(429, str(err), headers={"Retry-After": "10"}) from None
        except (DataError, ConfigError) as err:
            raise HTTPException(422, str(err)) from None
        return dict(task=task, run_id=run_id, status_url=f"/v1/runs/{run_id}")

    @app.get("/v1/runs/{run_id}", summary="A run's status, progress and summary")
    async def run(run_id: int) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(run_progress, service.store, run_id)
        except StoreError as err:
            raise HTTPException(404, str(err)) from None

    @app.get("/v1/recommendation/users/{user_id}", summary="Top-k recommendations for a user, with reasons")
    async def recommend(user_id: str, k: int = 10) -> dict[str, Any]:
        if not service.recommenders:
            raise HTTPException(404, "no recommendation model is served here (serve a recommendation run)")
        if not 1 <= k <= 1000:
            raise HTTPException(422, f"k={k}: expected 1 to 1000")
        result = await asyncio.to_thread(service.recommend, user_id, k)  # stored in the serve run
        for item in result["items"]:  # the server's folders stay on the server: the video's file name only
            item["video"] = Path(item["video"]).name if item.get("video") else None
        return result

    @app.post("/v1/admin/reload", openapi_extra=_RELOAD_BODY, summary="Swap in a model without dropping requests")
    async def reload(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        task, ref = body.get("task"), body.get("checkpoint")
        if not isinstance(task, str) or task not in service.tasks:
            raise HTTPException(404, f"task {task!r} is not served here (served: {sorted(service.tasks)})")
        if ref is not None and not isinstance(ref, (str, int)):
            raise HTTPException(400, "'checkpoint' must be a run id or a path")
        try:
            return await asyncio.to_thread(service.reload, task, None if ref is None else str(ref))
        except Exception as err:  # noqa: BLE001 - a checkpoint that will not load: the old model keeps serving
            # The reason names server paths (and whether a file exists): it goes to the server's log only.
            log.warning("POST /v1/admin/reload task %r checkpoint %r failed: %s: %s", task, ref,
                        type(err).__name__, err)
            shown = f" {ref}" if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()) else ""
            raise HTTPException(422, f"reload of task {task!r} failed, still serving the previous model: "
                                     f"'checkpoint'{shown} is not a trained run of this task in the server's store "
                                     f"nor a vkit checkpoint of it the server can read (the server's log has the "
                                     f"reason)") from None

    @app.get("/healthz", summary="Liveness and what is served")
    async def healthz() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        body, content_type = service.metrics.render(service.refresh_gauges)
        return Response(body, media_type=content_type)

    return app


def _route_path(app: Any, scope: dict[str, Any]) -> str:
    """The path template of the route answering ``scope`` (FastAPI names its own ``APIRoute`` in the scope, not the
    plain routes of ``/openapi.json`` and ``/docs``), or ``(unmatched)``."""
    from starlette.routing import Match

    for route in app.router.routes:
        if route.matches(scope)[0] is Match.FULL:
            return getattr(route, "path", None) or "(unmatched)"
    return "(unmatched)"


def _validation_reason(errors: Any) -> str:
    """FastAPI's validation errors (a list) as one reason: ``run_id 'abc': expected an integer``."""
    parts = []
    for error in errors:
        name = error.get("loc", ["request"])[-1]
        expect = "expected an integer" if error.get("type") == "int_parsing" else error.get("msg", "invalid")
        given = error.get("input")
        parts.append(f"{name} {given!r}: {expect}" if isinstance(given, (str, int, float)) else f"{name}: {expect}")
    return "; ".join(parts) or "the request is not valid"
