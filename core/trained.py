"""``load_trained``: the one way to reload a trained run's model, for predict, score, recommend and every scorer.

A run's checkpoint (``model.safetensors``) carries everything in its JSON
sidecar (:func:`vkit.core.lifecycle.save_run_checkpoint`): the model's
architecture (``model_config``, the MODELS config :func:`vkit.core.model.build_model`
built it from), the metric's :class:`~vkit.core.decision.Decision`, the class
names and the task's own settings (its ``sampling``, events, ...). The model
is rebuilt from that alone, its weights loaded and checked against the sha256
the sidecar records; a run id is resolved through the store and every file
checked against the sha256 the store recorded (:mod:`vkit.core.run_checkpoint`).
A compressed stage (``stage="final"`` or a stage name) loads through the same
call. A sidecar written before ``model_config`` was saved is rebuilt by the
task (:meth:`vkit.core.task.Task.rebuild_model`).

Components must be registered first (a workflow calls the plugin manager's
``register_components``).

Example::

    trained = load_trained("3", store=store, task=task)          # run 3, verified against the store
    trained.decision.decide(trained.model(inputs).softmax(-1)[0].tolist())
    load_trained("work/model.safetensors", stage="final").sha256     # the chain's final model
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vkit.core.decision import Decision, sidecar_decision
from vkit.core.run_checkpoint import CheckpointFiles
from vkit.registry.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from mmengine.config import Config

    from vkit.core.task import Task


@dataclass
class Trained:
    """A trained model ready for inference, with what it was trained with.

    Attributes:
        model: the model, in eval mode on the requested device (a compressed stage's model when one was asked for).
        meta: the checkpoint's sidecar (``task``, ``config``, ``fitted``, the task's own settings ...).
        decision: how its outputs become a prediction (:class:`~vkit.core.decision.Decision`).
        classes: the class (or level) names, ``[]`` when the run recorded none.
        sha256: the identity of the model that runs: the checkpoint's, or the compressed stage's.
        files: the checkpoint's files, as resolved and verified.
        stage: the compressed stage's sidecar meta (``stage``, ``kind``, ``precision``, ``sha256``), or ``None``.
    """

    model: torch.nn.Module
    meta: dict[str, Any]
    decision: Decision
    classes: list[str]
    sha256: str
    files: CheckpointFiles
    stage: dict[str, Any] | None = None
    _config: Any = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """The run's full config (an mmengine ``Config``): the data settings the model was trained on."""
        if self._config is None:
            from mmengine.config import Config

            if not isinstance(self.meta.get("config"), dict):
                raise CheckpointError(f"{self.files.weights}: its sidecar has no 'config'; it was not written by `vkit run`")
            self._config = Config(self.meta["config"])
        return self._config

    @property
    def sampling(self) -> dict[str, Any]:
        """How the run cut videos into clips (the sidecar's ``sampling``: frames, size, windows ...), ``{}`` if none."""
        value = self.meta.get("sampling")
        return dict(value) if isinstance(value, dict) else {}

    def class_name(self, index: int) -> str | int:
        """The name of class ``index`` (the index itself when the run recorded no names)."""
        return self.classes[index] if 0 <= index < len(self.classes) else index

    def labelled(self, probs: Sequence[float]) -> dict[str, float]:
        """``{class name: probability}`` of one item (``"0"``, ``"1"`` ... when the run recorded no names).

        Example::

            trained.labelled([0.7, 0.3])   # {'negative': 0.7, 'positive': 0.3}
        """
        return {str(self.class_name(i)): float(p) for i, p in enumerate(probs)}


