"""The embedded data set of ``recommendation``: users, real MP4 videos of six visual/motion genres, interactions.

Deterministic from ``seed``. Every item is a real H.264 MP4 (PyAV), 32x32
pixels, 16 frames at 8 fps: a sinusoidal grating blending two colours, with
sensor noise. Its **genre** fixes the grating's orientation and whether it
moves (see :data:`GENRES`); within a genre the angle (±10°), the spatial
frequency (0.08-0.18 cycles/pixel), the speed and direction of motion, the two
colours and the contrast vary per item. Colours and brightness are drawn from
the same distributions for every genre, so mean colour says nothing about the
genre: orientation and motion do.

Metadata (:func:`item_metadata`): a title, tags and a declared duration per
item that carry some, not all, of the genre: half the titles and half the tag
lists name it (a few titles name another genre), and durations differ by
genre only in pairs.

Users: each has a preference over genres, ``Dirichlet(concentration)``, and
items a latent popularity ``N(0, 1)``. A user's history is drawn without
replacement from the *catalogue* items with probability proportional to
``exp(affinity * log(pref[genre] + 0.01) + popularity_weight * popularity + Gumbel noise)``
(Gumbel top-k), then ``recent`` further interactions come from the catalogue
plus the **new items** (``n_new``; uploaded last, with ``new_boost`` added to
their logits). New items only occur in these last interactions: with the
default leave-last-out split (1 validation + 3 test per user) they have no
training interactions, the cold-start slice.

Layout (the interactions-CSV format :func:`vkit.plugins.recommendation.data.read_csv` reads)::

    root/interactions.csv    # user_id,item_id,timestamp   (one row per interaction)
    root/items.csv           # item_id,video,title,tags,duration   (video: path relative to this file; tags: a|b)
    root/videos/v0001.mp4 ...
    root/truth.json          # generator truth for tests and docs: genres, new items, user preferences

Example::

    from vkit.plugins.recommendation.synthetic import generate
    items_csv = generate(Path("/tmp/rec"), seed=0, n_users=200, n_items=120, n_new=30)
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from vkit.core.progress import track
from vkit.core.video import write_video
from vkit.registry.errors import ConfigError

SIZE = 32
FRAMES = 16
FPS = 8
#: ``(name, grating angle in degrees, moves)`` of each genre.
GENRES: tuple[tuple[str, float, bool], ...] = (
    ("calm-horizon", 0.0, False),
    ("surf", 0.0, True),
    ("forest", 90.0, False),
    ("traffic", 90.0, True),
    ("rain", 45.0, True),
    ("architecture", 135.0, False),
)
INTERACTIONS_FILE, ITEMS_FILE, TRUTH_FILE = "interactions.csv", "items.csv", "truth.json"
#: Words of each genre (same order as :data:`GENRES`) that titles and tags may carry.
GENRE_WORDS: tuple[tuple[str, ...], ...] = (
    ("horizon", "dusk", "calm"), ("surf", "waves", "ocean"), ("forest", "trees", "trail"),
    ("traffic", "city", "cars"), ("rain", "storm", "drizzle"), ("tower", "facade", "building"),
)
#: Words and tags any item may carry (no genre information).
GENERIC_WORDS = ("my", "new", "video", "clip", "daily", "best", "look", "today", "shot", "moment", "weekend", "short")
GENERIC_TAGS = ("hd", "4k", "fun", "travel", "relax", "slowmo", "vlog", "music")


def item_metadata(seed: int, index: int, genre: int, signal: float = 0.5) -> dict:
    """Title, tags and declared duration (seconds) of item ``index``: only partly informative about ``genre``.

    With probability ``signal`` the title has a word of the item's genre (else, one time in five, a word of
    another genre), and independently a tag of it; the duration is log-normal around 60, 120 or 240 s by
    ``genre % 3`` (genres share durations). Its own random stream: videos and interactions do not change.
    """
    rng = np.random.default_rng([seed, 2, index])
    words = list(rng.choice(GENERIC_WORDS, size=int(rng.integers(2, 4)), replace=False))
    if rng.random() < signal:
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(GENRE_WORDS[genre])))
    elif rng.random() < 0.2:
        other = int((genre + rng.integers(1, len(GENRES))) % len(GENRES))
        words.append(str(rng.choice(GENRE_WORDS[other])))
    tags = list(rng.choice(GENERIC_TAGS, size=int(rng.integers(1, 3)), replace=False))
    if rng.random() < signal:
        tags.append(str(rng.choice(GENRE_WORDS[genre])))
    duration = float(np.round(np.exp(rng.normal(np.log(60.0 * 2 ** (genre % 3)), 0.5)), 1))
    return dict(title=" ".join(str(w) for w in words).capitalize(), tags=[str(t) for t in tags], duration=duration)


def render_item(seed: int, index: int, genre: int) -> np.ndarray:
    """Frames ``(16, 32, 32, 3)`` uint8 of item ``index`` of ``genre`` (each item has its own random stream)."""
    if not 0 <= genre < len(GENRES):
        raise ConfigError(f"synthetic recommendation data: genre {genre} out of range 0..{len(GENRES) - 1}")
    rng = np.random.default_rng([seed, 1, index])
    _, angle, moves = GENRES[genre]
    theta = np.deg2rad(angle + rng.uniform(-10, 10))
    freq = rng.uniform(0.08, 0.18)  # cycles per pixel
    speed = rng.uniform(0.12, 0.3) * rng.choice((-1.0, 1.0)) if moves else rng.uniform(-0.01, 0.01)  # cycles per frame
    colors = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    contrast = rng.uniform(0.6, 1.0)
    phase0 = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    along = x * np.cos(theta) + y * np.sin(theta)
    t = np.arange(FRAMES, dtype=np.float32)[:, None, None]
    wave = 0.5 + 0.5 * contrast * np.sin(2 * np.pi * (freq * along[None] - speed * t) + phase0)  # (T, H, W)
    frames = colors[0] * wave[..., None] + colors[1] * (1 - wave[..., None])
    frames += rng.normal(0, 6, size=frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _gumbel_topk(logits: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` indices drawn without replacement with probabilities ``softmax(logits)`` (in draw order)."""
    keys = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-keys, kind="stable")
    return order[:k]


