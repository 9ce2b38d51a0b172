"""education-engagement live on a generated lesson: its own scorer (TinyC3D over frame differences, the default
model, untrained) gives vkit score's window scores and events under vkit watch's engine, and the live class summary
counts the learners whose recent windows were all low, under pseudonyms."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from vkit.core.scoring import score_videos
from vkit.core.store import open_store
from vkit.workflows.watch.engine import StreamScoring, WatchEngine, WatchOptions
from vkit.workflows.watch.sources import StreamReader, parse_source
from vkit.workflows.watch.windows import StreamState
from vkit.workflows.watch.writer import WatchWriter

SEGMENTS, WINDOW = 8, 2.0  # a 16 s lesson: vkit score's 8 segments are 8 windows of 2 s (16 frames at 8 fps)


def _scorer():
    from mmengine.config import Config

    from vkit.core.sampling import FrameSampler
    from vkit.hooks.manager import get_plugin_manager
    from vkit.plugins.education.scorer import EngagementScorer
    from vkit.plugins.education.task import EducationEngagementTask

    get_plugin_manager().register_components()
    torch.manual_seed(0)
    task = EducationEngagementTask()
    cfg = Config(task.default_config)
    scorer = EngagementScorer.__new__(EngagementScorer)  # the task's scorer around its default model, untrained
    scorer.model, scorer.device = task.build_model(cfg, None).eval(), torch.device("cpu")
    scorer.num_frames, scorer.size, scorer.channels = 16, (32, 32), "diff"
    scorer.sampler = FrameSampler("segments", SEGMENTS, 16, clip_seconds=WINDOW)
    scorer.min_frames, scorer.num_levels, scorer.model_sha256 = 16, 4, "untrained-default-education"
    scorer.low_level, scorer.min_seconds = 1.5, 4.0
    return scorer


def _lessons(root: Path) -> list[Path]:
    from vkit.core.video import write_video
    from vkit.plugins.education.synthetic import FPS, lesson_levels, render_lesson

    assert FPS * WINDOW == 16
    paths = []
    for learner, stretches in enumerate(lesson_levels(0, 1, 2, int(SEGMENTS * WINDOW)), start=1):
        path = root / "s1" / f"learner{learner:02d}.mp4"
        paths.append(write_video(path, render_lesson(0, 1, learner, stretches, 32), fps=FPS, crf=20))
    return paths


def test_generated_lesson_live_equals_vkit_score_and_is_summarised(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from vkit.plugins.education.live import live_adapter
    from vkit.plugins.education.privacy import learner_hash

    monkeypatch.setenv("VKIT_LEARNER_SALT", "lesson-salt")
    scorer = _scorer()
    lessons = _lessons(tmp_path / "lessons")
    batch, _ = score_videos(scorer, [str(p) for p in lessons])
    recent = sorted(float(np.max(b["segments"][-2:])) for b in batch)  # each learner's highest of its last 4 s
    assert recent[0] < recent[1]
    scorer.low_level = recent[0] * 3  # an untrained model: "low" is set so that exactly one learner was low lately
    batch, _ = score_videos(scorer, [str(p) for p in lessons])
    specs = [parse_source(str(p)) for p in lessons]
    live = live_adapter(scorer, specs, span=4.0)
    store = open_store(f"sqlite:///{tmp_path / 'vkit.db'}")
    run_id = store.start_run("education-engagement", "education", {}, None, kind="watch")
    ids = store.upsert_videos([dict(path=s.shown, status="ok") for s in specs])
    writer = WatchWriter(store, run_id, tmp_path, emit=lambda payload: None)
    stop = threading.Event()
    streams = [StreamScoring(StreamState(i, s, scorer.sampler, scorer.size, WINDOW, WINDOW), ids[s.shown], scorer,
                             WINDOW) for i, s in enumerate(specs)]
    engine = WatchEngine(scorer, streams, writer, WatchOptions(batch_size=4, summary_every=3600), live=live)
    readers = [StreamReader(s, stream.state, stop) for s, stream in zip(specs, streams)]
    for reader in readers:
        reader.start()
    assert engine.run(stop) == "ended"
    engine.stop_all()
    for stream, expected in zip(streams, batch):
        rows = store.video_scores(run_id, stream.video_id)
        assert len(rows) == SEGMENTS
        assert max(abs(r["score"] - e["score"]) for r, e in zip(rows, expected["scores"])) <= 1e-5
        events = [(e["kind"], e["start"], e["end"], round(e["score"], 5)) for e in store.run_events(run_id, stream.video_id)]
        assert events == [(e["kind"], e["start"], e["end"], round(e["score"], 5)) for e in expected["events"]]
    assert sum(len(b["events"]) for b in batch) >= 1
    (group, text, values), = live.summaries(streams)
    low_score = scorer.low_level / 3
    low = [s.state.spec.shown.rsplit("/", 1)[1] for s, b in zip(streams, batch)
           if all(v <= low_score + 1e-12 for v in b["segments"][-2:])]  # the last 4 s: two windows
    assert group == "s1" and values["low_learners"] == sorted(low)
    assert text == "1 of 2 learners low for the last 4 seconds" and len(low) == 1
    assert sorted(v["path"] for v in store.get_videos()) == sorted(
        f"live://s1/pseudo-{learner_hash(f'learner{k:02d}', 'lesson-salt')}" for k in (1, 2))
    store.close()
