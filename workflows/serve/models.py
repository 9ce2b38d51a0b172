"""The models ``vkit serve`` holds: one :class:`Replica` per model copy, decided as ``vkit predict`` decides.

A :class:`ServedTask` is one ``--checkpoint``: its task (read from the
checkpoint's sidecar), ``replicas`` copies of the model reloaded by
:func:`~vkit.core.trained.load_trained` (one load per replica, sha256-verified
against the store), and the micro-batcher that feeds them. A replica predicts
a batch of files the way ``vkit predict`` does (the task's
``prediction_dataset``, :func:`~vkit.core.evaluation.predict`, the run's
:class:`~vkit.core.decision.Decision` through
:func:`~vkit.workflows.predict.prediction_rows`), except that each input is
loaded on its own first (:func:`load_input`, in a loader process of
:mod:`~vkit.workflows.serve.loaders` or on a thread): a file that cannot be read
fails its own request with its reason (:class:`BadInput`), and the others of the
batch are predicted. A replica's backbones are put in their fast CPU inference
form, as ``vkit score``'s are (:func:`~vkit.core.backbones.prepare_for_inference`:
BatchNorm folded into the convolutions, ``channels_last_3d``); outputs equal
``vkit predict``'s to float rounding.

Example::

    served = ServedTask.load("7", store=store, manager=manager, replicas=1)
    rows = served.replicas[0].predict([Input(path="/data/a.nii.gz", name="a.nii.gz")])
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vkit.registry.errors import CheckpointError, ConfigError, DataError

__all__ = ["BadInput", "Input", "Replica", "ServedTask", "checkpoint_task", "load_input", "load_replicas",
           "prepare_model", "warm_loading"]

#: ``--precision`` values serve accepts (``int8`` quantizes ``vkit score``'s conv backbones only).
SERVE_PRECISIONS = ("fp32", "bf16", "auto")


class BadInput(DataError):
    """An input that cannot be predicted (unreadable, too long ...): HTTP 422 with the reason."""


@dataclass
class Input:
    """One file to predict: the server's own ``path`` and the ``name`` shown for it (never used as a path)."""

    path: str
    name: str
    source: str = "path"  # "path" (under --data-root) or "upload"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


