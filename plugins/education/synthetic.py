"""The embedded data set of ``education-engagement``: webcam clips of a synthetic learner whose behaviour carries the level.

Deterministic from ``seed``. Every clip is a real H.264 MP4 (PyAV), ``size`` x
``size`` pixels (default 32), 8 fps, 16 frames (2 s), of a face-and-shoulders
figure in front of a background, written in the DAiSEE layout so the same
loader reads it and the real data set (:func:`vkit.plugins.education.data.read_daisee`).

**Appearance** is drawn per learner (subject) from the same distributions for
every level: skin tone, hair and clothing colours, head size and position,
background (a smooth random colour field); each clip adds its own lighting
(gain 0.55-1.35 and a left/right light gradient) and sensor noise.

**Behaviour** carries the level. A clip's disengagement ``d`` is the level's
value (3: 0.05, 2: 0.3, 1: 0.6, 0: 0.9) plus a uniform jitter of +-0.1; then

* a share ``0.8 d`` of the frames is spent off the screen, in one or two
  episodes of either *gaze away* (the head turns left or right: the face
  slides sideways inside the hair) or *looking down at a phone* (the head
  pitches down, eyes almost shut, a phone appears at the bottom; more likely
  the lower the level);
* eye closures: one short blink per clip when engaged, longer drowsy closures
  (up to 4 frames) as ``d`` grows;
* head motion: a random walk whose step grows with ``d``;
* posture drift: the head and shoulders sink by up to ``10 d`` pixels (of 64) over the clip
  (centred on the clip's resting position, which itself varies by +-6 pixels per clip).

So the level is visible only in how the figure moves over time; clip brightness
and any single pixel are dominated by lighting and appearance (a test checks
that neither predicts the level).

**Labels** follow DAiSEE's skew toward the high levels: ``LEVEL_SHARES``
(5 / 12 / 45 / 38 % for levels 0-3; DAiSEE's engagement labels are roughly
1 / 5 / 49 / 45 %), at least one clip per level and split.

**Side signals** (``side_signals.csv``): per-clip interaction-log features
(``keystrokes``, ``quiz_correct``, ``audio_energy``), noisy functions of the
level, for the optional fusion.

**Lessons** (``Lessons/<session>/<learner>.mp4``, ``Lessons/timeline.csv``):
long recordings (default 2 sessions x 3 learners x 48 s) whose level changes
in stretches of 4-10 s; every session has a shared attention drop in its
second half that most learners follow. ``timeline.csv`` holds the true level
per stretch (``recording,session,learner,start,end,level``).

Layout::

    root/DataSet/{Train,Validation,Test}/<subject>/<clip>/<clip>.mp4
    root/Labels/{Train,Validation,Test}Labels.csv   # ClipID,Boredom,Engagement,Confusion,Frustration
    root/side_signals.csv                            # ClipID,keystrokes,quiz_correct,audio_energy
    root/Lessons/session01/learner01.mp4 ... root/Lessons/timeline.csv

Example::

    from vkit.plugins.education.synthetic import generate
    root = generate(Path("/tmp/engagement"), seed=0, n_train=48, n_val=16, n_test=16)
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vkit.core.progress import track
from vkit.core.video import write_video
from vkit.registry.errors import ConfigError

FPS = 8
CLIP_FRAMES = 16
CANVAS = 64  # drawn at 64x64, then resized to ``size``
LEVEL_SHARES = (0.05, 0.12, 0.45, 0.38)
DISENGAGEMENT = (0.9, 0.6, 0.3, 0.05)  # per level 0..3
SPLITS = {"train": "Train", "val": "Validation", "test": "Test"}
LABEL_COLUMNS = ("ClipID", "Boredom", "Engagement", "Confusion", "Frustration ")  # DAiSEE's header, trailing space included
SIGNAL_COLUMNS = ("keystrokes", "quiz_correct", "audio_energy")


@dataclass
class Appearance:
    """What a learner looks like (the same distributions for every level)."""

    skin: np.ndarray
    hair: np.ndarray
    clothing: np.ndarray
    background: np.ndarray  # (CANVAS, CANVAS, 3) float32
    head_scale: float
    x0: float
    y0: float


def draw_appearance(rng: np.random.Generator) -> Appearance:
    """One learner's appearance."""
    import cv2

    tone = rng.uniform(0.0, 1.0)
    skin = (np.array([70, 45, 30]) + tone * np.array([170, 150, 130])).astype(np.float32)
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    background = cv2.resize(coarse, (CANVAS, CANVAS), interpolation=cv2.INTER_CUBIC)
    return Appearance(skin=skin, hair=rng.uniform(10, 160, 3).astype(np.float32),
                      clothing=rng.uniform(20, 235, 3).astype(np.float32), background=background,
                      head_scale=float(rng.uniform(0.9, 1.1)), x0=float(rng.uniform(-6, 6)), y0=float(rng.uniform(-6, 4)))


