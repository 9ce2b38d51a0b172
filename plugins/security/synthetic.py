"""The embedded data set of ``security-anomaly``: synthetic surveillance clips with known anomalous frames.

Deterministic from ``seed``. Every video is a real H.264 MP4 (PyAV), 64x64
pixels, 10 fps, 6 s (60 frames), of a fixed camera over a textured ground:

* **normal scene**: 3-5 "people" (3x7 pixel blobs of random colours) walk
  left or right along two horizontal walkways (rows ~35-53) at 0.5-1.2 px per
  frame, re-entering when they leave the frame; every pixel gets sensor noise.
* **anomalous videos** hold one event (15-25 frames) of one category:
  ``Running`` (a person crosses the walkway at 4-6 px/frame), ``Falling``
  (a walking person drops off the walkway, lies struggling, gets up and walks
  on) or ``Intrusion`` (a person appears in the top zone, rows 4-20, where no
  one ever walks, wanders there and vanishes).

Normal and anomalous videos draw background, colours and crowd size from the
same distributions (3-5 people on the walkways; the faller is one of them,
the runner and the intruder come in addition, during their event only);
brightness says nothing, only motion and position do.

Layout (UCF-Crime style, read back by :func:`vkit.plugins.security.data.discover`)::

    root/Anomaly-Videos/Running/Running000.mp4 ...    # 50 anomalous videos
    root/Normal_Videos/Normal_000.mp4 ...             # 50 normal videos
    root/Temporal_Anomaly_Annotation.txt              # every video: name category s1 e1 s2 e2
    root/Anomaly_Train.txt, root/Anomaly_Test.txt     # split lists: 30+30 train, 20+20 test

Example::

    from vkit.plugins.security.synthetic import generate
    annotation = generate(Path("/tmp/sec"), seed=0)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vkit.core.progress import Progress
from vkit.core.video import write_video
from vkit.plugins.security.annotations import Annotation, write_annotations
from vkit.registry.errors import ConfigError

SIZE = 64
FPS = 10
NUM_FRAMES = 60
LANES = (34.0, 52.0)  # walkway centre rows
PERSON = (3, 7)  # standing (width, height)
LYING = (7, 3)
RESTRICTED = (4.0, 20.0)  # top zone rows: never visited in normal scenes
CATEGORIES = ("Running", "Falling", "Intrusion")
ANNOTATION_FILE = "Temporal_Anomaly_Annotation.txt"
TRAIN_LIST, TEST_LIST = "Anomaly_Train.txt", "Anomaly_Test.txt"


@dataclass
class _Walker:
    x0: float
    y: float
    speed: float
    color: np.ndarray

    def x(self, t: int) -> float:
        span = SIZE + 16.0
        return (self.x0 + self.speed * t + 8.0) % span - 8.0


def _background(rng: np.random.Generator) -> np.ndarray:
    import cv2

    coarse = rng.uniform(70, 170, size=(6, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 12, size=(SIZE, SIZE, 1)).astype(np.float32)
    bg = smooth + fine
    for lane in LANES:  # paved walkways: a slightly smoother, lighter band
        top, bottom = int(lane - 5), int(lane + 5)
        bg[top:bottom] = 0.7 * bg[top:bottom] + 0.3 * 150.0
    return bg


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(20, 235, size=3).astype(np.float32)


def _draw(frame: np.ndarray, x: float, y: float, size: tuple[int, int], color: np.ndarray) -> None:
    """Paint a ``(w, h)`` blob centred at ``(x, y)`` (clipped to the frame)."""
    w, h = size
    left, top = int(round(x - w / 2)), int(round(y - h / 2))
    l, t, r, b = max(left, 0), max(top, 0), min(left + w, SIZE), min(top + h, SIZE)
    if l < r and t < b:
        frame[t:b, l:r] = color


def _walkers(rng: np.random.Generator, count: int) -> list[_Walker]:
    out = []
    for _ in range(count):
        speed = rng.uniform(0.5, 1.2) * rng.choice((-1.0, 1.0))
        out.append(_Walker(rng.uniform(-8, SIZE + 8), LANES[rng.integers(2)] + rng.uniform(-1, 1), speed, _color(rng)))
    return out


def _actor_track(category: str, rng: np.random.Generator) -> tuple[dict[int, tuple[float, float, tuple[int, int]]], int, int]:
    """Per-frame ``(x, y, size)`` of the anomalous actor and the event's inclusive frame interval."""
    track: dict[int, tuple[float, float, tuple[int, int]]] = {}
    if category == "Running":
        speed = rng.uniform(4.0, 6.0)
        direction = rng.choice((-1.0, 1.0))
        y = LANES[rng.integers(2)] + rng.uniform(-1, 1)
        start = int(rng.integers(8, NUM_FRAMES - 25))
        x, t = (-2.0 if direction > 0 else SIZE + 2.0), start
        while -2.0 <= x <= SIZE + 2.0 and t < NUM_FRAMES:
            track[t] = (x, y, PERSON)
            x, t = x + direction * speed, t + 1
        return track, start, t - 1
    if category == "Falling":
        duration = int(rng.integers(15, 26))
        start = int(rng.integers(10, NUM_FRAMES - duration - 5))
        lane = LANES[rng.integers(2)]
        speed = rng.uniform(0.5, 1.2) * rng.choice((-1.0, 1.0))
        fall_x = rng.uniform(16, SIZE - 16)
        down = lane + 9.0  # off the walkway: rows nobody walks on
        for t in range(NUM_FRAMES):
            if t < start:
                track[t] = (fall_x + speed * (t - start), lane, PERSON)
            elif t < start + 3:  # falling: drops off the walkway
                track[t] = (fall_x, lane + (t - start + 1) * (down - lane) / 3, LYING)
            elif t < start + duration - 3:  # lying, struggling
                track[t] = (fall_x + rng.integers(-1, 2), down + rng.integers(-1, 2), LYING)
            elif t < start + duration:  # getting up
                track[t] = (fall_x, down - (t - (start + duration - 3) + 1) * (down - lane) / 3, PERSON)
            else:
                track[t] = (fall_x + speed * (t - start - duration), lane, PERSON)
        return track, start, start + duration - 1
    if category == "Intrusion":
        duration = int(rng.integers(15, 26))
        start = int(rng.integers(5, NUM_FRAMES - duration - 3))
        x, y = rng.uniform(8, SIZE - 8), rng.uniform(RESTRICTED[0] + 4, RESTRICTED[1] - 4)
        vx, vy = rng.uniform(-1, 1, size=2)
        for t in range(start, start + duration):
            track[t] = (x, y, PERSON)
            vx, vy = np.clip(vx + rng.normal(0, 0.4), -1.2, 1.2), np.clip(vy + rng.normal(0, 0.3), -0.8, 0.8)
            x, y = float(np.clip(x + vx, 4, SIZE - 4)), float(np.clip(y + vy, *RESTRICTED))
        return track, start, start + duration - 1
    raise ConfigError(f"synthetic security data: unknown category {category!r}; expected one of {CATEGORIES}")


