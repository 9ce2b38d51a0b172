"""``--batch-size auto``: the tuner's climb on given timings, and the batcher scoring right while the size changes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import test_score_support as support  # noqa: E402

from vkit.registry.errors import ConfigError  # noqa: E402
from vkit.workflows.batch_size import BatchSizeTuner  # noqa: E402
from vkit.workflows.scoring import engine  # noqa: E402
from vkit.workflows.scoring.engine import ClipBatcher, prepare_video, score_items  # noqa: E402


def _drive(tuner: BatchSizeTuner, per_clip: dict[int, float], batches: int = 40) -> list[int]:
    """Feed the tuner ``batches`` batches whose time is ``per_clip[size] * size`` (a warm-up costs 100x)."""
    sizes, warmed = [], set()
    for _ in range(batches):
        n = tuner.size
        sizes.append(n)
        cost = per_clip[n] * n * (1 if n in warmed else 100)
        warmed.add(n)
        tuner.record(n, cost)
    return sizes


def test_climbs_while_bigger_is_faster_and_keeps_the_best() -> None:
    tuner = BatchSizeTuner(limit=16, trials=3)
    sizes = _drive(tuner, {1: 0.20, 2: 0.09, 4: 0.10, 8: 0.05, 16: 0.05})
    assert tuner.settled and tuner.size == 2          # 4 is slower per clip than 2: the climb stops there
    assert sizes[:12] == [1] * 4 + [2] * 4 + [4] * 4  # one warm-up + 3 timed batches per size
    assert set(sizes[12:]) == {2}
    assert tuner.seconds_per_clip == pytest.approx({1: 0.20, 2: 0.09, 4: 0.10})  # warm-ups left out
    assert "chose 2" in tuner.describe() and "2: 11.11" in tuner.describe()


def test_reaches_the_limit_when_bigger_is_always_faster() -> None:
    tuner = BatchSizeTuner(limit=6, trials=2)
    assert tuner.candidates == [1, 2, 4, 6]
    _drive(tuner, {1: 0.4, 2: 0.3, 4: 0.2, 6: 0.1})
    assert tuner.settled and tuner.size == 6


def test_partial_batches_do_not_count_and_bad_limits_are_refused() -> None:
    tuner = BatchSizeTuner(limit=4, trials=1)
    tuner.record(1, 5.0)          # warm-up of size 1
    tuner.record(3, 0.001)        # a last partial batch: ignored
    assert tuner.size == 1 and not tuner.seconds_per_clip
    with pytest.raises(ConfigError, match="limit must be a positive int, got 0"):
        BatchSizeTuner(limit=0)
    with pytest.raises(ConfigError, match="batch_size must be a positive int or 'auto', got 'big'"):
        ClipBatcher(object(), "big")


class _Clock:
    """The scoring engine's clock, advanced only by the fake scorer: timings that no machine load can change."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _SlowAtFour:
    """Wraps a scorer: batches of 4 or more take 4x longer per clip than pairs, singles 2x (on the fake clock)."""

    def __init__(self, scorer: support.ConvScorer, clock: _Clock) -> None:
        self.inner, self.clock = scorer, clock
        self.model_sha256, self.num_segments = scorer.model_sha256, scorer.num_segments
        self.decode, self.summarize = scorer.decode, scorer.summarize
        self.sizes: list[int] = []

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        n = clips.shape[0]
        self.sizes.append(n)
        self.clock.now += {1: 0.02, 2: 0.02}.get(n, 0.04 * n)
        return self.inner.score(clips)


def test_auto_batcher_settles_on_the_fastest_size_and_scores_every_clip_right(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = support.ConvScorer(support.make_checkpoint(tmp_path / "model.safetensors"))
    videos = [str(support.write_good(tmp_path / f"v{i}.mp4", seed=i, frames=12 + 4 * i)) for i in range(3)]
    items = [prepare_video(v, None, scorer) for v in videos] * 3    # 36 clips: enough to try 1, 2, 4 and settle
    with torch.inference_mode():
        expected = {i["path"]: scorer.score(i["tensor"]).numpy() for i in items[:3]}
    clock = _Clock()
    monkeypatch.setattr(engine, "time", clock)  # the batcher times each batch with time.perf_counter()
    slow = _SlowAtFour(scorer, clock)
    batcher = ClipBatcher(slow, "auto")
    outcomes = list(score_items(iter([dict(i, tensor=i["tensor"].clone()) for i in items]), batcher))
    assert batcher.tuner is not None and batcher.tuner.settled and batcher.batch_size == 2
    assert slow.sizes[:12] == [1] * 4 + [2] * 4 + [4] * 4 and set(slow.sizes[12:-1]) == {2}
    assert len(outcomes) == 9 and sum(o["clips"] for o in outcomes) == 36
    for outcome in outcomes:  # clips of several videos, batches of changing size: each score is its clip's
        scores = np.array([s["score"] for s in outcome["scores"]])
        np.testing.assert_allclose(scores, expected[outcome["path"]], atol=1e-6)