class Replica:
    """One copy of a trained model and what it needs to predict files with it.

    Args:
        trained: the model as :func:`~vkit.core.trained.load_trained` returned it.
        task: the task instance (its ``prediction_dataset`` reads the files).
        precision: ``fp32`` or ``bf16`` (autocast; chosen by :func:`choose_precision`).
    """

    def __init__(self, trained: Any, task: Any, precision: str = "fp32") -> None:
        self.trained, self.task, self.precision = trained, task, precision
        self.sha256 = trained.sha256
        self.describe = trained.decision.describe(trained.classes)
        self.fast = prepare_model(trained.model)

    def predict(self, inputs: Sequence[Input]) -> list[dict[str, Any] | BaseException]:
        """One result per input: a prediction dict (``item``, ``class``, ``prediction``, ``probabilities``, ...) or a
        :class:`BadInput`. Raises only when the model itself fails (the batcher retries the batch elsewhere)."""
        return self.predict_loaded([(inputs[n], item) for n, item in self._load(inputs)])

    def load(self, item: Input) -> Any:
        """``item`` read and transformed (what the model's batch is collated from); raises :class:`BadInput`.
        Thread-safe: the server loads each request on its own thread or loader process, before batching."""
        loaded = load_input(self.task, self.trained.config, item)
        if isinstance(loaded, BaseException):
            raise loaded
        return loaded

    def predict_loaded(self, pairs: Sequence[tuple[Input, Any]]) -> list[dict[str, Any] | BaseException]:
        """Predict inputs already loaded (:meth:`load`) in one batch; a :class:`BadInput` passes through."""
        results: list[dict[str, Any] | BaseException | None] = [None] * len(pairs)
        good = [(n, loaded) for n, (_, loaded) in enumerate(pairs) if not isinstance(loaded, BaseException)]
        for n, (_, loaded) in enumerate(pairs):
            if isinstance(loaded, BaseException):
                results[n] = loaded
        if good:
            for (n, _), row in zip(good, self._forward([loaded for _, loaded in good])):
                results[n] = self._result(pairs[n][0], row)
        return results  # type: ignore[return-value]

    def _load(self, inputs: Sequence[Input]) -> list[tuple[int, Any]]:
        """Each input loaded (transforms applied) on its own, or its :class:`BadInput`."""
        paths = [i.path for i in inputs]
        try:
            datasets = [(list(range(len(paths))), self.task.prediction_dataset(self.trained.config, paths))]
        except (DataError, OSError, ValueError):  # one bad path spoils the whole dataset: one dataset each
            datasets = []
            for n, path in enumerate(paths):
                try:
                    datasets.append(([n], self.task.prediction_dataset(self.trained.config, [path])))
                except (DataError, OSError, ValueError) as err:
                    datasets.append(([n], _bad(inputs[n], err)))
        out = []
        for indices, dataset in datasets:
            if isinstance(dataset, BaseException):
                out.append((indices[0], dataset))
                continue
            if len(dataset) != len(indices):
                raise CheckpointError(f"task {self.task.name!r}: prediction_dataset made {len(dataset)} items of "
                                      f"{len(indices)} files")
            for k, n in enumerate(indices):
                try:
                    out.append((n, dataset[k]))
                except Exception as err:  # noqa: BLE001 - any failure to read one file is that file's
                    out.append((n, _bad(inputs[n], err)))
        return out

    def _forward(self, items: list[Any]) -> list[dict[str, Any]]:
        import torch

        from vkit.core.evaluation import predict
        from vkit.workflows.predict import prediction_rows

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            outputs = predict(self.trained.model, items, batch_size=len(items))
        for row in outputs:
            key = "probs" if "probs" in row else "value"
            row[key] = torch.as_tensor(row[key]).float()
        return prediction_rows(outputs, self.trained.decision)

    def _result(self, item: Input, row: dict[str, Any]) -> dict[str, Any]:
        trained = self.trained
        values = row["values"]
        prediction = row["prediction"]
        out = dict(item=item.name, request_id=item.request_id, prediction=prediction,
                   model_sha256=self.sha256, precision=self.precision, decision=self.describe)
        out["class"] = trained.class_name(prediction) if isinstance(prediction, int) else prediction
        if "probs" in values:
            out["probabilities"] = trained.labelled(values["probs"])
        else:
            out["values"] = values["value"]
        out["_row"] = row  # what the store gets (dropped from the response)
        return out


def load_input(task: Any, config: Any, item: Input) -> Any:
    """``item`` read and transformed by ``task.prediction_dataset(config, [path])`` (what the model's batch is
    collated from), or its :class:`BadInput` (returned, not raised). Runs in the server or in a loader process."""
    try:
        dataset = task.prediction_dataset(config, [item.path])
    except (DataError, OSError, ValueError) as err:
        return _bad(item, err)
    if len(dataset) != 1:
        raise CheckpointError(f"task {task.name!r}: prediction_dataset made {len(dataset)} items of 1 file")
    try:
        return dataset[0]
    except Exception as err:  # noqa: BLE001 - any failure to read the file is the file's
        return _bad(item, err)


def warm_loading(task: Any, config: Any) -> None:
    """Build ``task``'s prediction dataset of no files once, so that the modules its transforms import lazily are
    imported now (seconds for MONAI's) rather than on the first request. A task that cannot build an empty dataset
    is left to warm on its first request."""
    try:
        task.prediction_dataset(config, [])
    except Exception:  # noqa: BLE001 - only a warm-up; the first request pays instead
        pass


def prepare_model(model: Any) -> list[str]:
    """Put ``model``'s vkit backbones in their fast CPU inference form in place (eval, no grads, BatchNorm folded,
    the backbone's preferred memory format), as ``vkit score`` runs them; returns the modalities prepared. A model
    without vkit backbones (a compressed stand-in) is left as it is."""
    from vkit.core.backbones import prepare_for_inference
    from vkit.core.backbones.base import Backbone

    backbones = getattr(model, "backbones", None)
    if not hasattr(backbones, "items"):
        return []
    if hasattr(model, "eval"):
        model.eval()
    done = []
    for modality, backbone in backbones.items():
        if isinstance(backbone, Backbone):
            prepare_for_inference(backbone)
            done.append(modality)
    return done