def render_video(seed: int, index: int, category: str | None) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Frames ``(60, 64, 64, 3)`` uint8 of one video and its anomalous interval (``None`` if normal).

    Args:
        seed: the data set's seed.
        index: the video's index (each video has its own random stream).
        category: one of :data:`CATEGORIES`, or ``None`` for a normal video.
    """
    rng = np.random.default_rng([seed, index])
    bg = _background(rng)
    crowd = int(rng.integers(3, 6))
    walkers = _walkers(rng, crowd - (category == "Falling"))  # the faller is one of the crowd
    track, interval = {}, None
    if category is not None:
        actor_color = _color(rng)
        track, start, end = _actor_track(category, rng)
        interval = (start, end)
    frames = np.empty((NUM_FRAMES, SIZE, SIZE, 3), np.uint8)
    for t in range(NUM_FRAMES):
        frame = bg.copy()
        for walker in walkers:
            _draw(frame, walker.x(t), walker.y, PERSON, walker.color)
        if t in track:
            x, y, size = track[t]
            _draw(frame, x, y, size, actor_color)
        frame += rng.normal(0, 3, size=frame.shape).astype(np.float32)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames, interval


def generate(root: str | Path, seed: int = 0, num_normal: int = 50, num_anomalous: int = 50,
             test_fraction: float = 0.4) -> Path:
    """Write the data set under ``root`` and return its annotation file.

    Args:
        root: output folder (created).
        seed: makes everything deterministic.
        num_normal, num_anomalous: video counts (anomalous ones cycle through :data:`CATEGORIES`).
        test_fraction: share of each class in the test split (the rest is train).
    """
    if num_normal < 2 or num_anomalous < 2:
        raise ConfigError(f"synthetic security data: need >= 2 normal and >= 2 anomalous videos, "
                          f"got num_normal={num_normal}, num_anomalous={num_anomalous}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"synthetic security data: test_fraction={test_fraction!r}; expected 0 < x < 1")
    root = Path(root)
    notes: list[Annotation] = []
    split: dict[str, list[str]] = {"train": [], "test": []}
    bar = Progress("generating surveillance videos", num_normal + num_anomalous, unit="videos")
    for label, count in ((1, num_anomalous), (0, num_normal)):
        n_test = max(1, int(round(count * test_fraction)))
        for i in range(count):
            index = i if label else num_anomalous + i
            category = CATEGORIES[i % len(CATEGORIES)] if label else None
            frames, interval = render_video(seed, index, category)
            rel = f"Anomaly-Videos/{category}/{category}{i:03d}.mp4" if label else f"Normal_Videos/Normal_{i:03d}.mp4"
            write_video(root / rel, frames, fps=FPS, crf=18)
            notes.append(Annotation(Path(rel).name, category or "Normal", (interval,) if interval else ()))
            split["test" if i >= count - n_test else "train"].append(rel)
            bar.advance()
    bar.close()
    (root / TRAIN_LIST).write_text("".join(p + "\n" for p in split["train"]))
    (root / TEST_LIST).write_text("".join(p + "\n" for p in split["test"]))
    return write_annotations(root / ANNOTATION_FILE, notes)
