"""What a backbone is pretrained on: the input a task will feed it (RGB frames, frame differences ...).

A task's model need not read RGB: ``education-engagement`` reads frame-to-frame
RGB differences (``data.channels='diff'``, TSN's *RGB difference*) normalised
by mean 0 / std 16. Weights pretrained on ImageNet-normalised RGB clips meet a
different input distribution there. :func:`task_input` reads what a task feeds
its video backbone from the task's own config (``vkit pretrain --for-task
TASK``): the input mode, frames, size and the data preprocessor's mean/std of
``model_config``, and the task's own transform (for ``diff`` / ``rgb+diff``:
:func:`vkit.plugins.education.data.to_model_input`, imported, not copied).

Pretraining keeps decoding RGB clips (the clip cache stays ``uint8``); each
augmented view (crop, flip, colour on the *frames*, so a colour change is one
the scene could show) then goes through :meth:`InputSpec.prepare`: the task's
transform, then its normalisation. The run records :meth:`InputSpec.record`;
:func:`check_run_inputs` refuses ``pretrained='run:ID'`` whose run was
pretrained on another input mode than the config feeds.

A task with a volume backbone (``medical-diagnosis``: ``model.backbones.volume``
read through its ``data.transforms`` pipeline) gets input mode ``'volume'``:
each scan is decoded by the task's own loading pipeline
(:class:`vkit.core.ssl.decode.TaskVolumeDecoder`: RAS orientation, the
intensity window, resize; no augmentation), its ``intensity.mode='auto'``
resolved from the archive's scans as the task resolves it from its training
scans; the spec records the task's transforms with that window. Plain
``vkit pretrain`` of a volume backbone z-scores each scan (mode ``'zscore'``).

Where a config's input mode comes from (:func:`config_input_mode`): a task may
define ``pretrain_input_mode(cfg)``; otherwise ``data.channels`` for the
model's ``model.backbones.video`` when the config has it; for
``model.backbones.volume`` ``'volume'`` when the config has ``data.transforms``
(the task's pipeline), else ``'zscore'``; else ``'rgb'``.

Example::

    spec, backbone_cfg = task_input("education-engagement", task, cfg)   # cfg: the task's built config
    spec.mode, spec.mean, spec.std          # 'diff', (0.0, 0.0, 0.0), (16.0, 16.0, 16.0)
    views = spec.prepare(torch.rand(2, 3, 16, 32, 32) * 255)   # (2, 3, 16, 32, 32) differences / 16
"""
from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.registry.errors import ConfigError

__all__ = ["RGB", "VOLUME", "ZSCORE", "InputSpec", "check_run_inputs", "config_input_mode", "rgb_input", "run_input",
           "task_input"]

RGB = "rgb"
#: The config key naming the input a task's video model reads (education: ``'diff'``, ``'rgb+diff'``, ``'rgb'``).
MODE_KEY = "data.channels"
#: The model key whose input :data:`MODE_KEY` describes.
VIDEO_KEY = "model.backbones.video"
#: A volume task's backbone, and the config key of the task's loading pipeline that feeds it.
VOLUME_KEY = "model.backbones.volume"
TRANSFORMS_KEY = "data.transforms"
#: Input modes of a volume backbone: the task's pipeline (``--for-task``), or plain pretraining's z-scored scans.
VOLUME, ZSCORE = "volume", "zscore"
#: ``mode -> 'module:function'`` of the transform ``(frames (T, H, W, 3), mode) -> (C, T, H, W)`` (lazily imported).
TRANSFORMS: dict[str, str] = {"diff": "vkit.plugins.education.data:to_model_input",
                              "rgb+diff": "vkit.plugins.education.data:to_model_input"}
#: Keys of a backbone config that name weights to load: never part of what pretraining builds.
_WEIGHT_KEYS = ("pretrained", "pretrained_prefix", "pretrained_strict")


