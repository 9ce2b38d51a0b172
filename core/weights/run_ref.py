"""``pretrained='run:ID'``: the backbone weights a ``vkit pretrain`` run stored, verified by the sha256 it recorded.

A pretraining run (``runs.kind = 'pretrain'``) records its weights as the
``checkpoint`` artifact (``backbone.safetensors``) and their JSON sidecar as
``checkpoint-meta``, each with its sha256. :func:`resolve_run_weights` finds
them and refuses — a :class:`CheckpointError` naming the run — a missing run,
a run that is not a pretraining run, an unfinished one, a missing file, and
weights or sidecar whose bytes no longer have the recorded sha256 (replaced,
edited, or another store's run of the same id).

Example::

    path, sha256 = resolve_run_weights("run:7", store)
    backbone = BACKBONES.build(dict(type="TinyC3D", pretrained=str(path)))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vkit.registry.errors import CheckpointError, ConfigError

__all__ = ["RUN_PREFIX", "parse_run_ref", "resolve_run_weights"]

RUN_PREFIX = "run:"
#: The run kind whose weights ``run:ID`` names.
PRETRAIN_KIND = "pretrain"


def parse_run_ref(ref: str) -> int:
    """The run id of ``'run:ID'`` (a :class:`ConfigError` for anything else).

    Example::

        parse_run_ref("run:7")     # 7
    """
    from vkit.core.run_checkpoint import MAX_RUN_ID

    text = str(ref).strip()
    digits = text[len(RUN_PREFIX):].strip() if text.startswith(RUN_PREFIX) else ""
    if not digits.isdigit() or not 1 <= int(digits) <= MAX_RUN_ID:
        raise ConfigError(f"pretrained={text!r}: expected 'run:ID' with the id of a `vkit pretrain` run "
                          f"(1 to {MAX_RUN_ID}), e.g. 'run:7'")
    return int(digits)


def resolve_run_weights(ref: str, store: Any) -> tuple[Path, str]:
    """``(weights path, sha256)`` of pretraining run ``ref`` (``'run:ID'``) in ``store``, both files verified.

    Raises:
        ConfigError: ``ref`` is not ``run:ID``.
        CheckpointError: no such run in the store; not a pretraining run; not finished (no weights yet);
            a file missing, or its sha256 differs from the one the store recorded.
    """
    from vkit.core.run_checkpoint import CheckpointFiles

    run_id = parse_run_ref(ref)
    label = f"pretrained='run:{run_id}'"
    run = store.get_run(run_id)
    if run is None:
        raise CheckpointError(f"{label}: no run {run_id} in the store at {store.url} (`vkit runs list --kind pretrain` "
                              "lists pretraining runs)")
    if run["kind"] != PRETRAIN_KIND:
        raise CheckpointError(f"{label}: run {run_id} is a {run['kind']} run of task {run['task']!r}, not a "
                              "`vkit pretrain` run" + (f"; its weights are a whole model (load it with --checkpoint "
                                                       f"{run_id})" if run["kind"] == "train" else "")
                              + " (`vkit runs list --kind pretrain` lists pretraining runs)")
    artifacts = store.run_artifacts(run_id)
    weights = [a for a in artifacts if a["kind"] == "checkpoint"]
    if not weights:
        raise CheckpointError(f"{label}: pretraining run {run_id} is {run['status']} and stored no weights yet"
                              + (f" (`vkit pretrain --resume {run_id}` finishes it)" if run["status"] != "finished" else ""))
    path = Path(weights[-1]["path"])
    files = CheckpointFiles(path, path.with_suffix(".json"), run_id, {str(a["path"]): str(a["sha256"]) for a in artifacts})
    if not path.is_file():
        raise CheckpointError(f"{label}: its weights {str(path)!r} (sha256 {weights[-1]['sha256']} in the store) "
                              "are missing")
    files.verify(path, "pretrained weights")
    if str(files.sidecar) in files.recorded:
        files.verify(files.sidecar, "pretrained weights' sidecar")
    return path.resolve(), str(weights[-1]["sha256"])