def load_trained(ref: str | Path | CheckpointFiles, *, store: Any = None, stage: str | None = None,
                 task: Task | None = None, device: str = "cpu") -> Trained:
    """The trained model of ``ref`` (a run id, a ``model.safetensors`` path, or resolved files).

    Args:
        ref: a run id (needs ``store``), a checkpoint path, or :class:`CheckpointFiles` already resolved.
        store: the open store a run id (or a path a run recorded) is verified against
            (:func:`vkit.core.run_checkpoint.resolve_checkpoint`); ``None``: a path, checked against its sidecar only.
        stage: ``"final"`` (the compression chain's final model) or a stage name; ``None``: the checkpoint.
        task: the task that should own the checkpoint; one trained by another task is refused by name,
            and an old sidecar without ``model_config`` is rebuilt by it.
        device: where the model goes.

    Raises:
        CheckpointError: unknown run, missing or edited file, another task's checkpoint, a sidecar without
            an architecture (and no task to rebuild it), no such compressed stage.
    """
    files = _files(ref, store)
    from vkit.core.checkpoint import load_checkpoint, load_meta

    meta = load_meta(files.weights)
    if task is not None:
        check_task(meta, task, files.weights)
    stage_meta = None
    if stage is None:
        model = _untrained(meta, task, files.weights)
        load_checkpoint(files.weights, model)
        sha256 = str(meta.get("sha256") or "")
    else:
        from vkit.core.compression import load_compressed

        stage_meta = compressed_stage(files, stage)
        model = load_compressed(stage_meta["sidecar"])
        sha256 = str(stage_meta["sha256"])
    model = model.to(device).eval()
    classes = [str(c) for c in meta.get("classes") or []]
    return Trained(model=model, meta=meta, decision=sidecar_decision(meta), classes=classes, sha256=sha256,
                   files=files, stage=stage_meta)


def compressed_stage(files: CheckpointFiles, stage: str) -> dict[str, Any]:
    """The sidecar meta of the compressed model saved beside ``files`` (``"final"`` or a stage name), its files
    checked against the sha256 the store recorded for the run."""
    folder = files.weights.parent / "compression"
    if not folder.is_dir():
        raise CheckpointError(f"--compressed: {str(folder)!r} does not exist; the run applied no compression stage")
    return files.compressed_meta(stage)


def check_task(meta: dict[str, Any], task: Any, path: Path) -> None:
    """A checkpoint written for another task is refused by name (not a ``KeyError`` deep in the model build)."""
    owner = meta.get("task")
    if owner and owner != task.name:
        plugin = f" (plugin {meta['plugin']!r})" if meta.get("plugin") else ""
        raise CheckpointError(f"--checkpoint {path}: trained by task {owner!r}{plugin}, not {task.name!r}; "
                              f"use `vkit predict {owner} ...` or a {task.name} checkpoint")


def _files(ref: str | Path | CheckpointFiles, store: Any) -> CheckpointFiles:
    if isinstance(ref, CheckpointFiles):
        return ref
    if store is not None:
        from vkit.core.run_checkpoint import resolve_checkpoint

        return resolve_checkpoint(ref, store)
    path = Path(ref).expanduser()
    if str(ref).strip().isdigit() and not path.exists():
        raise CheckpointError(f"checkpoint {ref}: a run id needs the store it was recorded in")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a regular file")
    return CheckpointFiles(path.resolve(), path.resolve().with_suffix(".json"))


def _untrained(meta: dict[str, Any], task: Any, path: Path) -> torch.nn.Module:
    """The model the sidecar's ``model_config`` describes, or the task's rebuild of an older sidecar."""
    config = meta.get("model_config")
    if isinstance(config, dict):
        from vkit.core.model import build_model

        return build_model(config)
    if task is None:
        raise CheckpointError(f"{path}: its sidecar records no 'model_config' (written before vkit saved the "
                              f"architecture); reload it through its task ({meta.get('task', 'unknown')!r})")
    try:
        return task.rebuild_model(meta)
    except KeyError as err:
        raise CheckpointError(f"{path}: its config has no {err} that task {task.name!r} needs; it was trained by "
                              f"task {meta.get('task', '(unknown)')!r}") from None


__all__ = ["Trained", "check_task", "compressed_stage", "load_trained"]