@dataclass
class InputSpec:
    """The input a backbone is pretrained on (stored in the run's config and its weights' sidecar).

    Args:
        mode: ``'rgb'``, or a task's input mode (``'diff'``, ``'rgb+diff'``).
        mean, std: per-channel normalisation of the model's input (the task's data preprocessor).
        num_frames, size: frames per clip and ``(H, W)`` the task samples.
        sampling: ``'dense'`` (consecutive frames, plain pretraining) or ``'uniform'`` (frames evenly over the
            whole clip, as the task samples: the step between frames, and so the size of a difference, matches).
        task: the task the input was read from (``None``: plain RGB pretraining).
        key: the config key the mode came from (``data.channels``, ``data.transforms``), for messages.
        transforms: for ``'volume'``: the task's ``data.transforms`` (intensity window resolved), what
            :class:`~vkit.core.ssl.decode.TaskVolumeDecoder` decodes each scan with.
        intensity_source: for ``'volume'``: where the intensity window came from (a sentence).
    """

    mode: str = RGB
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    num_frames: int = 8
    size: tuple[int, int] = (32, 32)
    sampling: str = "dense"
    task: str | None = None
    key: str | None = None
    transforms: dict[str, Any] | None = None
    intensity_source: str | None = None
    _transform: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        self.size = (int(self.size[0]), int(self.size[1]))
        if len(self.mean) != len(self.std) or not self.mean:
            raise ConfigError(f"input {self.mode!r}: mean {self.mean} and std {self.std} need one value per channel")
        if min(self.std) <= 0:
            raise ConfigError(f"input {self.mode!r}: std {self.std} must be positive")
        if self.mode not in (RGB, VOLUME, ZSCORE):
            self._transform = _transform(self.mode)

    @property
    def channels(self) -> int:
        return len(self.mean)

    def record(self) -> dict[str, Any]:
        """JSON-able, for the run's config and the weights' sidecar (``InputSpec(**record)`` rebuilds it)."""
        out = asdict(self)
        out.pop("_transform")
        out["mean"], out["std"], out["size"] = list(self.mean), list(self.std), list(self.size)
        return out

    def resolve_intensity(self, files: Sequence[str], choose: Callable[[list[str]], tuple[Any, str]]) -> None:
        """For ``'volume'``: the task's ``intensity.mode='auto'`` resolved from ``files`` (the archive's scans) by
        the task's own ``choose`` (the medical plugin's ``choose_intensity``: ``files -> (window, why)``), as the
        task resolves it from its training scans."""
        if self.mode != VOLUME or self.transforms is None:
            return
        intensity = dict(self.transforms.get("intensity") or {"mode": "auto"})
        if intensity.get("mode", "auto") != "auto":
            self.intensity_source = self.intensity_source or f"configured: {TRANSFORMS_KEY}.intensity"
            return
        window, self.intensity_source = choose(list(files))
        self.transforms = dict(self.transforms, intensity=dict(window))

    def prepare(self, views: torch.Tensor) -> torch.Tensor:
        """Views ``(N, 3, T, h, w)`` of RGB frames (0..255) → the model's normalised input ``(N, C, T, h, w)``."""
        if self._transform is not None:
            frames = views.permute(0, 2, 3, 4, 1).cpu().numpy()  # (N, T, h, w, 3), the task's frame layout
            views = torch.stack([torch.as_tensor(self._transform(np.ascontiguousarray(f), self.mode)).float()
                                 for f in frames])
        if views.shape[1] != self.channels:
            raise ConfigError(f"input {self.mode!r}: the transform gave {views.shape[1]} channels, "
                              f"mean/std have {self.channels}")
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(self.mean, dtype=views.dtype).view(shape)
        std = torch.tensor(self.std, dtype=views.dtype).view(shape)
        return (views - mean) / std


