"""education-engagement data: the DAiSEE fixture, plain CSVs, side signals, bad input and the synthetic generator."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from vkit.core.video import probe
from vkit.plugins.education.data import EngagementClips, read_csv, read_daisee, read_side_signals
from vkit.plugins.education.synthetic import LEVEL_SHARES, generate, render_clip
from vkit.registry.errors import DataError

DAISEE = Path(__file__).parents[1] / "fixtures" / "daisee" / "DAiSEE"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("edu"), seed=5, n_train=12, n_val=4, n_test=8, clips_per_subject=4,
                    size=16, sessions=1, learners=2, lesson_seconds=6)


# ---------------------------------------------------------------- DAiSEE
def test_daisee_fixture_is_read_with_levels_subjects_and_clips() -> None:
    train = read_daisee(DAISEE, "train")
    assert [(c.clip_id, c.learner, c.level) for c in train] == [
        ("1100011002", "110001", 2), ("1100011003", "110001", 3), ("1100021001", "110002", 1)]
    assert train[0].path == DAISEE / "DataSet/Train/110001/1100011002/1100011002.avi"
    assert train[0].extra["Frustration"] == "0"  # DAiSEE's header cell is "Frustration " (trailing space)
    assert [c.level for c in read_daisee(DAISEE, "test")] == [3, 0] and len(read_daisee(DAISEE, "val")) == 1
    ds = EngagementClips(train, num_frames=8, size=16)
    sample = ds[0]
    assert sample["inputs"]["video"].shape == (3, 8, 16, 16) and sample["label"] == 2 and sample["case_id"] == "1100011002"
    assert probe(train[0].path).codec == "mpeg4" and probe(train[0].path).frames == 20


def test_daisee_bad_level_and_missing_clip_name_the_file_and_row(tmp_path: Path) -> None:
    root = tmp_path / "DAiSEE"
    shutil.copytree(DAISEE, root)
    labels = root / "Labels" / "TrainLabels.csv"
    labels.write_text(labels.read_text().replace("1100011003.avi,0,3", "1100011003.avi,0,5"))
    with pytest.raises(DataError, match=r"TrainLabels.csv:3 \(ClipID 1100011003.avi\): level '5' is outside 0-3"):
        read_daisee(root, "train")
    skipped: list[dict] = []
    assert [c.clip_id for c in read_daisee(root, "train", skip_bad=True, skipped=skipped)] == ["1100011002", "1100021001"]
    assert skipped[0]["item_id"] == "train/1100011003" and "outside 0-3" in skipped[0]["reason"]
    shutil.rmtree(root / "DataSet/Test/500044/5000441002")
    with pytest.raises(DataError, match=r"TestLabels.csv:3: clip '5000441002.avi' not found"):
        read_daisee(root, "test")
    (root / "Labels" / "ValidationLabels.csv").write_text("ClipID,Boredom\n4000181001.avi,1\n")
    with pytest.raises(DataError, match=r"ValidationLabels.csv: missing column\(s\) \['Engagement'\]"):
        read_daisee(root, "val")


def test_short_and_unreadable_clips_error_or_are_skipped(tmp_path: Path) -> None:
    items = read_daisee(DAISEE, "train")
    with pytest.raises(DataError, match=r"1100011002.avi: too short: 20 frames, the sampler needs 32 .*TrainLabels.csv:2"):
        EngagementClips(items, num_frames=32, size=16)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    rows = tmp_path / "clips.csv"
    shutil.copy(items[0].path, tmp_path / "good.avi")  # inside the CSV's folder: paths outside it are refused
    rows.write_text(f"path,level\n{broken.name},2\ngood.avi,1\n")
    listed = read_csv(rows)
    with pytest.raises(DataError, match=r"broken.mp4.*\(listed at .*clips.csv:2\)"):
        EngagementClips(listed, num_frames=8, size=16)
    ds = EngagementClips(listed, num_frames=8, size=16, skip_bad=True)
    assert len(ds) == 1 and ds.skipped[0]["item_id"] == "broken" and "broken.mp4" in ds.skipped[0]["reason"]


# ---------------------------------------------------------------- CSV and side signals
def test_plain_csv_with_learner_session_start_and_split(tmp_path: Path) -> None:
    clip = shutil.copy(DAISEE / "DataSet/Train/110001/1100011002/1100011002.avi", tmp_path / "c.avi")
    path = tmp_path / "clips.csv"
    path.write_text(f"path,level,learner,session,start,split\n{clip},3,ann,s1,12.5,train\n{clip},0,bob,s1,0,test\n")
    (train,) = read_csv(path, "train")
    assert (train.level, train.learner, train.session, train.start) == (3, "ann", "s1", 12.5)
    assert [c.learner for c in read_csv(path)] == ["ann", "bob"]
    learners = [f"l{i}" for i in range(40)]
    path.write_text("path,level,learner\n" + "".join(f"{clip},2,{name}\n" for name in learners))
    splits = {s: {c.learner for c in read_csv(path, s)} for s in ("train", "val", "test")}  # no split column
    assert all(splits.values()) and set().union(*splits.values()) == set(learners)
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["val"])
    path.write_text(f"path,level\n{clip},high\n")
    with pytest.raises(DataError, match=r"clips.csv:2: level 'high' is not a number; expected an integer 0-3"):
        read_csv(path)
    path.write_text(f"clip,level\n{clip},1\n")
    with pytest.raises(DataError, match=r"clips.csv: missing column\(s\) \['path'\]"):
        read_csv(path)


def test_side_signals_are_joined_standardised_and_a_missing_row_is_named(synthetic: Path) -> None:
    columns, table = read_side_signals(synthetic / "side_signals.csv")
    assert columns == ["keystrokes", "quiz_correct", "audio_energy"] and len(table) == 24
    items = read_daisee(synthetic, "train")
    ds = EngagementClips(items, num_frames=16, size=16, signals=(columns, table))
    x = ds[0]["inputs"]["signals"]
    assert x.shape == (3, 1, 1, 1)
    all_signals = np.stack([ds[i]["inputs"]["signals"].reshape(-1).numpy() for i in range(len(ds))])
    assert np.allclose(all_signals.mean(0), 0, atol=1e-5) and np.allclose(all_signals.std(0), 1, atol=1e-4)
    del table[items[3].clip_id]
    with pytest.raises(DataError, match=rf"no row for clip '{items[3].clip_id}' in the side-signal CSV"):
        EngagementClips(items, num_frames=16, size=16, signals=(columns, table))


# ---------------------------------------------------------------- generator
def test_generator_writes_daisee_layout_mp4s_lessons_and_skewed_labels(synthetic: Path) -> None:
    with open(synthetic / "Labels" / "TrainLabels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ClipID", "Boredom", "Engagement", "Confusion", "Frustration "]
    levels = [int(r[2]) for r in rows[1:]]
    assert sorted(set(levels)) == [0, 1, 2, 3] and levels.count(2) + levels.count(3) >= 8  # skewed toward high
    clips = read_daisee(synthetic, "train")
    info = probe(clips[0].path)
    assert (info.codec, info.frames, info.width, info.fps) == ("h264", 16, 16, 8.0)
    learners = {split: {c.learner for c in read_daisee(synthetic, split)} for split in ("train", "val", "test")}
    assert not (learners["train"] & learners["test"]) and not (learners["train"] & learners["val"])
    lessons = sorted(p.relative_to(synthetic).as_posix() for p in (synthetic / "Lessons").rglob("*.mp4"))
    assert lessons == ["Lessons/session01/learner01.mp4", "Lessons/session01/learner02.mp4"]
    assert probe(synthetic / lessons[0]).frames == 48
    with open(synthetic / "Lessons" / "timeline.csv", newline="") as f:
        stretches = list(csv.DictReader(f))
    assert {s["recording"] for s in stretches} == {"session01/learner01.mp4", "session01/learner02.mp4"}
    assert max(float(s["end"]) for s in stretches) == 6.0
    assert sum(LEVEL_SHARES) == pytest.approx(1.0)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = render_clip(seed=3, subject=1, clip=2, level=1, size=16)
    assert np.array_equal(a, render_clip(seed=3, subject=1, clip=2, level=1, size=16))
    assert not np.array_equal(a, render_clip(seed=4, subject=1, clip=2, level=1, size=16))


def test_brightness_or_one_pixel_does_not_give_the_level_away_but_motion_does() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import cohen_kappa_score
    from sklearn.model_selection import cross_val_predict

    levels = np.repeat(np.arange(4), 40)
    features = []
    for i, level in enumerate(levels):
        clip = render_clip(seed=11, subject=i // 4, clip=i % 4, level=int(level), size=32).astype(np.float32)
        features.append([clip.mean(), clip[:, 16, 16].mean(), np.abs(np.diff(clip, axis=0)).mean()])
    features = np.asarray(features)

    def qwk(column: int) -> float:
        pred = cross_val_predict(LogisticRegression(max_iter=1000), features[:, [column]], levels, cv=5)
        return cohen_kappa_score(levels, pred, weights="quadratic")

    assert qwk(0) < 0.15  # mean intensity: lighting and appearance dominate
    assert qwk(1) < 0.35  # the centre pixel
    assert qwk(2) > 0.6  # frame-to-frame motion: the behaviour carries the level
