"""A scoring plugin for ``test_fault_matrix_scoring.py`` (no tests here): ``demo-score`` with two test seams.

Loaded by name (``--plugin scoring_faults_support``) with this folder and
``tests/workflows`` on ``PYTHONPATH``. Task ``demo-score-faults`` scores like
``demo-score`` (:mod:`test_score_support`), and its ``decode`` first obeys:

- ``VKIT_TEST_REWRITES`` (JSON ``{video path: [source, ...]}``): each decode of
  the video first copies the next source's bytes over it, in place — the file
  changes after it was hashed and before it is decoded, deterministically;
- ``VKIT_TEST_STUCK_DECODE`` (a folder): decode writes a file named after its
  pid there, then spins the CPU for up to 120 s (a worker stuck decoding).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
from test_score_support import ConvScorer, DemoScoreTask

hookimpl = pluggy.HookimplMarker("vkit")
_DONE: dict[str, int] = {}  # rewrites applied per path, in this process


class FaultyScorer(ConvScorer):
    """:class:`ConvScorer` whose ``decode`` obeys the seams of the module docstring."""

    def decode(self, path: str) -> np.ndarray:
        sources = json.loads(os.environ.get("VKIT_TEST_REWRITES", "{}")).get(path, [])
        step = _DONE.get(path, 0)
        if step < len(sources):
            _DONE[path] = step + 1
            with open(path, "r+b") as handle:  # same inode, new bytes: only its size/mtime/ctime tell
                handle.truncate(0)
                handle.write(Path(sources[step]).read_bytes())
        stuck = os.environ.get("VKIT_TEST_STUCK_DECODE")
        if stuck:
            Path(stuck, str(os.getpid())).write_text(path)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pass
        return super().decode(path)


class FaultsTask(DemoScoreTask):
    name = "demo-score-faults"
    description = "demo-score with test seams: a file rewritten before decoding, a decode that never ends."

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> Any:
        return FaultyScorer(checkpoint, device)


@hookimpl
def vkit_tasks() -> list[type]:
    return [FaultsTask]