def behaviour(level: int, n_frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame yaw (-1..1), pitch (0..1), eye closure (0/1), head offset (x, y) and slump for ``level``."""
    d = float(np.clip(DISENGAGEMENT[level] + rng.uniform(-0.1, 0.1), 0.0, 1.0))
    yaw, pitch, closed = np.zeros(n_frames), np.zeros(n_frames), np.zeros(n_frames)
    off = int(round(0.8 * d * n_frames))
    episodes = 1 if off < 6 or rng.random() < 0.5 else 2
    lengths = [off] if episodes == 1 else [off // 2, off - off // 2]
    free = n_frames - off
    starts, cursor = [], 0
    for length in lengths:  # place the episodes in order, with random attentive gaps between them
        gap = int(rng.integers(0, free + 1)) if free else 0
        free -= gap
        starts.append(cursor + gap)
        cursor += gap + length
    for start, length in zip(starts, lengths):
        if length == 0:
            continue
        span = slice(start, start + length)
        if rng.random() < 0.3 + 0.5 * d:
            pitch[span] = 1.0  # looking down at a phone
        else:
            yaw[span] = rng.choice((-1.0, 1.0)) * rng.uniform(0.7, 1.0)
    blink = 1 + int(round(3 * d * rng.uniform(0.5, 1.0)))  # frames of one closure
    start = int(rng.integers(0, max(1, n_frames - blink)))
    closed[start:start + blink] = 1.0
    if d > 0.5 and n_frames >= 2 * CLIP_FRAMES:  # long recordings: drowsy closures recur
        for s in rng.integers(0, n_frames - blink, size=int(d * n_frames / CLIP_FRAMES)):
            closed[s:s + blink] = 1.0
    steps = rng.normal(0.0, 0.3 + 2.0 * d, size=(n_frames, 2))
    head = np.cumsum(steps, axis=0)
    head -= head.mean(axis=0)
    head = np.clip(head, -7.0, 7.0)
    amount = 10.0 * d * rng.uniform(0.5, 1.0)
    slump = np.linspace(-amount / 2, amount / 2, n_frames)  # centred: the drift, not the mean position, carries it
    smooth = np.array([0.25, 0.5, 0.25])
    yaw = np.convolve(np.pad(yaw, 1, mode="edge"), smooth, mode="valid")
    pitch = np.convolve(np.pad(pitch, 1, mode="edge"), smooth, mode="valid")
    return dict(yaw=yaw, pitch=pitch, closed=closed, head=head, slump=slump)


def render(look: Appearance, moves: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Frames ``(T, size, size, 3)`` uint8 of the figure with ``moves`` under this clip's lighting."""
    import cv2

    n = len(moves["yaw"])
    gain = rng.uniform(0.55, 1.35)
    shift_x, shift_y = rng.uniform(-6, 6, size=2)  # where the learner sits in this clip
    gradient = 1.0 + rng.uniform(-0.3, 0.3) * np.linspace(-1, 1, CANVAS, dtype=np.float32)[None, :, None]
    s = look.head_scale
    frames = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        img = look.background.copy()
        yaw, pitch, slump = moves["yaw"][t], moves["pitch"][t], moves["slump"][t]
        x0, y0 = look.x0 + shift_x, look.y0 + shift_y
        cx = 32 + x0 + moves["head"][t, 0]
        cy = 25 + y0 + moves["head"][t, 1] + slump + 6 * pitch
        body_y = 66 + y0 + 0.7 * slump
        cv2.ellipse(img, (int(round(32 + x0 + 0.3 * moves["head"][t, 0])), int(round(body_y))), (27, 17), 0, 0, 360,
                    look.clothing.tolist(), -1, cv2.LINE_AA)
        cv2.rectangle(img, (int(cx - 4), int(cy + 8)), (int(cx + 4), int(body_y - 12)), look.skin.tolist(), -1)
        cv2.ellipse(img, (int(round(cx)), int(round(cy - 2))), (int(12 * s), int(13 * s)), 0, 0, 360,
                    look.hair.tolist(), -1, cv2.LINE_AA)
        fx, fy = cx + 7 * yaw, cy + 2 + 4 * pitch
        cv2.ellipse(img, (int(round(fx)), int(round(fy))), (int(round((10 - 2 * abs(yaw)) * s)), int(round(11 * s - 2 * pitch))),
                    0, 0, 360, look.skin.tolist(), -1, cv2.LINE_AA)
        eye_y = fy - 2 + 3 * pitch
        shut = moves["closed"][t] > 0 or pitch > 0.5
        for side in (-1, 1):
            ex = fx + 3 * yaw + side * 4.5 * s * (1 - 0.3 * abs(yaw))
            if shut:
                cv2.line(img, (int(ex - 2), int(eye_y)), (int(ex + 2), int(eye_y)), (look.skin * 0.55).tolist(), 1, cv2.LINE_AA)
            else:
                cv2.ellipse(img, (int(round(ex)), int(round(eye_y))), (2, 2), 0, 0, 360, (235, 235, 235), -1, cv2.LINE_AA)
                cv2.circle(img, (int(round(ex + 1.2 * yaw)), int(round(eye_y))), 1, (25, 20, 20), -1, cv2.LINE_AA)
        if pitch > 0.5:  # a phone in the hands
            px, py = int(cx - 4), int(body_y - 16)
            cv2.rectangle(img, (px, py), (px + 8, py + 5), (30, 30, 35), -1)
            cv2.rectangle(img, (px + 1, py + 1), (px + 7, py + 4), (150, 170, 190), -1)
        img = img * gain * gradient
        small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        small += rng.normal(0, 3, size=small.shape).astype(np.float32)
        frames[t] = np.clip(small, 0, 255).astype(np.uint8)
    return frames


def render_clip(seed: int, subject: int, clip: int, level: int, size: int = 32, frames: int = CLIP_FRAMES) -> np.ndarray:
    """Frames ``(frames, size, size, 3)`` uint8 of one clip of ``subject`` at engagement ``level``."""
    look = draw_appearance(np.random.default_rng([seed, 1, subject]))
    rng = np.random.default_rng([seed, 2, subject, clip])
    return render(look, behaviour(level, frames, rng), size, rng)


def level_counts(n: int) -> list[int]:
    """Clips per level for a split of ``n`` clips: ``LEVEL_SHARES``, at least one each."""
    if n < len(LEVEL_SHARES):
        raise ConfigError(f"synthetic education data: a split needs >= {len(LEVEL_SHARES)} clips (one per level), got {n}")
    counts = [max(1, int(round(share * n))) for share in LEVEL_SHARES]
    counts[int(np.argmax(counts))] += n - sum(counts)
    return counts


def side_signals(level: int, rng: np.random.Generator) -> list[float]:
    """``keystrokes`` per minute, ``quiz_correct`` (0..1) and ``audio_energy`` (dB) of one clip: noisy in the level."""
    engaged = level / 3.0
    return [round(float(rng.poisson(4 + 14 * engaged)), 1), round(float(np.clip(0.3 + 0.5 * engaged + rng.normal(0, 0.2), 0, 1)), 3),
            round(float(-40 + 12 * engaged + rng.normal(0, 5)), 2)]


def _write_split(root: Path, seed: int, split: str, n: int, first_subject: int, per_subject: int, size: int,
                 signals: list[list]) -> int:
    rng = np.random.default_rng([seed, 3, first_subject])
    levels = np.repeat(np.arange(len(LEVEL_SHARES)), level_counts(n))
    rng.shuffle(levels)
    rows = []
    for i, level in track(list(enumerate(levels.tolist())), f"generating {split} clips", unit="clips"):
        subject_index = first_subject + i // per_subject
        subject, clip_id = f"{500000 + subject_index}", f"{500000 + subject_index}{i % per_subject:04d}"
        frames = render_clip(seed, subject_index, i % per_subject, level, size)
        write_video(root / "DataSet" / SPLITS[split] / subject / clip_id / f"{clip_id}.mp4", frames, fps=FPS, crf=18)
        boredom = int(np.clip(3 - level + rng.integers(-1, 1), 0, 3))
        rows.append([f"{clip_id}.mp4", boredom, level, int(rng.random() < 0.2), int(rng.random() < 0.1)])
        signals.append([f"{clip_id}.mp4", *side_signals(level, rng)])
    with open(root / "Labels" / f"{SPLITS[split]}Labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LABEL_COLUMNS)
        writer.writerows(rows)
    return first_subject + -(-n // per_subject)


def lesson_levels(seed: int, session: int, learners: int, seconds: int) -> list[list[tuple[float, float, int]]]:
    """Per learner of a session: stretches ``(start, end, level)`` covering ``seconds``, with a shared drop."""
    rng = np.random.default_rng([seed, 4, session])
    begin = round(seconds * rng.uniform(0.45, 0.55))
    drop = (begin, begin + round(seconds * rng.uniform(0.2, 0.3)))
    out = []
    for _ in range(learners):
        stretches, t, level = [], 0.0, int(rng.choice((2, 3)))
        follows = rng.random() < 0.75
        while t < seconds:
            end = float(min(seconds, t + rng.integers(4, 11)))
            if follows and t < drop[1] and end > drop[0]:  # cut at the drop's edges
                end = float(drop[0]) if t < drop[0] else float(min(end, drop[1]))
            in_drop = follows and drop[0] <= t < drop[1]
            level = int(rng.choice((0, 1))) if in_drop else int(rng.choice((2, 3), p=(0.5, 0.5)) if rng.random() < 0.85 else 1)
            stretches.append((t, end, level))
            t = end
        out.append(stretches)
    return out


def render_lesson(seed: int, session: int, learner: int, stretches: list[tuple[float, float, int]], size: int) -> np.ndarray:
    """Frames of one learner's lesson: each stretch rendered with its level's behaviour, one appearance throughout."""
    look = draw_appearance(np.random.default_rng([seed, 5, session, learner]))
    parts = []
    for k, (start, end, level) in enumerate(stretches):
        rng = np.random.default_rng([seed, 6, session, learner, k])
        count = int(round(end * FPS)) - int(round(start * FPS))
        parts.append(render(look, behaviour(level, count, rng), size, rng))
    return np.concatenate(parts)


def generate(root: str | Path, seed: int = 0, n_train: int = 480, n_val: int = 120, n_test: int = 200,
             clips_per_subject: int = 8, size: int = 32, sessions: int = 2, learners: int = 3,
             lesson_seconds: int = 48) -> Path:
    """Write the data set under ``root`` (DAiSEE layout + side signals + lessons); return ``root``.

    Args:
        root: output folder (created).
        seed: makes everything deterministic.
        n_train, n_val, n_test: clips per split (learners are disjoint across splits).
        clips_per_subject: clips per learner.
        size: frame width and height in pixels (even).
        sessions, learners, lesson_seconds: the long lesson recordings (0 sessions: none).
    """
    if size % 2 or size < 16:
        raise ConfigError(f"synthetic education data: size={size!r}; expected an even number >= 16")
    if clips_per_subject < 1:
        raise ConfigError(f"synthetic education data: clips_per_subject={clips_per_subject!r}; expected >= 1")
    root = Path(root)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    signals: list[list] = []
    subject = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        subject = _write_split(root, seed, split, int(n), subject, clips_per_subject, size, signals)
    with open(root / "side_signals.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("ClipID", *SIGNAL_COLUMNS))
        writer.writerows(signals)
    if sessions > 0:
        rows = []
        for s in range(1, sessions + 1):
            recordings = list(enumerate(lesson_levels(seed, s, learners, lesson_seconds), start=1))
            for k, stretches in track(recordings, f"generating session {s} lessons", unit="videos"):
                rel = f"session{s:02d}/learner{k:02d}.mp4"
                write_video(root / "Lessons" / rel, render_lesson(seed, s, k, stretches, size), fps=FPS, crf=20)
                rows += [(rel, f"session{s:02d}", f"learner{k:02d}", a, b, level) for a, b, level in stretches]
        with open(root / "Lessons" / "timeline.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("recording", "session", "learner", "start", "end", "level"))
            writer.writerows(rows)
    return root
