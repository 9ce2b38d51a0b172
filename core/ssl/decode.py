"""What ``vkit pretrain`` decodes from each file: clips of a video, or a resized scan.

:class:`ClipDecoder` is a :class:`~vkit.core.scoring.SegmentScorer` without a
model: the scoring engine's :func:`~vkit.workflows.scoring.engine.prepare_video`
hashes, probes and decodes with it exactly as ``vkit score`` does (regular
files only, failures as outcomes with their reason, files that change while
read retried). Its clips are ``num_segments`` dense clips of the backbone's
``T`` frames, decoded a little larger than the backbone's input so that a
random crop has room. :class:`VolumeDecoder` reads a 3-D scan with MONAI
(``LoadImage``, channel first, ``Resize``, ``NormalizeIntensity``) and
:func:`prepare_volume` gives it the same outcome shape (the video probe does
not apply to NIfTI). :class:`TaskVolumeDecoder` (``vkit pretrain --for-task
medical-diagnosis``) reads a scan with the task's own pipeline instead
(:func:`vkit.plugins.medical.data.build_transforms` without augmentation:
orientation, the intensity window, resize), so pretraining sees the
intensities the task feeds its network.

Example::

    decoder = ClipDecoder(segments=4, frames=8, size=(36, 36))
    decoder.decode("a.mp4").shape        # (4, 3, 8, 36, 36) float32, pixels 0..255
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vkit.core.sampling import FrameSampler
from vkit.core.scoring import SegmentScorer
from vkit.registry.errors import ConfigError, DataError

__all__ = ["VOLUME_SUFFIXES", "ClipDecoder", "TaskClipDecoder", "TaskVolumeDecoder", "VolumeDecoder", "crop_room",
           "prepare_volume"]

#: File endings ``vkit pretrain`` takes from a folder for a volume backbone.
VOLUME_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".mha", ".nrrd")


def crop_room(size: Sequence[int], factor: float = 8 / 7) -> tuple[int, ...]:
    """The decoded size around a backbone input ``size``: ``factor`` larger, so a random crop has room."""
    return tuple(int(round(int(s) * factor)) for s in size)


def _identity(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class ClipDecoder(SegmentScorer):
    """Dense clips of a video for pretraining, ``(segments, 3, frames, H, W)`` float32 in 0..255.

    Args:
        segments: clips per video (the views of a video come from different ones).
        frames: ``T`` of each clip (the backbone's ``num_frames``).
        size: ``(H, W)`` the frames are resized to.
        frame_interval: the step between a clip's frames.
    """

    memory_format = "contiguous"

    def __init__(self, segments: int, frames: int, size: Sequence[int], frame_interval: int = 1) -> None:
        self.sampler = FrameSampler("dense", int(segments), int(frames), frame_interval=int(frame_interval))
        self.size = (int(size[0]), int(size[1]))
        self.settings = dict(kind="pretrain-clips", sampler=self.sampler.settings, size=list(self.size))
        self.model_sha256 = _identity(self.settings)
        self.min_frames = 1

    def score(self, clips: Any) -> Any:
        raise ConfigError("ClipDecoder only decodes clips for pretraining; it has no model to score with")


class TaskClipDecoder(ClipDecoder):
    """Clips sampled as a task samples them: ``frames`` evenly over the whole video (``FrameSampler("uniform")``,
    the education task's sampling), so the step between frames — the size of a frame difference — is the task's.

    ``segments`` clips come from ``segments * frames`` evenly spaced frames taken every ``segments``-th
    (clip ``s``: frames ``s, s + S, ...``), each with the task's step; a video too short for that gives its one
    task clip ``segments`` times (its views then differ by crop, flip and colour only).
    """

    def __init__(self, segments: int, frames: int, size: Sequence[int]) -> None:
        super().__init__(segments, frames, size)
        self.frames, self.segments = int(frames), int(segments)
        self.settings = dict(kind="pretrain-task-clips", sampling="uniform", segments=self.segments,
                             frames=self.frames, size=list(self.size))
        self.model_sha256 = _identity(self.settings)

    def decode(self, path: str) -> np.ndarray:
        from vkit.core.sampling import FrameSampler
        from vkit.core.video import probe

        info = probe(path)
        if info.frames < self.frames:
            raise DataError(f"{path}: too short: {info.frames} frames, the task samples {self.frames}")
        if info.frames >= self.frames * self.segments:
            frames = FrameSampler("uniform", 1, self.frames * self.segments).read(path, self.size, info=info)[0]
            clips = np.stack([frames[s::self.segments] for s in range(self.segments)])
        else:
            clip = FrameSampler("uniform", 1, self.frames).read(path, self.size, info=info)[0]
            clips = np.repeat(clip[None], self.segments, 0)
        return self.prepare(clips)


class VolumeDecoder:
    """A 3-D scan for pretraining, ``(1, C, D, H, W)`` float32, z-scored (MONAI ``NormalizeIntensity``).

    Args:
        size: ``(D, H, W)`` the scan is resized to.
        channels: channels the backbone takes (a single-channel scan is repeated to fit).
    """

    num_segments = 1

    def __init__(self, size: Sequence[int], channels: int = 1) -> None:
        if len(tuple(size)) != 3:
            raise ConfigError(f"volume decoder: size={size!r}; expected (D, H, W)")
        self.size, self.channels = tuple(int(s) for s in size), int(channels)
        self.settings = dict(kind="pretrain-volume", size=list(self.size), channels=self.channels)
        self.model_sha256 = _identity(self.settings)

    def decode(self, path: str) -> np.ndarray:
        from monai.transforms import Compose, EnsureChannelFirst, LoadImage, NormalizeIntensity, Resize

        try:
            volume = Compose([LoadImage(image_only=True), EnsureChannelFirst(), Resize(self.size, mode="trilinear"),
                              NormalizeIntensity()])(path)
        except Exception as err:  # MONAI wraps the reader's errors in RuntimeError / OSError / ValueError
            raise _unreadable(path, err) from err
        return self._fit(path, volume)

    def _fit(self, path: str, volume: Any) -> np.ndarray:
        """``(C, D, H, W)`` → ``(1, channels, D, H, W)`` float32 (a single-channel scan repeated to fit)."""
        array = np.asarray(volume, dtype=np.float32)  # (C, D, H, W); depth is the first spatial axis read
        if array.shape[0] != self.channels:
            if array.shape[0] != 1:
                raise DataError(f"{path}: {array.shape[0]} channels; the backbone takes {self.channels}")
            array = np.repeat(array, self.channels, 0)
        return array[None]


def _unreadable(path: str, err: BaseException) -> DataError:
    """The reader's own reason under MONAI's "applying transform <LoadImage ...>" wrapping, naming the file."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    lines = str(root).strip().splitlines()
    return DataError(f"{path}: not a readable volume ({type(root).__name__}: {lines[0] if lines else 'no detail'})")


class TaskVolumeDecoder(VolumeDecoder):
    """A scan read as a volume task reads it: its ``data.transforms`` pipeline made by the task's own ``build``
    (the medical plugin's ``build_transforms``, called with ``train=False``, no augmentation) at ``size``.

    Args:
        size: ``(D, H, W)`` the scan is resized to (the pipeline's ``size``).
        channels: channels the backbone takes (a single-channel scan is repeated to fit).
        transforms: the task's ``data.transforms`` with its intensity window resolved (``InputSpec.transforms``).
        build: ``(transforms config, train=False) -> callable`` on ``{"image": path}`` (a module-level function:
            decoding processes get it pickled).
    """

    def __init__(self, size: Sequence[int], channels: int, transforms: dict[str, Any],
                 build: Callable[..., Any]) -> None:
        super().__init__(size, channels)
        self.build = build
        intensity = dict((transforms or {}).get("intensity") or {})
        if intensity.get("mode", "auto") == "auto":
            raise ConfigError("task volume decoder: transforms.intensity is 'auto'; resolve it from the scans "
                              "first (InputSpec.resolve_intensity)")
        self.transforms = {k: v for k, v in dict(transforms).items() if k not in ("size", "augment")}
        self.settings = dict(kind="pretrain-volume-task", size=list(self.size), channels=self.channels,
                             transforms=self.transforms)
        self.model_sha256 = _identity(self.settings)
        self._pipeline: Any = None

    def decode(self, path: str) -> np.ndarray:
        if self._pipeline is None:
            self._pipeline = self.build(dict(self.transforms, size=self.size, augment=False), train=False)
        try:
            volume = self._pipeline({"image": path})["image"]
        except Exception as err:  # MONAI wraps the reader's errors; the innermost reason names the problem
            raise _unreadable(path, err) from err
        return self._fit(path, volume)


def prepare_volume(path: str, decoder: VolumeDecoder, skip_sha256: str | None = None) -> dict[str, Any]:
    """The outcome of one scan in :func:`~vkit.workflows.scoring.engine.prepare_video`'s shape (``tensor``: its
    ``(1, C, D, H, W)`` when it decoded): hashed (regular files only), ``skipped`` undecoded when its sha256 is
    ``skip_sha256``, else decoded and checked unchanged meanwhile."""
    import torch

    from vkit.core.files import FileState
    from vkit.core.store.provenance import sha256_file

    video = dict(path=path, sha256=None, size=None, duration=None, fps=None, frames=None, status="failed", error=None)

    def failed(error: str) -> dict[str, Any]:
        video.update(status="failed", error=error)
        return dict(path=path, status="failed", error=error, video=video, scores=[], events=[], clips=0)

    try:
        before = FileState.of(path)
        video["sha256"], video["size"] = sha256_file(path)
        if skip_sha256 is not None and video["sha256"] == skip_sha256:
            return dict(path=path, status="skipped", error=None, video=video, scores=[], events=[], clips=0)
        array = decoder.decode(path)
        if FileState.of(path) != before:
            return failed(f"{path}: changed while being read; the next run reads it again")
    except DataError as err:
        return failed(str(err))
    except OSError as err:
        return failed(f"{path}: unreadable ({err.strerror or err})")
    video.update(status="ok", frames=int(array.shape[2]))
    return dict(path=path, status="scored", error=None, video=video, scores=[], events=[], clips=1,
                tensor=torch.from_numpy(array))
