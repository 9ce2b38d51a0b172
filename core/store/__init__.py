"""vkit's SQL store: runs, metrics, artifacts, predictions, videos, scores and events (SQLite or PostgreSQL).

``open_store()`` opens ``$VKIT_DB_URL`` or SQLite ``./vkit.db``, creating it
at the newest schema or refusing an out-of-date one; ``upgrade``/``current``
back ``vkit db upgrade|current``. Reads return plain dicts.

Example::

    from vkit.core.store import open_store

    store = open_store("sqlite:///runs/vkit.db")
    run_id = store.start_run("demo-classify", "education", {"seed": 0}, seed=0)
    store.log_metrics(run_id, {"acc": 0.9}, step=1, split="val")
    store.finish_run(run_id)
"""
from __future__ import annotations

from vkit.core.store.engine import ENV_VAR, default_url, mask_secrets, mask_url
from vkit.core.store.migrate import current, downgrade, head_revision, upgrade
from vkit.core.store.store import Store, open_store

__all__ = [
    "ENV_VAR",
    "Store",
    "current",
    "default_url",
    "downgrade",
    "head_revision",
    "mask_secrets",
    "mask_url",
    "open_store",
    "upgrade",
]
