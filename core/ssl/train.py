"""The pretraining loop: decoded clips on disk → random views → objective → AdamW with warm-up and cosine decay.

:class:`ClipCache` keeps each decoded video as one ``.npy`` array named by
its content sha256 (``uint8`` ``(S, C, T, H, W)`` clips of a video, or
``float16`` ``(1, C, D, H, W)`` for a scan), written atomically, read
memory-mapped: epochs after the first never decode, and a resumed run finds
what it decoded before. :class:`Pretrainer` runs epochs over the cache and
saves/restores its whole state (objective weights, optimizer, schedule,
random generators) as safetensors + JSON through
:func:`vkit.core.checkpoint.save_checkpoint` — nothing is unpickled on resume.

Example::

    trainer = Pretrainer(objective, augment, backbone, epochs=20, batch_size=16, lr=1e-3, steps_per_epoch=10)
    for epoch in range(trainer.epoch, 20):
        metrics = trainer.train_epoch([cache.get(sha) for sha in shas])   # {'loss': ..., 'invariance': ...}
        trainer.save_state(work_dir / "resume" / "state.safetensors")
"""
from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vkit.registry.errors import CheckpointError, ConfigError, DataError

__all__ = ["ClipCache", "Pretrainer"]

_STATE_FORMAT = "vkit-pretrain-resume/1"


class ClipCache:
    """Decoded clips by content sha256 in ``folder`` (``<sha256>.npy``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise DataError(f"clip cache {self.folder}: {sha256!r} is not a sha256 hex digest")
        return self.folder / f"{sha256}.npy"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, sha256: str, clips: np.ndarray) -> Path:
        """Store ``clips`` (atomically: a temp file renamed); pixels in 0..255 become uint8, anything else float16."""
        array = np.asarray(clips)
        pixels = array.dtype == np.uint8 or (array.size and array.min() >= 0 and array.max() <= 255
                                             and np.all(array == np.round(array)))
        array = array.astype(np.uint8 if pixels else np.float16)
        target = self.path(sha256)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def get(self, sha256: str) -> np.ndarray:
        """The clips of content ``sha256``, memory-mapped (a :class:`DataError` when missing or unreadable)."""
        path = self.path(sha256)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"clip cache file {str(path)!r} is missing or unreadable ({err}); resume decodes it "
                            "again if its video is still there") from err
        if array.ndim != 5:
            raise DataError(f"clip cache file {str(path)!r}: expected (S, C, T, H, W) clips, got shape {array.shape}")
        return array


def _schedule(warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


class Pretrainer:
    """Epochs of an objective over decoded clips, with a state that survives a restart.

    Args:
        objective: a :class:`~vkit.core.ssl.vicreg.VICReg` or :class:`~vkit.core.ssl.mae.TubeMAE`
            (``objective.views`` views per video, ``objective.loss(views)``).
        augment: makes one random view of a batch of clips (:mod:`vkit.core.ssl.augment`).
        backbone: the backbone inside ``objective`` (its ``normalize``).
        epochs: planned epochs (the cosine schedule's length).
        batch_size: videos per step (at least 2).
        lr, weight_decay: AdamW's.
        steps_per_epoch: optimizer steps in one epoch (``videos // batch_size``).
        warmup_epochs: epochs of linear warm-up.
        device: torch device.
        prepare: augmented RGB views ``(N, 3, T, h, w)`` (0..255) → the backbone's normalised input; by default
            ``backbone.normalize``; :meth:`vkit.core.ssl.inputs.InputSpec.prepare` feeds a task's input
            (frame differences, its mean/std).
    """

    def __init__(self, objective: nn.Module, augment: Any, backbone: nn.Module, *, epochs: int, batch_size: int,
                 lr: float, steps_per_epoch: int, weight_decay: float = 0.05, warmup_epochs: int = 1,
                 device: str = "cpu", prepare: Any = None) -> None:
        if batch_size < 2:
            raise ConfigError(f"pretrain: batch_size={batch_size}; expected at least 2 videos per step")
        self.objective, self.augment, self.backbone = objective.to(device), augment, backbone
        self.batch_size, self.device = int(batch_size), torch.device(device)
        self.optimizer = torch.optim.AdamW(objective.parameters(), lr=lr, weight_decay=weight_decay)
        total = max(1, epochs * steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _schedule(min(warmup_epochs * steps_per_epoch, total // 2), total))
        self.epoch = 0
        self.prepare = prepare if prepare is not None else backbone.normalize

    def views(self, clips: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """``objective.views`` normalised random views ``(N, C, T, h, w)`` of one batch of videos: each view takes
        another clip (segment) of its video when the video has enough, then its own crop, flip and colour."""
        count = int(getattr(self.objective, "views", 2))
        picks = []
        for array in clips:
            segments = array.shape[0]
            picks.append(np.random.choice(segments, count, replace=segments < count))
        out = []
        for v in range(count):
            batch = torch.from_numpy(np.stack([np.asarray(a[p[v]], dtype=np.float32) for a, p in zip(clips, picks)]))
            out.append(self.prepare(self.augment(batch)).to(self.device))
        return out

    def train_epoch(self, videos: Sequence[np.ndarray]) -> dict[str, float]:
        """One pass over ``videos`` (each ``(S, C, T, H, W)``) in a random order; mean loss and terms, and the lr."""
        if len(videos) < 2:
            raise DataError(f"pretrain: {len(videos)} decoded video(s); a step needs at least 2")
        self.objective.train()
        order = np.random.permutation(len(videos))
        size = min(self.batch_size, len(videos))
        sums: dict[str, float] = {}
        steps = 0
        for start in range(0, len(order) - size + 1, size):  # the last partial batch is left for the next epoch
            batch = [videos[i] for i in order[start:start + size]]
            loss, parts = self.objective.loss(self.views(batch))
            if not torch.isfinite(loss):
                raise DataError(f"pretrain: the loss became {float(loss)} at epoch {self.epoch + 1}; "
                                "lower --lr or check the clips")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), 3.0)
            self.optimizer.step()
            self.scheduler.step()
            for key, value in dict(loss=float(loss.detach()), **parts).items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
        self.epoch += 1
        metrics = {key: value / steps for key, value in sums.items()}
        metrics["lr"] = float(self.optimizer.param_groups[0]["lr"])
        return metrics

    # ------------------------------------------------------------------ resume state
    def save_state(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Everything a restart needs, as ``path`` (``.safetensors``) + its JSON sidecar."""
        from vkit.core.checkpoint import save_checkpoint
        from vkit.core.resume import _pack

        state = dict(epoch=self.epoch, objective=self.objective.state_dict(), optimizer=self.optimizer.state_dict(),
                     scheduler=self.scheduler.state_dict(),
                     rng=dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate()))
        tensors: dict[str, torch.Tensor] = {}
        layout = _pack(state, "s", tensors)
        return save_checkpoint(tensors, Path(path), meta=dict(kind=_STATE_FORMAT, layout=layout, **(extra or {})))

    def load_state(self, path: str | Path) -> dict[str, Any]:
        """Restore what :meth:`save_state` wrote (sha256-checked against its sidecar); returns the sidecar."""
        from vkit.core.checkpoint import load_checkpoint
        from vkit.core.resume import _unpack

        tensors, meta = load_checkpoint(Path(path))
        if meta.get("kind") != _STATE_FORMAT:
            raise CheckpointError(f"{path}: not a pretraining resume state (kind {meta.get('kind')!r})")
        state = _unpack(meta["layout"], tensors)
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(dict(state["scheduler"]))  # the schedule function is rebuilt; its step restored
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self.epoch = int(state["epoch"])
        return meta
