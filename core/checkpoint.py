"""Safe checkpoints: weights as safetensors, everything else in a JSON sidecar.

``model.safetensors`` holds the tensors; ``model.json`` beside it holds the
caller's ``meta`` (config, classes, metrics, ...) plus what vkit adds: the
vkit version, the sha256 and size of the weights file and the tensor count.
Loading never unpickles: safetensors is plain data, and a ``.pth``/``.pt``
from elsewhere goes only through ``torch.load(weights_only=True)``.

Example::

    path = save_checkpoint(model, "out/model.safetensors", meta=dict(classes=["neg", "pos"]))
    state_dict, meta = load_checkpoint(path, model)      # loads into model, strict
    meta["sha256"] == sha256_file(path)[0]               # True
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from vkit.core.store.jsonable import to_jsonable
from vkit.core.store.provenance import sha256_file
from vkit.registry.errors import CheckpointError, ConfigError, did_you_mean

__all__ = ["SafetensorsCheckpointHook", "load_checkpoint", "load_meta", "save_checkpoint", "sha256_file"]

#: Suffixes loaded with ``torch.load(weights_only=True)`` (never plain pickle).
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
#: Sidecar keys vkit writes; a caller's ``meta`` cannot override them.
RESERVED_KEYS = ("format", "weights", "sha256", "bytes", "tensors", "vkit_version", "created")
_FORMAT = "vkit-checkpoint/1"


def _vkit_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("vkit")
    except metadata.PackageNotFoundError:
        return "unknown"


def _state_dict(model_or_state_dict: torch.nn.Module | Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two keys sharing memory (tied weights are cloned)."""
    if isinstance(model_or_state_dict, torch.nn.Module):
        source: Mapping[str, Any] = model_or_state_dict.state_dict()
    elif isinstance(model_or_state_dict, Mapping):
        source = model_or_state_dict
    else:
        raise CheckpointError(
            f"{path}: expected an nn.Module or a state dict, got {type(model_or_state_dict).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: state dict key {key!r} holds a {type(value).__name__}, expected a tensor; "
                "put non-tensor data in meta"
            )
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        if storage.nbytes():
            whole = tensor.data_ptr() == storage.data_ptr() and tensor.numel() * tensor.element_size() == storage.nbytes()
            if storage.data_ptr() in seen or not whole:
                tensor = tensor.clone()
            seen.add(tensor.untyped_storage().data_ptr())
        out[str(key)] = tensor
    return out


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(
    model_or_state_dict: torch.nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the weights to ``path`` (``.safetensors``) and ``meta`` to ``path.with_suffix('.json')``.

    Tied (shared) tensors and non-contiguous ones are saved as independent
    copies, so every key of the state dict comes back on load. Both files are
    written atomically (temp file + rename).

    Args:
        model_or_state_dict: an ``nn.Module`` (its ``state_dict()``) or a mapping of tensors.
        path: the weights file; must end with ``.safetensors``.
        meta: JSON-able data for the sidecar (config, classes, metrics, ...);
            converted with :func:`vkit.core.store.jsonable.to_jsonable`. The keys
            in :data:`RESERVED_KEYS` are vkit's and are replaced.

    Returns:
        the weights path.

    Example::

        save_checkpoint(model, "runs/1/model.safetensors", meta=dict(classes=["a", "b"], metrics={"auc": 0.9}))
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: a vkit checkpoint must end with '.safetensors', got {path.suffix or 'no suffix'!r}")
    state = _state_dict(model_or_state_dict, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": "pt", "vkit_format": _FORMAT}
    _atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=header))
    digest, size = sha256_file(path)
    sidecar = dict(to_jsonable(dict(meta or {})))
    sidecar.update(
        format=_FORMAT, weights=path.name, sha256=digest, bytes=size, tensors=len(state),
        vkit_version=_vkit_version(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    _write_sidecar(path, sidecar)
    return path


def _write_sidecar(path: Path, sidecar: dict[str, Any]) -> None:
    text = json.dumps(sidecar, indent=2, sort_keys=True, allow_nan=False)
    _atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def load_meta(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of the checkpoint at ``path`` (``x.safetensors`` → ``x.json``).

    Example::

        load_meta("runs/1/model.safetensors")["classes"]
    """
    path = Path(path)
    sidecar = path if path.suffix == ".json" else path.with_suffix(".json")
    if not sidecar.is_file():
        raise CheckpointError(f"{path}: its metadata file {sidecar} is missing (written by save_checkpoint)")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{sidecar}: not a readable JSON checkpoint sidecar: {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{sidecar}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _convert_hint(path: Path) -> str:
    return (
        "; if you trust its source, convert it on a trusted machine with: python -c \"import torch; "
        "from safetensors.torch import save_file; sd = torch.load('IN.pth', weights_only=False); "
        "sd = sd.get('state_dict', sd); save_file({k: v.contiguous() for k, v in sd.items()}, "
        f"'{path.with_suffix('.safetensors').name}')\""
    )


def _load_torch(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from vkit.core import compat

    compat.allow_mmengine_checkpoints()  # mmengine's own files load with weights_only too
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, zipfile errors ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused to load: torch.load(weights_only=True) failed ({first}); vkit never unpickles "
            f"arbitrary objects{_convert_hint(path)}"
        ) from err
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                if isinstance(obj.get("meta"), Mapping):
                    meta = dict(to_jsonable(obj["meta"]))
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        bad = type(obj).__name__ if not isinstance(obj, Mapping) else next(
            f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, torch.Tensor))
        raise CheckpointError(f"{path}: expected a state dict of tensors, found {bad}{_convert_hint(path)}")
    return {str(k): v for k, v in obj.items()}, meta


def _load_safetensors(path: Path, verify: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = load_meta(path) if path.with_suffix(".json").is_file() else {}
    if verify and "sha256" in meta:
        digest, _ = sha256_file(path)
        if digest != meta["sha256"]:
            raise CheckpointError(
                f"{path}: sha256 {digest} does not match {meta['sha256']} recorded in "
                f"{path.with_suffix('.json')}; the weights were changed or corrupted"
            )
    try:
        return load_file(str(path), device="cpu"), meta
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file: {err}") from err


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, strict: bool) -> None:
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path} does not match {type(model).__name__}: missing keys {missing}, unexpected keys {unexpected}"
        )
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:  # shape mismatches
        detail = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip()) or str(err)
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: {detail}") from err


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | None = None,
    *,
    strict: bool = True,
    verify: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint's tensors (on CPU) and its metadata, and into ``model`` if given.

    Args:
        path: a ``.safetensors`` file (with or without its JSON sidecar), or a
            ``.pth``/``.pt``/``.bin``/``.ckpt`` that ``torch.load(weights_only=True)``
            accepts (a plain state dict, or a dict holding one under
            ``state_dict``/``model``, e.g. mmengine's).
        model: load the tensors into it (``load_state_dict``).
        strict: missing or unexpected keys are a :class:`CheckpointError` listing them.
        verify: check the weights' sha256 against the sidecar.

    Returns:
        ``(state_dict, meta)``; ``meta`` is ``{}`` when there is no sidecar.

    Example::

        state, meta = load_checkpoint("runs/1/model.safetensors", model)
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" + ("" if path.parent.is_dir() else f" (no folder {path.parent})"))
    if path.suffix == ".safetensors":
        state, meta = _load_safetensors(path, verify)
    elif path.suffix in TORCH_SUFFIXES:
        state, meta = _load_torch(path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint type {path.suffix!r}; expected .safetensors or one of {TORCH_SUFFIXES}")
    if model is not None:
        _load_into(model, state, path, strict)
    return state, meta


class SafetensorsCheckpointHook(Hook):
    """mmengine hook writing safetensors checkpoints (+ JSON meta) into the runner's ``work_dir``.

    Writes ``epoch_N.safetensors`` every ``interval`` epochs, ``last.safetensors``
    after each of those and at the end of training, and ``best.safetensors``
    whenever the validation metric ``save_best`` improves. Registered in
    mmengine's ``HOOKS`` as ``VkitSafetensorsCheckpointHook``.

    Args:
        interval: epochs between ``epoch_N`` files; ``0`` writes only ``last``/``best``.
        save_best: a validation metric key (e.g. ``'auc'``) or ``None``.
        rule: ``'greater'`` or ``'less'``: which way ``save_best`` improves.
        max_keep: keep at most this many ``epoch_N`` files (oldest removed); ``None`` keeps all.
        meta: extra sidecar data for every file (e.g. ``classes``).

    Example::

        runner = Runner(..., custom_hooks=[dict(type='VkitSafetensorsCheckpointHook', save_best='acc')])
    """

    priority = "VERY_LOW"

    def __init__(
        self,
        interval: int = 1,
        save_best: str | None = None,
        rule: str = "greater",
        max_keep: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(interval, int) or interval < 0:
            raise ConfigError(f"VkitSafetensorsCheckpointHook.interval: expected an int >= 0, got {interval!r}")
        if rule not in ("greater", "less"):
            raise ConfigError(f"VkitSafetensorsCheckpointHook.rule: expected 'greater' or 'less', got {rule!r}")
        if max_keep is not None and (not isinstance(max_keep, int) or max_keep < 1):
            raise ConfigError(f"VkitSafetensorsCheckpointHook.max_keep: expected None or an int >= 1, got {max_keep!r}")
        self.interval, self.save_best, self.rule, self.max_keep = interval, save_best, rule, max_keep
        self.meta = dict(meta or {})
        self.best: float | None = None
        self.last_metrics: dict[str, Any] = {}
        self._written: list[Path] = []
        self._last_iter: int | None = None
        self._fresh: list[Path] = []

    def _save(self, runner: Any, name: str, **extra: Any) -> Path:
        from mmengine.model import is_model_wrapper

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        meta: dict[str, Any] = dict(self.meta, epoch=runner.epoch, iter=runner.iter, metrics=self.last_metrics)
        meta.update(extra)
        dataset_meta = getattr(model, "dataset_meta", None)
        if isinstance(dataset_meta, Mapping) and "classes" in dataset_meta:
            meta.setdefault("classes", dataset_meta["classes"])
        return save_checkpoint(model, Path(runner.work_dir) / name, meta=meta)

    def after_train_epoch(self, runner: Any) -> None:
        from mmengine.dist import is_main_process

        if not is_main_process() or not self.interval or not self.every_n_epochs(runner, self.interval):
            return
        path = self._save(runner, f"epoch_{runner.epoch + 1}.safetensors", epoch=runner.epoch + 1)
        last = self._save(runner, "last.safetensors", epoch=runner.epoch + 1)
        self._last_iter, self._fresh = runner.iter, [path, last]
        self._written.append(path)
        while self.max_keep is not None and len(self._written) > self.max_keep:
            old = self._written.pop(0)
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        from mmengine.dist import is_main_process

        self.last_metrics = dict(to_jsonable(metrics or {}))
        if self._last_iter == runner.iter and is_main_process():
            # mmengine validates after after_train_epoch: put this epoch's metrics in the files it just wrote
            for path in self._fresh:
                if path.is_file():
                    _write_sidecar(path, dict(load_meta(path), metrics=self.last_metrics))
        if not self.save_best or not is_main_process() or not metrics:
            return
        if self.save_best not in metrics:
            raise ConfigError(
                f"VkitSafetensorsCheckpointHook.save_best: no metric {self.save_best!r} among {sorted(metrics)}"
                f"{did_you_mean(self.save_best, metrics)}"
            )
        value = float(metrics[self.save_best])
        better = self.best is None or (value > self.best if self.rule == "greater" else value < self.best)
        if better:
            self.best = value
            self._save(runner, "best.safetensors", best_metric=self.save_best, best_value=value)

    def after_train(self, runner: Any) -> None:
        from mmengine.dist import is_main_process

        if is_main_process() and self._last_iter != runner.iter:
            self._save(runner, "last.safetensors")


if "VkitSafetensorsCheckpointHook" not in HOOKS.module_dict:
    HOOKS.register_module(name="VkitSafetensorsCheckpointHook", module=SafetensorsCheckpointHook)
