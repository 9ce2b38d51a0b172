"""Training bags of ``security-anomaly``: cached segment features per video and the MIL pairs the Runner trains on.

Example::

    videos = extract_features(dataset.records, extractor, ctx)      # [VideoFeatures], bad videos per --skip-bad
    pairs = MILPairs(anomalous, normal, pairs_per_video=8, seed=0)  # the Runner's train set
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vkit.core.embedding import FrozenEmbedder
from vkit.plugins.security.data import VideoRecord
from vkit.registry.errors import ConfigError, DataError


@dataclass
class VideoFeatures:
    """One video's segment features with what the metrics and the store need."""

    record: VideoRecord
    features: np.ndarray  # (num_segments, D)
    info: dict[str, Any]  # frames, fps, duration
    sha256: str


class MILPairs:
    """Training pairs ``{"anomalous": (S, D), "normal": (S, D)}`` for the Runner (deterministic from ``seed``).

    Every anomalous video appears ``pairs_per_video`` times, each time with a
    normal video drawn without replacement from a seeded permutation.

    Args:
        anomalous, normal: feature bags ``(N, S, D)``.
        pairs_per_video: pairs per anomalous video per epoch.
        seed: seeds the pairing.
    """

    def __init__(self, anomalous: np.ndarray, normal: np.ndarray, pairs_per_video: int = 8, seed: int = 0) -> None:
        if len(anomalous) < 1 or len(normal) < 1:
            raise DataError(f"MIL training needs anomalous and normal training videos, got {len(anomalous)} "
                            f"anomalous and {len(normal)} normal")
        if int(pairs_per_video) < 1:
            raise ConfigError(f"pairs_per_video: expected a positive int, got {pairs_per_video!r}")
        self.anomalous = torch.as_tensor(anomalous, dtype=torch.float32)
        self.normal = torch.as_tensor(normal, dtype=torch.float32)
        rng = np.random.default_rng(seed)
        count = len(anomalous) * int(pairs_per_video)
        draws = np.concatenate([rng.permutation(len(normal)) for _ in range(-(-count // len(normal)))])
        self.pairs = [(i % len(anomalous), int(draws[i])) for i in range(count)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a, n = self.pairs[index]
        return dict(anomalous=self.anomalous[a], normal=self.normal[n])


def extract_features(records: list[VideoRecord], extractor: FrozenEmbedder, ctx: Any) -> list[VideoFeatures]:
    """Features of every record (cached by video sha256), each video recorded in the store's videos table.

    A bad video is an error, or (``--skip-bad``) a skipped item and a ``failed`` video row with the reason
    (:func:`vkit.core.scoring.each_video`, the loop ``vkit score`` runs in process).
    """
    from vkit.core.scoring import each_video, video_rows

    outcomes = each_video([r.path for r in records], extractor, skip_bad=ctx.skip_bad, label="extracting features")
    out = [VideoFeatures(r, o["result"], dict(o["info"], size=o["size"]), o["sha256"])
           for r, o in zip(records, outcomes) if o["status"] == "ok"]
    if outcomes:
        ctx.store.upsert_videos(video_rows(outcomes))
    ctx.record_skipped([dict(item_id=f"{r.split}/{r.name}", path=str(r.path), reason=o["error"])
                        for r, o in zip(records, outcomes) if o["status"] == "failed"])
    return out
