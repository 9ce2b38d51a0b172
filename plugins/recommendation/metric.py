"""``RankingMetric``: the Runner's validation metric for recommenders (registered in METRICS).

The model's ``mode='predict'`` hands it ``dict(user=u, items=[top-k item
indices], truth=[held-out items])`` per user (seen items already excluded;
``truth`` comes from the validation batch, or from the CSR given to the
metric when a sample has none) and it reports bare ``recall@K``, ``ndcg@K`` and ``hr@K`` (definitions in
:mod:`vkit.plugins.recommendation.ranking`).

Example::

    metric = RankingMetric(ks=(10,))
    metric.process({}, [dict(user=0, items=[3, 1, 4, ...], truth=[4])])
    metric.evaluate(size=1)      # {"recall@10": ..., "ndcg@10": ..., "hr@10": ...}
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from vkit.registry.errors import ConfigError, DataError


class RankingMetric(BaseMetric):
    """Recall@K, NDCG@K and HR@K of the model's top-K lists against the split's held-out items (bare keys).

    Args:
        ks: cut-offs (each at most the model's ``predict_k``).
        truth: CSR ``(indptr, indices)`` of the held-out items per user, for
            samples without their own ``truth``.
    """

    default_prefix = ""

    def __init__(self, ks: Sequence[int] = (10,), truth: Any = None, collect_device: str = "cpu",
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ks = tuple(int(k) for k in ks)
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"RankingMetric: ks={ks!r}; expected positive cut-offs")
        self.truth = truth
        self.last_metrics: dict[str, float] = {}

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if "user" not in sample or "items" not in sample:
                raise DataError(f"RankingMetric: a sample needs 'user' and 'items' (a top-k list), got {sorted(sample)}")
            truth = sample.get("truth")
            self.results.append((int(sample["user"]), list(sample["items"]), None if truth is None else list(truth)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        from vkit.plugins.recommendation.ranking import list_metrics

        if not results:
            return {f"{m}@{k}": 0.0 for k in self.ks for m in ("recall", "ndcg", "hr")}
        width = min(len(items) for _, items, _ in results)
        if width < max(self.ks):
            raise ConfigError(f"RankingMetric: top lists have {width} items, fewer than K={max(self.ks)}; "
                              "raise the model's predict_k")
        top = torch.tensor([items[:width] for _, items, _ in results])
        if all(truth is not None for _, _, truth in results):
            lengths = [len(truth) for _, _, truth in results]
            csr = (np.concatenate([[0], np.cumsum(lengths)]), np.array([i for *_, t in results for i in t], np.int64))
            users = torch.arange(len(results))
        elif self.truth is not None:
            csr, users = self.truth, torch.tensor([u for u, _, _ in results])
        else:
            raise ConfigError("RankingMetric: samples carry no 'truth' and no truth CSR was given")
        self.last_metrics = list_metrics(top, users, csr, self.ks)
        return dict(self.last_metrics)
