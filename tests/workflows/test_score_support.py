"""A tiny scoring plugin for the ``vkit score`` tests (no tests here): a fixed conv-net VideoScorer and archive makers.

Loaded by name (``--plugin test_score_support``) with this folder on
``sys.path``/``PYTHONPATH``, so subprocesses and Ray actors import it too.
``VKIT_TEST_HOOK_LOG`` (a file) records every ``vkit_video_scored`` call;
``VKIT_TEST_SCORE_DELAY`` (seconds) slows each ``score`` call down;
``VKIT_TEST_SCORE_GATE`` (a file) holds every ``score`` call until it exists.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import torch
from torch import nn

from vkit.core.task import Task

hookimpl = pluggy.HookimplMarker("vkit")

SEGMENTS, FRAMES, SIZE = 4, 4, (32, 32)


def tiny_net(seed: int = 0) -> nn.Module:
    """The fixed conv net: Conv3d → ReLU → global pool → Linear(1)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                         nn.Linear(8, 1))


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """Write the net's weights (safetensors + sidecar) and return the weights path."""
    from vkit.core.checkpoint import save_checkpoint

    return save_checkpoint(tiny_net(seed), path, meta=dict(task="demo-score"))


class ConvScorer:
    """A real VideoScorer: 4 segments of 4 frames at 32x32, scored by :func:`tiny_net`."""

    num_segments = SEGMENTS
    min_frames = 8

    def __init__(self, checkpoint: Path, device: str = "cpu") -> None:
        from vkit.core.checkpoint import load_checkpoint

        self.model = tiny_net().eval()
        _, meta = load_checkpoint(checkpoint, self.model)
        self.model_sha256 = meta["sha256"]
        self.model.to(device)
        self.delay = float(os.environ.get("VKIT_TEST_SCORE_DELAY", "0"))

    def decode(self, path: str) -> np.ndarray:
        from vkit.core.sampling import sample_segments

        clips = sample_segments(path, SEGMENTS, FRAMES, SIZE)          # (S, T, H, W, 3) uint8
        return clips.transpose(0, 4, 1, 2, 3).astype(np.float32) / 255.0

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        gate = os.environ.get("VKIT_TEST_SCORE_GATE")
        if gate:                                   # wait until the test opens the gate (concurrent jobs start together)
            import time

            deadline = time.monotonic() + 120
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.delay:
            import time

            time.sleep(self.delay)
        return torch.sigmoid(self.model(clips)).flatten()

    def summarize(self, segment_scores: np.ndarray, info: Any) -> dict[str, Any]:
        length = info.duration / len(segment_scores)
        threshold = float(np.median(segment_scores))
        events = [dict(kind="high", start=i * length, end=(i + 1) * length, score=float(s))
                  for i, s in enumerate(segment_scores) if s > threshold]
        return dict(events=events)


class DemoScoreTask(Task):
    name = "demo-score"
    description = "Score tiny videos with a fixed conv net (tests of vkit score)."
    default_config: dict[str, Any] = dict(seed=0)
    capabilities = frozenset({"score"})  # declared (vkit.core.capabilities), checked when the plugin loads

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> ConvScorer:
        return ConvScorer(checkpoint, device)


@hookimpl
def vkit_tasks() -> list[type[Task]]:
    return [DemoScoreTask]


@hookimpl
def vkit_video_scored(video: dict[str, Any]) -> None:
    log = os.environ.get("VKIT_TEST_HOOK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(video) + "\n")


# ----------------------------------------------------------------------------- archives
def write_good(path: Path, seed: int, frames: int = 16) -> Path:
    """A small H.264/MPEG-4 video of moving random blocks, different per seed."""
    from vkit.core.video import write_video

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    video = np.empty((frames, 48, 64, 3), np.uint8)
    for t in range(frames):
        video[t] = np.kron(np.roll(base, t * (seed % 3 + 1), axis=1), np.ones((8, 8, 1), np.uint8))
    return write_video(path, video, fps=8)


def make_archive(root: Path, good: int = 4, bad: bool = True) -> dict[str, Path]:
    """``good`` videos under ``root`` (one in a sub-folder) and, with ``bad``, one of each bad kind; ``{name: path}``."""
    files = {f"good{i}": write_good(root / ("sub" if i % 2 else "") / f"good{i}.mp4", seed=i) for i in range(good)}
    if bad:
        files["empty"] = root / "empty.mp4"
        files["empty"].write_bytes(b"")
        files["text"] = root / "notes.mp4"
        files["text"].write_text("this is a text file, not a video\n" * 20)
        files["short"] = write_good(root / "short.mp4", seed=99, frames=3)
        whole = write_good(root / "truncated.mp4", seed=7, frames=48).read_bytes()
        files["truncated"] = root / "truncated.mp4"
        files["truncated"].write_bytes(whole[: len(whole) // 2])
    return files
