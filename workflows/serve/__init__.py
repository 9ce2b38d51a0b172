"""``vkit serve``: trained models behind an HTTP API (FastAPI on uvicorn), see ``docs/serve.md``.

:mod:`~vkit.workflows.serve.app` (routes), :mod:`~vkit.workflows.serve.service` (settings and state),
:mod:`~vkit.workflows.serve.batcher` (dynamic batching), :mod:`~vkit.workflows.serve.models` (replicas),
:mod:`~vkit.workflows.serve.recorder` (the ``serve`` run), :mod:`~vkit.workflows.serve.jobs` (scoring jobs),
:mod:`~vkit.workflows.serve.inputs` (uploads, paths, limits), :mod:`~vkit.workflows.serve.metrics` (Prometheus).

Example::

    from vkit.workflows.serve.app import build_app
    from vkit.workflows.serve.service import ServeSettings

    app = build_app(ServeSettings(checkpoints=["7"], data_root=Path("/data")))   # then uvicorn.run(app)
"""
