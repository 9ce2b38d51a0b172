"""Run work folders: absolute, one per store and run, never shared, and marked with the run that owns them.

Every ``vkit run`` writes ``vkit-run.json`` (the folder's sidecar: store
identity, run id, task) into its work folder before anything else. The default
folder is ``<cwd>/work_dirs/<task>-run<N>-<store identity>`` (a fresh ``-2``,
``-3`` ... when that exists), so store A's run 1 and store B's run 1 never
share one; a ``--work-dir`` that already holds a run's files is refused.
``vkit runs delete --work-dir`` removes a folder only when :func:`ownership`
says it is the run's own.

Example::

    folder = new_work_dir(Path("work_dirs"), "medical-diagnosis", 3, store.identity)
    mark_work_dir(folder, store.identity, 3, "medical-diagnosis")
    ownership(folder, store.identity, 3) is None        # True: the run's own folder
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vkit.registry.errors import ConfigError

#: The folder's sidecar: which store's which run made it.
MARKER = "vkit-run.json"
#: Files that mean a folder already holds a run's model.
RUN_FILES = (MARKER, "model.safetensors", "model.json")


def new_work_dir(root: str | Path, task: str, run_id: int, store_identity: str) -> Path:
    """Create and return a fresh absolute folder ``root/<task>-run<N>-<store identity>`` (``-2``... if taken).

    Example::

        new_work_dir("work_dirs", "medical-diagnosis", 1, "3f2a9c1e")   # /abs/work_dirs/medical-diagnosis-run1-3f2a9c1e
    """
    base = Path(root).expanduser().resolve() / f"{task}-run{run_id}-{store_identity}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        folder = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise ConfigError(f"work dir {base}: 10,000 folders of that name exist; remove old ones or pass --work-dir")


def check_work_dir_free(folder: str | Path) -> Path:
    """``folder`` made absolute; refused (a :class:`ConfigError`) when it already holds a run's model or marker.

    Example::

        check_work_dir_free("my-run")      # Path('/abs/my-run'), or ConfigError naming the run it holds
    """
    path = Path(folder).expanduser().resolve()
    held = [name for name in RUN_FILES if (path / name).exists()]
    if held:
        owner = folder_owner(path) or _model_owner(path)
        who = f"run {owner.get('run_id')} of store {owner.get('store', '?')}" if owner else "another run's files"
        raise ConfigError(f"--work-dir {path}: already holds {who} ({', '.join(held)}); vkit never overwrites a "
                          f"run's folder: pass a new folder, or leave --work-dir out for a fresh one")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--work-dir {path}: exists and is not a folder")
    return path


def mark_work_dir(folder: str | Path, store_identity: str, run_id: int, task: str) -> Path:
    """Create ``folder`` if needed and write its :data:`MARKER` (exclusively: a marker already there is refused)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    record = dict(store=store_identity, run_id=int(run_id), task=task,
                  created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:
        with open(path / MARKER, "x", encoding="utf-8") as handle:
            handle.write(json.dumps(record, indent=2) + "\n")
    except FileExistsError:
        raise ConfigError(f"work dir {path}: another run marked it first ({folder_owner(path)}); "
                          f"vkit never shares a run's folder") from None
    return path / MARKER


def folder_owner(folder: str | Path) -> dict[str, Any] | None:
    """The :data:`MARKER` record of ``folder`` (``store``, ``run_id``, ``task``), or ``None`` when absent or unreadable."""
    return _json(Path(folder) / MARKER)


def ownership(folder: str | Path, store_identity: str, run_id: int, meta_sha256: str | None = None) -> str | None:
    """``None`` when ``folder`` is run ``run_id``'s own in store ``store_identity``, else why not (one line).

    Its marker must name the run and store; a folder from before markers
    counts as the run's when its ``model.json`` has the sha256 the store
    recorded for the run's sidecar (``meta_sha256``).

    Example::

        ownership(folder, store.identity, 3)    # None, or "its vkit-run.json names run 4 of store 3f2a9c1e"
    """
    path = Path(folder)
    if not path.is_dir():
        return "missing" if not os.path.lexists(path) else "not a folder"
    owner = folder_owner(path)
    if owner is not None:
        if owner.get("run_id") == run_id and owner.get("store") == store_identity:
            return None
        return f"its {MARKER} names run {owner.get('run_id')} of store {owner.get('store')}, not run {run_id} of store {store_identity}"
    if meta_sha256 and (path / "model.json").is_file():
        from vkit.core.store.provenance import sha256_file

        if sha256_file(path / "model.json")[0] == meta_sha256:
            return None
        return f"its model.json is not the one the store recorded for run {run_id}"
    return f"no {MARKER} or recorded model.json names run {run_id}"


def _model_owner(folder: Path) -> dict[str, Any] | None:
    meta = _json(folder / "model.json")
    return dict(run_id=meta.get("run_id"), store=meta.get("store", "?")) if meta and "run_id" in meta else None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


__all__ = ["MARKER", "check_work_dir_free", "folder_owner", "mark_work_dir", "new_work_dir", "ownership"]