def _bad(item: Input, err: BaseException) -> BadInput:
    """``err`` as the input's own failure, the server's file name replaced by the name the client knows."""
    text = f"{type(err).__name__}: {err}" if not isinstance(err, DataError) else str(err)
    text = text.replace(item.path, item.name)
    text = re.sub(r" \(case '[^']*', [^)]*\)", "", text)  # a dataset's case and split: the server's, not the client's
    text = text.removeprefix(f"{item.name}: ")  # named once, below
    if item.source == "upload":  # the server's own file name (random hex) means nothing to the client
        stem = Path(item.path).name.split(".")[0]
        text = text.replace(stem, "upload")
    return BadInput(f"{item.name}: cannot be read: {text}")


def choose_precision(requested: str, log: Any = None) -> tuple[str, str]:
    """``(precision, reason)`` for ``--precision``: ``bf16`` where the CPU computes it natively, else fp32;
    ``auto`` is ``bf16`` only there and fp32 otherwise."""
    if requested not in SERVE_PRECISIONS:
        raise ConfigError(f"--precision {requested!r}: vkit serve takes one of {list(SERVE_PRECISIONS)}")
    if requested == "fp32":
        return "fp32", "as requested"
    from vkit.core.precision import capabilities

    caps = capabilities()
    if not caps.bf16:
        return "fp32", f"{caps.bf16_reason}; running fp32"
    if requested == "auto":
        raise ConfigError("--precision auto: this CPU has native bf16, and serve has no validation inputs to gate "
                          "bf16 on; run `vkit predict --precision auto` on sample files and serve with the precision "
                          "it picks (--precision bf16 or fp32)")
    return "bf16", f"native bf16 on {caps.describe()}"


def checkpoint_task(ref: str, store: Any, option: str = "--checkpoint") -> tuple[Any, str]:
    """``(files, task name)`` of ``ref`` (a run id or a path), checked without loading a model: a file that is not
    a vkit checkpoint (no ``.json`` sidecar naming its task) is a :class:`CheckpointError` saying what is expected."""
    from vkit.core.checkpoint import load_meta
    from vkit.core.run_checkpoint import resolve_checkpoint

    expected = "expected a run id or a vkit checkpoint (a .safetensors with its .json sidecar written by vkit run)"
    files = resolve_checkpoint(ref, store, option=option)
    if files.weights.suffix != ".safetensors" or not files.sidecar.is_file():
        found = (f"{files.weights.name} has no sidecar {files.sidecar.name}" if files.weights.suffix == ".safetensors"
                 else f"{files.weights.name} is not a .safetensors file")
        raise CheckpointError(f"{option} {ref}: {expected}; {found}")
    task_name = load_meta(files.weights).get("task")
    if not task_name:
        raise CheckpointError(f"{option} {ref}: {expected}; its sidecar names no task")
    return files, task_name


def load_replicas(ref: str, *, store: Any, manager: Any, replicas: int, stage: str | None, precision: str,
                  expect_task: str | None = None, option: str = "--checkpoint") -> tuple[Any, list[Replica]]:
    """``(task, replicas)``: the checkpoint's task and ``replicas`` models loaded from ``ref`` (a run id or a path);
    ``option`` names it in errors (``--checkpoint`` on the command line, ``'checkpoint'`` over HTTP)."""
    from vkit.core.trained import load_trained

    files, task_name = checkpoint_task(ref, store, option=option)
    if expect_task is not None and task_name != expect_task:
        raise CheckpointError(f"{option} {ref}: a checkpoint of task {task_name!r}, not {expect_task!r}")
    task = manager.get_task(task_name)()
    manager.register_components(require=task.plugin)
    copies = [load_trained(files, store=store, task=task, stage=stage) for _ in range(replicas)]
    return task, [Replica(trained, task, precision) for trained in copies]


@dataclass
class ServedTask:
    """One served checkpoint: its task, its replicas and where they came from."""

    name: str
    task: Any
    replicas: list[Replica]
    checkpoint: str
    stage: str | None
    precision: str
    precision_reason: str

    @property
    def trained(self) -> Any:
        return self.replicas[0].trained

    @property
    def sha256(self) -> str:
        return self.replicas[0].sha256

    def can(self, capability: str) -> bool:
        """Whether the task declares ``capability`` (``predict``, ``score``, ``recommend``)."""
        return capability in getattr(self.task, "capabilities", frozenset())
