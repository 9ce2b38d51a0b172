"""Item metadata (title, tags, duration) as a feature matrix, fused with content through the FUSIONS registry.

An ``items.csv`` may carry, next to ``item_id,video``, the optional columns
``title`` (free text), ``tags`` (separated by ``|``) and ``duration``
(seconds). :func:`read_item_metadata` reads them (a bad duration is reported
with its row and left out); :func:`metadata_features` turns them into
``(N, buckets + 1)`` float32 features: the title words and tags (lowercased,
tags prefixed ``tag:``) hashed into ``buckets`` slots (crc32, so the same on
every machine) and L2-normalised, plus the standardised log duration; items
without any metadata are masked (``mask[i] = False``, zero row). The two-tower
model fuses them with the video content when ``model.fusion`` is set
(:class:`~vkit.plugins.recommendation.models.TwoTower`).

Example::

    meta = read_item_metadata("items.csv")      # ({item_id: dict(title, tags, duration)}, problems)
    features, mask = metadata_features([meta[0].get(i) for i in item_ids], buckets=64)
"""
from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vkit.core.datalist import BadRows, read_table
from vkit.registry.errors import ConfigError

#: The optional metadata columns of ``items.csv``.
METADATA_COLUMNS = ("title", "tags", "duration")


def read_item_metadata(path: str | Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``({item_id: dict(title, tags, duration)}, problems)`` from the optional columns of an items CSV.

    Returns an empty dict when the file has none of :data:`METADATA_COLUMNS`.
    A duration that is not a non-negative number is a problem naming the row
    (the item keeps its title and tags).
    """
    table = read_table(path, bad=BadRows(skip_bad=True))  # the catalogue reader reports the bad rows
    meta: dict[str, dict[str, Any]] = {}
    problems: list[dict[str, Any]] = []
    if not set(METADATA_COLUMNS) & set(table.header):
        return {}, []
    for row in table.rows:
        item = row.get("item_id")
        if not item or item in meta:
            continue  # the catalogue reader reports these rows
        title = row.get("title")
        tags = [t.strip() for t in row.get("tags").split("|") if t.strip()]
        duration = _duration(row.get("duration"))
        if isinstance(duration, str):  # the row is still used: a note on it, not a bad row
            problems.append(dict(item_id=f"{table.file.name}:{row.number}", path=str(table.file),
                                 reason=f"item {item!r}: {duration}; its duration is left out"))
            duration = None
        if title or tags or duration is not None:
            meta[item] = dict(title=title, tags=tags, duration=duration)
    return meta, problems


def _duration(value: str | None) -> float | str | None:
    """The duration in seconds, ``None`` when empty, or the reason it is unusable (a str)."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return f"duration {text!r} is not a number (seconds)"
    if not math.isfinite(seconds) or seconds < 0:
        return f"duration {text!r} is not a non-negative number of seconds"
    return seconds


def tokens(meta: dict[str, Any]) -> list[str]:
    """The words of the title and the tags (``tag:<tag>``), lowercased."""
    words = re.findall(r"[a-z0-9]+", str(meta.get("title") or "").lower())
    return words + [f"tag:{t.lower()}" for t in meta.get("tags") or ()]


def metadata_features(items: Sequence[dict[str, Any] | None], buckets: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, buckets + 1), mask (N,))``: hashed title/tag tokens (L2-normalised) and standardised log duration."""
    if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
        raise ConfigError(f"content.metadata.buckets={buckets!r}; expected a positive int")
    n = len(items)
    features = np.zeros((n, buckets + 1), np.float32)
    mask = np.array([m is not None for m in items], bool)
    durations = np.full(n, np.nan)
    for i, meta in enumerate(items):
        if meta is None:
            continue
        for token in tokens(meta):
            features[i, zlib.crc32(token.encode()) % buckets] += 1.0
        norm = np.linalg.norm(features[i, :buckets])
        if norm:
            features[i, :buckets] /= norm
        if meta.get("duration") is not None:
            durations[i] = math.log1p(float(meta["duration"]))
    known = ~np.isnan(durations)
    if known.any():
        mean, std = durations[known].mean(), durations[known].std() + 1e-6
        features[known, buckets] = ((durations[known] - mean) / std).astype(np.float32)
    return features, mask


__all__ = ["METADATA_COLUMNS", "metadata_features", "read_item_metadata", "tokens"]