def generate(root: str | Path, seed: int = 0, n_users: int = 600, n_items: int = 240, n_new: int = 60,
             history: tuple[int, int] = (10, 25), recent: int = 4, concentration: float = 0.3,
             affinity: float = 2.0, popularity_weight: float = 0.7, new_boost: float = 1.0,
             metadata_signal: float = 0.5) -> Path:
    """Write the data set under ``root`` and return its ``items.csv``.

    Args:
        root: output folder (created).
        seed: makes everything deterministic.
        n_users: users.
        n_items: catalogue items (they make up every user's history).
        n_new: new items (cold start: they occur only in the last ``recent`` interactions).
        history: ``(min, max)`` length of a user's history before the recent interactions.
        recent: interactions per user after the history (validation + test of the default split).
        concentration: Dirichlet concentration of the users' genre preferences (small: few favourite genres).
        affinity: weight of the user's log genre preference in the interaction logit.
        popularity_weight: weight of the item's latent popularity.
        new_boost: added to the logits of new items in the recent interactions (new uploads are promoted).
        metadata_signal: how often an item's title (and, independently, its tags) names its genre
            (:func:`item_metadata`).
    """
    lo, hi = (int(v) for v in history)
    if n_users < 2 or n_items < len(GENRES) or n_new < 1 or recent < 1 or not 1 <= lo <= hi or hi >= n_items:
        raise ConfigError(
            f"synthetic recommendation data: need n_users >= 2, n_items >= {len(GENRES)}, n_new >= 1, recent >= 1 "
            f"and 1 <= history[0] <= history[1] < n_items; got n_users={n_users}, n_items={n_items}, n_new={n_new}, "
            f"recent={recent}, history={history}")
    root = Path(root)
    rng = np.random.default_rng([seed, 0])
    total = n_items + n_new
    genres = np.concatenate([np.arange(n_items) % len(GENRES), rng.integers(0, len(GENRES), n_new)])
    genres[:n_items] = rng.permutation(genres[:n_items])
    popularity = rng.normal(0, 1, total)
    prefs = rng.dirichlet(np.full(len(GENRES), concentration), size=n_users)
    item_ids = [f"v{i:04d}" for i in range(total)]
    rows = []
    for u in range(n_users):
        logits = affinity * np.log(prefs[u, genres] + 0.01) + popularity_weight * popularity
        length = int(rng.integers(lo, hi + 1))
        past = _gumbel_topk(logits[:n_items], length, rng)
        fresh = logits.copy()
        fresh[n_items:] += new_boost
        fresh[past] = -np.inf
        now = _gumbel_topk(fresh, recent, rng)
        clock = 1_600_000_000 + int(rng.integers(0, 86_400))
        for i in [*past.tolist(), *now.tolist()]:
            clock += int(rng.integers(60, 3_600))
            rows.append((f"u{u:04d}", item_ids[i], clock))
    root.mkdir(parents=True, exist_ok=True)
    for i, item in track(list(enumerate(item_ids)), "generating catalogue videos", unit="videos"):
        write_video(root / "videos" / f"{item}.mp4", render_item(seed, i, int(genres[i])), fps=FPS, crf=20)
    with open(root / INTERACTIONS_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp"])
        writer.writerows(rows)
    with open(root / ITEMS_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "video", "title", "tags", "duration"])
        for i, item in enumerate(item_ids):
            meta = item_metadata(seed, i, int(genres[i]), metadata_signal)
            writer.writerow([item, f"videos/{item}.mp4", meta["title"], "|".join(meta["tags"]), meta["duration"]])
    truth = dict(genres={item: GENRES[g][0] for item, g in zip(item_ids, genres.tolist())},
                 new_items=item_ids[n_items:], popularity=dict(zip(item_ids, np.round(popularity, 4).tolist())),
                 preferences={f"u{u:04d}": np.round(prefs[u], 4).tolist() for u in range(n_users)},
                 genre_names=[g[0] for g in GENRES])
    (root / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
    return root / ITEMS_FILE
