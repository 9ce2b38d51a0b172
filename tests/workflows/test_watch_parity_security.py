"""A real vertical live: security-anomaly's default features (MotionStats over dense 6-frame clips at 64x64) and a
MIL head give the same window scores and events under vkit watch's engine as vkit score's per-video path."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from vkit.core.scoring import score_videos
from vkit.core.store import open_store
from vkit.core.video import write_video
from vkit.workflows.watch.engine import StreamScoring, WatchEngine, WatchOptions
from vkit.workflows.watch.sources import StreamReader, parse_source
from vkit.workflows.watch.windows import StreamState
from vkit.workflows.watch.writer import WatchWriter

SEGMENTS, WINDOW, FPS = 32, 8, 25  # 32 windows of 8 frames = vkit score's 32 segments of a 256-frame video


def _scorer():
    from vkit.hooks.manager import get_plugin_manager
    from vkit.plugins.security.features import feature_embedder
    from vkit.plugins.security.model import MILAnomalyModel
    from vkit.plugins.security.scorer import AnomalyScorer

    get_plugin_manager().register_components()
    torch.manual_seed(0)
    extractor = feature_embedder(dict(type="MotionStats"))  # the task's default features
    assert extractor.sampler.num_segments == SEGMENTS and extractor.sampler.frames_per_segment == 6
    model = MILAnomalyModel(head=dict(in_channels=extractor.feature_dim, hidden=(16,))).eval()
    return AnomalyScorer.from_model(model, extractor, dict(threshold=0.5, min_duration=0.5))


def _video(path: Path) -> Path:
    """Still blocks, then a fast-moving stretch (frames 96-175), then still again."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    frames = [np.kron(np.roll(base, (t - 96) if 96 <= t < 176 else 0, axis=1), np.ones((12, 12, 1), np.uint8))
              for t in range(SEGMENTS * WINDOW)]
    return write_video(path, np.stack(frames), fps=FPS)


def test_security_default_features_live_equal_vkit_score(tmp_path: Path) -> None:
    scorer = _scorer()
    video = _video(tmp_path / "cam.mp4")
    (first,), _ = score_videos(scorer, [str(video)])
    scorer.event_rule["threshold"] = float(np.median(first["segments"]))  # an untrained head: events at its median
    (batch,), _ = score_videos(scorer, [str(video)])
    assert len(batch["events"]) >= 2
    store = open_store(f"sqlite:///{tmp_path / 'vkit.db'}")
    run_id = store.start_run("security-anomaly", "security", {}, None, kind="watch")
    video_id = store.upsert_videos([dict(path=str(video), status="ok")])[str(video)]
    writer = WatchWriter(store, run_id, tmp_path, emit=lambda payload: None)
    spec = parse_source(str(video))
    state = StreamState(0, spec, scorer.sampler, scorer.size, WINDOW / FPS, WINDOW / FPS)
    stop = threading.Event()
    engine = WatchEngine(scorer, [StreamScoring(state, video_id, scorer, WINDOW / FPS)], writer,
                         WatchOptions(batch_size=5))
    reader = StreamReader(spec, state, stop)
    reader.start()
    assert engine.run(stop) == "ended"
    engine.stop_all()
    live = store.video_scores(run_id)
    assert len(live) == len(batch["scores"]) == SEGMENTS
    diff = max(abs(a["score"] - b["score"]) for a, b in zip(live, batch["scores"]))
    assert diff <= 1e-5, diff
    spread = max(r["score"] for r in live) - min(r["score"] for r in live)
    assert spread > 1e-3  # the scores differ from window to window: the comparison means something
    ours = [(e["kind"], e["start"], e["end"], round(e["score"], 5), e["status"]) for e in store.run_events(run_id)]
    assert ours == [(e["kind"], e["start"], e["end"], round(e["score"], 5), "closed") for e in batch["events"]]
    store.close()
