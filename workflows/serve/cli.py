"""``vkit serve --checkpoint RUN [...]``: trained models behind an HTTP API (FastAPI on uvicorn), see docs/serve.md.

Imports only click at module level: ``vkit --help`` does not pay for FastAPI or torch.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

__all__ = ["serve_cmd"]


@click.command("serve")
@click.option("--checkpoint", "checkpoints", multiple=True, required=True, metavar="RUN_OR_PATH",
              help="A trained run id or a .safetensors file (repeatable: one per task).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="VKIT_TOKEN", default=None, metavar="TOKEN",
              help="Bearer token every request must carry (env VKIT_TOKEN; required off localhost).")
@click.option("--data-root", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder JSON {\"path\": ...} requests and score jobs may name (nothing outside it).")
@click.option("--stage", default=None, metavar="NAME", help="Serve the run's compressed model ('final' or a stage name).")
@click.option("--precision", type=click.Choice(("fp32", "bf16", "auto")), default="fp32", show_default=True)
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1), help="Model copies per task.")
@click.option("--loaders", default=0, show_default=True, type=click.IntRange(0), metavar="N",
              help="Processes reading and transforming inputs (0: threads of the server, faster on 2 cores).")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1), help="Most requests per batch.")
@click.option("--max-wait-ms", default=5.0, show_default=True, type=click.FloatRange(0),
              help="Longest wait for more requests once a batch has its first.")
@click.option("--max-upload-mb", default=256.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--max-seconds", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Longest video accepted.")
@click.option("--max-jobs", default=1, show_default=True, type=click.IntRange(1), help="Scoring jobs at once.")
@click.pass_context
def serve_cmd(ctx: click.Context, checkpoints: tuple[str, ...], host: str, port: int, token: str | None,
              data_root: str | None, stage: str | None, precision: str, replicas: int, loaders: int,
              max_batch: int, max_wait_ms: float, max_upload_mb: float, max_seconds: float, max_jobs: int) -> None:
    """Serve trained models over HTTP: predictions (batched across requests, stored as a `serve` run), scoring jobs,
    recommendations, /metrics and /docs."""
    from vkit.core.extras import require_extra

    require_extra("web", purpose="vkit serve")  # before a model loads or a serve run is recorded
    import uvicorn

    from vkit.workflows.serve.app import build_app
    from vkit.workflows.web_access import uvicorn_config
    from vkit.workflows.serve.service import ServeSettings

    obj = ctx.find_root().obj or {}
    settings = ServeSettings(
        checkpoints=list(checkpoints), host=host, port=port, token=token, db_url=obj.get("db_url"),
        data_root=Path(data_root) if data_root else None, stage=stage, precision=precision, replicas=replicas,
        loaders=loaders, max_batch=max_batch, max_wait_ms=max_wait_ms, max_upload_mb=max_upload_mb,
        max_seconds=max_seconds, max_jobs=max_jobs, plugins=list(obj.get("plugins", ())))
    app = build_app(settings)
    service = app.state.service
    for name, served in service.tasks.items():
        click.echo(f"serving {name}: model {served.sha256[:12]} ({served.precision}, {len(served.replicas)} "
                   f"replica(s)), run {service.runs[name]}", err=True)
    click.echo(f"inputs read by {settings.loaders} loader process(es)" if settings.loaders
               else "inputs read on threads of this process (--loaders 0)", err=True)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"vkit serve on http://{shown}:{port}/ (API docs: /docs; store {service.store.url}; pid {os.getpid()})",
               err=True)
    config = uvicorn_config(app, host=host, port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=30)  # leaves the process's other log handlers open
    uvicorn.Server(config).run()  # SIGINT/SIGTERM: a graceful stop (rows written, runs finished), then the signal
