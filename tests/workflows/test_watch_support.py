"""A tiny plugin for the ``vkit watch`` tests (no tests here): a brightness SegmentScorer and clip makers.

Loaded by name (``--plugin test_watch_support``) with this folder on ``sys.path``/``PYTHONPATH``.
The scorer is a real model (a 1x1x1 Conv3d saved as safetensors), a
:class:`~vkit.core.scoring.SegmentScorer` with a uniform sampler (8 segments of
4 frames at 16x16) and the core event rule (``bright`` when score >= 0.5), so
``vkit score`` and ``vkit watch`` run it through the same code as a vertical's.
``VKIT_TEST_SCORE_DELAY`` (seconds) slows each ``score`` call down.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import torch
from torch import nn

from vkit.core.sampling import FrameSampler
from vkit.core.scoring import SegmentScorer
from vkit.core.task import Task

hookimpl = pluggy.HookimplMarker("vkit")

SEGMENTS, FRAMES, SIZE, FPS = 8, 4, (16, 16), 20


def brightness_net() -> nn.Module:
    net = nn.Conv3d(3, 1, 1)
    with torch.no_grad():
        net.weight.fill_(1 / 3 / 255)
        net.bias.zero_()
    return net


def make_checkpoint(path: Path) -> Path:
    from vkit.core.checkpoint import save_checkpoint

    return save_checkpoint(brightness_net(), path, meta=dict(task="demo-watch"))


class BrightScorer(SegmentScorer):
    """Mean brightness in [0, 1] per clip through a saved 1x1x1 conv; events where it is >= 0.5."""

    sampler = FrameSampler("uniform", SEGMENTS, FRAMES)
    size = SIZE
    event_rule = dict(threshold=0.5, kind="bright")
    min_frames = 8

    def __init__(self, checkpoint: Path, device: str = "cpu") -> None:
        from vkit.core.checkpoint import load_checkpoint

        self.model = brightness_net().eval()
        _, meta = load_checkpoint(checkpoint, self.model)
        self.model_sha256 = meta["sha256"]
        self.delay = float(os.environ.get("VKIT_TEST_SCORE_DELAY", "0"))

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        if self.delay:
            import time

            time.sleep(self.delay)
        return self.model(clips).mean(dim=(1, 2, 3, 4))


class DemoWatchTask(Task):
    name = "demo-watch"
    description = "Brightness events on tiny videos (tests of vkit watch)."
    default_config: dict[str, Any] = dict(seed=0)
    capabilities = frozenset({"score"})

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> BrightScorer:
        return BrightScorer(checkpoint, device)


class ClassScorer(BrightScorer):
    """The brightness scorer read as engagement: levels 0-3, a window at or below level 1 is low."""

    low_level, num_levels = 1.0, 4


class DemoClassTask(DemoWatchTask):
    name = "demo-class"
    description = "Brightness as engagement, learner streams summarised per session (tests of vkit watch)."
    live_adapter = "vkit.plugins.education.live:live_adapter"  # education's live side

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> ClassScorer:
        return ClassScorer(checkpoint, device)


@hookimpl
def vkit_tasks() -> list[type[Task]]:
    return [DemoWatchTask, DemoClassTask]


def write_clip(path: Path, levels: list[int], fps: int = FPS, seed: int = 0) -> Path:
    """A video whose frame ``i`` has brightness about ``levels[i]`` (textured, so it compresses like video)."""
    from vkit.core.video import write_video

    rng = np.random.default_rng(seed)
    texture = rng.integers(-12, 12, size=(48, 64, 1)).astype(np.int16)
    video = np.stack([np.clip(level + texture, 0, 255).astype(np.uint8).repeat(3, axis=2) for level in levels])
    return write_video(path, video, fps=fps)


def bright_middle(frames: int = 40, first: int = 15, last: int = 29) -> list[int]:
    """Dark frames with a bright stretch ``first..last``."""
    return [220 if first <= i <= last else 30 for i in range(frames)]
