"""Resume an interrupted training run: a per-epoch resume state in the run's work dir, loaded before training.

mmengine's own resume (``Runner(resume=True)``) reads a pickled ``.pth`` with
``torch.load``; vkit never unpickles, so :class:`ResumeStateHook` writes what
``Runner.resume`` restores — the epoch and iteration, the model, optimizer and
LR-scheduler states, the random generators — plus what the lifecycle keeps in
memory (the best epoch's weights), as one safetensors file with a JSON sidecar
(:func:`vkit.core.checkpoint.save_checkpoint`, sha256-checked on load):
``<work_dir>/resume/state.safetensors`` + ``state.json``, rewritten after every
epoch. With ``load=True`` it restores them in ``before_train``, and the train
loop goes on from the next epoch. :func:`vkit.core.lifecycle.run_lifecycle`
deletes the folder when the run finishes.

Example::

    hook = ResumeStateHook(work_dir / "resume", load=True, extra=best_state)
    runner = build_runner(model, ..., extra_hooks=[hook])
    runner.train()            # starts at the epoch after the last one saved
"""
from __future__ import annotations

import math
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from mmengine.hooks import Hook

from vkit.registry.errors import CheckpointError

#: The folder under a run's work dir that holds its resume state.
RESUME_DIR = "resume"
STATE = "state.safetensors"
_FORMAT = "vkit-resume/1"


class Resumable(Protocol):
    """Something besides the Runner whose state a resume must restore (e.g. the lifecycle's best weights)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def resume_path(work_dir: str | Path) -> Path:
    """The resume state file of the run writing into ``work_dir``."""
    return Path(work_dir) / RESUME_DIR / STATE


def has_resume_state(work_dir: str | Path) -> bool:
    """Whether ``work_dir`` holds a resume state (a run interrupted after at least one epoch)."""
    return resume_path(work_dir).is_file()


def discard_resume_state(work_dir: str | Path) -> None:
    """Delete the resume state of a run that finished (nothing to resume any more)."""
    shutil.rmtree(Path(work_dir) / RESUME_DIR, ignore_errors=True)


class ResumeStateHook(Hook):
    """Writes the training state after every epoch (after its validation) and, with ``load``, restores it first.

    Args:
        folder: where the state goes (``<work_dir>/resume``).
        load: restore the saved state in ``before_train`` (a :class:`CheckpointError` when there is none).
        extra: more state to save and restore (``state_dict()`` / ``load_state_dict()``).
    """

    priority = "LOWEST"  # after every other hook of the epoch (the best-weights keeper included)

    def __init__(self, folder: str | Path, *, load: bool = False, extra: Resumable | None = None) -> None:
        self.folder, self.load, self.extra = Path(folder), bool(load), extra
        self._validates = False
        self.resumed_epoch: int | None = None

    def before_train(self, runner: Any) -> None:
        loop = runner.train_loop
        self._validates = runner.val_loop is not None and getattr(loop, "val_interval", 0) == 1
        if self.load:
            self.resumed_epoch = self._restore(runner)

    def after_train_epoch(self, runner: Any) -> None:
        if not self._validates:
            self._save(runner, done=runner.epoch + 1)  # mmengine counts the epoch only after this hook

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        if self._validates and runner.train_loop is not None and runner.epoch > 0:
            self._save(runner, done=runner.epoch)

    # ------------------------------------------------------------------ state
    def _save(self, runner: Any, done: int) -> None:
        from mmengine.dist import is_main_process

        from vkit.core.checkpoint import save_checkpoint

        if not is_main_process():
            return
        state = dict(
            epoch=done, iter=runner.iter, model=_model(runner).state_dict(), optimizer=runner.optim_wrapper.state_dict(),
            schedulers=[s.state_dict() for s in _schedulers(runner)],
            rng=dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate()),
            extra=self.extra.state_dict() if self.extra is not None else None,
        )
        tensors: dict[str, torch.Tensor] = {}
        layout = _pack(state, "s", tensors)
        save_checkpoint(tensors, resume_path(self.folder.parent), meta=dict(kind=_FORMAT, layout=layout))

    def _restore(self, runner: Any) -> int:
        from vkit.core.checkpoint import load_checkpoint

        path = resume_path(self.folder.parent)
        if not path.is_file():
            raise CheckpointError(f"{path}: no resume state (the run stopped before its first epoch ended, "
                                  "or it finished); start it again with `vkit run`")
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") != _FORMAT:
            raise CheckpointError(f"{path}: not a vkit resume state (kind {meta.get('kind')!r}, expected {_FORMAT!r})")
        state = _unpack(meta["layout"], tensors)
        _model(runner).load_state_dict(state["model"])
        runner.optim_wrapper.load_state_dict(state["optimizer"])
        schedulers = _schedulers(runner)
        if len(schedulers) != len(state["schedulers"]):
            raise CheckpointError(f"{path}: {len(state['schedulers'])} LR schedulers saved, the run has {len(schedulers)}")
        for scheduler, saved in zip(schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        runner.train_loop._epoch, runner.train_loop._iter = int(state["epoch"]), int(state["iter"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if self.extra is not None and state["extra"] is not None:
            self.extra.load_state_dict(state["extra"])
        return int(state["epoch"])


def _model(runner: Any) -> torch.nn.Module:
    from mmengine.model import is_model_wrapper

    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def _schedulers(runner: Any) -> list[Any]:
    schedulers = runner.param_schedulers or []
    if isinstance(schedulers, Mapping):
        return [s for group in schedulers.values() for s in group]
    return list(schedulers)


# ---------------------------------------------------------------------- (de)serialising nested state
def _pack(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON for ``value`` with every tensor (and numpy array) moved into ``tensors`` under a key of its path.

    Int dict keys (optimizer state), tuples (RNG states) and non-finite floats survive the round trip.
    """
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        tensors[key] = torch.from_numpy(value.astype(np.int64) if value.dtype.kind in "ui" else value.copy())
        return {"__ndarray__": key, "dtype": value.dtype.str}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _pack(v, f"{key}.{k}", tensors) for k, v in value.items()}
        return {"__items__": [[k, _pack(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_pack(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"resume state: cannot store {key} (a {type(value).__name__})")


def _unpack(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`_pack`."""
    if isinstance(value, list):
        return [_unpack(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy().astype(np.dtype(value["dtype"]))
    if "__items__" in value:
        return {k: _unpack(v, tensors) for k, v in value["__items__"]}
    if "__tuple__" in value:
        return tuple(_unpack(v, tensors) for v in value["__tuple__"])
    if "__float__" in value:
        return float(value["__float__"])
    return {k: _unpack(v, tensors) for k, v in value.items()}


__all__ = ["RESUME_DIR", "ResumeStateHook", "discard_resume_state", "has_resume_state", "resume_path"]