def _transform(mode: str) -> Callable[..., Any]:
    target = TRANSFORMS.get(mode)
    if target is None:
        raise ConfigError(f"input mode {mode!r}: no transform known for it; expected 'rgb' or one of "
                          f"{sorted(TRANSFORMS)}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def rgb_input(backbone: Any) -> InputSpec:
    """Plain pretraining's input: RGB clips of consecutive frames, the backbone's own normalisation."""
    return InputSpec(mode=RGB, mean=tuple(backbone.mean), std=tuple(backbone.std),
                     num_frames=int(backbone.num_frames), size=tuple(backbone.input_size), sampling="dense")


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif hasattr(node, "get") and node.get(part) is not None:
            node = node.get(part)
        else:
            return None
    return node


def task_input(task_name: str, task: Any, cfg: Any) -> tuple[InputSpec, dict[str, Any]]:
    """``(input spec, backbone config)`` the task feeds its model, from its built config ``cfg`` (default config +
    ``--set`` pairs, :func:`vkit.workflows.pretrain.task_config` makes it) and its ``model_config``: its
    ``model.backbones.video``, or its ``model.backbones.volume`` read through ``data.transforms`` (mode
    ``'volume'``; the intensity window is resolved later from the scans, :meth:`InputSpec.resolve_intensity`).

    Raises:
        ConfigError: a task with neither backbone, or an input whose channels differ from the backbone's.
    """
    model = (task.model_config(cfg, None) if hasattr(task, "model_config")
             else copy.deepcopy(dict(cfg.get("model") or {})))
    backbones = model.get("backbones") or {}
    video, volume = backbones.get("video"), backbones.get("volume")
    if not (isinstance(video, Mapping) and "type" in video) and isinstance(volume, Mapping) and "type" in volume \
            and _get(cfg, TRANSFORMS_KEY) is not None:
        return _volume_input(task_name, cfg, volume)
    if not isinstance(video, Mapping) or "type" not in video:
        others = sorted(backbones)
        raise ConfigError(f"--for-task {task_name}: --for-task supports tasks with a video backbone ({VIDEO_KEY}) "
                          f"or a volume backbone fed by {TRANSFORMS_KEY} ({VOLUME_KEY}); this task's model has "
                          + (f"model.backbones.{', '.join(others)}" if others else
                             f"no backbones (its model config: {sorted(model)})")
                          + ": pretrain its backbone by name instead, `vkit pretrain TYPE ARCHIVE... --set "
                          "backbone.ARG=...` with the task's backbone arguments (`vkit config TASK` shows them)")
    backbone_cfg = {k: v for k, v in copy.deepcopy(dict(video)).items() if k not in _WEIGHT_KEYS}
    from vkit.registry.registries import BACKBONES

    backbone = BACKBONES.build(dict(backbone_cfg))  # only for its declared defaults (frames, size, mean/std)
    pre = model.get("data_preprocessor") or {}
    mean = (pre.get("mean") or {}).get("video") or backbone.mean
    std = (pre.get("std") or {}).get("video") or backbone.std
    mode = config_input_mode(cfg, VIDEO_KEY, task)
    frames = _get(cfg, "data.num_frames") or backbone.num_frames
    size = _get(cfg, "data.size") or backbone.input_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    spec = InputSpec(mode=mode, mean=tuple(mean), std=tuple(std), num_frames=int(frames), size=size,
                     sampling="uniform", task=task_name, key=MODE_KEY if _get(cfg, MODE_KEY) is not None else None)
    if spec.channels != int(backbone.in_channels):
        raise ConfigError(f"--for-task {task_name}: input {mode!r} has {spec.channels} channels but the task's "
                          f"backbone takes in_channels={backbone.in_channels}")
    return spec, backbone_cfg


def _plain(value: Any) -> Any:
    """A config node as JSON-able dicts / lists (ConfigDict and tuples included)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _volume_input(task_name: str, cfg: Any, volume: Mapping[str, Any]) -> tuple[InputSpec, dict[str, Any]]:
    """``task_input`` of a task whose ``model.backbones.volume`` reads scans through its ``data.transforms``."""
    from vkit.registry.registries import BACKBONES

    backbone_cfg = {k: v for k, v in copy.deepcopy(dict(volume)).items() if k not in _WEIGHT_KEYS}
    backbone = BACKBONES.build(dict(backbone_cfg))  # only for its declared size and channels
    channels = int(backbone.in_channels)
    transforms = _plain(_get(cfg, TRANSFORMS_KEY))
    transforms.pop("augment", None)  # pretraining augments views itself (VolumeAugment)
    spec = InputSpec(mode=VOLUME, mean=(0.0,) * channels, std=(1.0,) * channels,
                     num_frames=int(backbone.num_frames), size=tuple(backbone.input_size), sampling="task",
                     task=task_name, key=TRANSFORMS_KEY, transforms=transforms)
    return spec, backbone_cfg


def config_input_mode(cfg: Any, key: str, task: Any = None) -> str:
    """The input mode a config feeds the backbone at ``key``: ``task.pretrain_input_mode(cfg)`` where a task
    defines it, ``data.channels`` for ``model.backbones.video`` where the config has it, else ``'rgb'``."""
    hook = getattr(task, "pretrain_input_mode", None)
    if hook is not None:
        return str(hook(cfg))
    if key == VIDEO_KEY:
        value = _get(cfg, MODE_KEY)
        if value is not None:
            return str(value)
    if key == VOLUME_KEY:
        return VOLUME if _get(cfg, TRANSFORMS_KEY) is not None else ZSCORE
    return RGB


def run_input(weights: str | Path) -> dict[str, Any]:
    """The input record in a pretraining run's weights sidecar; without one (plain pretraining, or a run that
    predates it) ``{'mode': 'zscore'}`` for a volume backbone (z-scored scans), else ``{'mode': 'rgb'}``."""
    try:
        meta = json.loads(Path(weights).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return dict(mode=RGB)
    record = meta.get("input") if isinstance(meta, dict) else None
    if isinstance(record, dict) and record.get("mode"):
        return dict(record)
    info = meta.get("backbone_info") if isinstance(meta, dict) else None
    return dict(mode=ZSCORE if isinstance(info, dict) and info.get("modality") == "volume" else RGB)


def check_run_inputs(cfg: Any, reports: Mapping[str, Any]) -> None:
    """Refuse each ``pretrained='run:ID'`` (``reports``: ``{config key: LoadReport}``) whose pretraining run read
    another input mode than ``cfg`` feeds that backbone (a :class:`ConfigError` naming the key and both modes)."""
    for key, report in reports.items():
        ref = str(getattr(report, "ref", "") or "")
        if not ref.startswith("run:"):
            continue
        record = run_input(report.path)
        feeds = config_input_mode(cfg, key)
        if record["mode"] == feeds:
            continue
        plain = "z-scored scans" if record["mode"] == ZSCORE else "RGB clips"
        source = f"for task {record['task']!r}" if record.get("task") else f"(plain `vkit pretrain`, {plain})"
        if key == VOLUME_KEY:
            where = ("scans read by its data.transforms pipeline, with its intensity window" if feeds == VOLUME
                     else "z-scored scans")
        else:
            where = f"{MODE_KEY}={feeds!r}" if key == VIDEO_KEY and _get(cfg, MODE_KEY) is not None else "RGB clips"
        raise ConfigError(
            f"{key}.pretrained: {ref} was pretrained on input {record['mode']!r} {source}, but this config feeds "
            f"the backbone input {feeds!r} ({where}); the weights learnt another input distribution. Pretrain for "
            f"this input (`vkit pretrain --for-task TASK ARCHIVE` reads the task's input settings)"
            + (f", or set {MODE_KEY}={record['mode']!r}" if key == VIDEO_KEY else ""))
