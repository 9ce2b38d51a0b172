"""Serving a trained recommender: top-K for a user with scores and why, popularity for unknown users.

:func:`load_recommender` rebuilds the run's model from ``model.safetensors``
and its JSON sidecar (the ``recommender`` entry: model config, sizes, user and
item ids, videos); the history, popularity counts and content matrix travel
in the checkpoint's buffers. :class:`Recommender.recommend` ranks every item
with the items the user saw in training excluded; for content models each
recommendation names the user's history items whose content is most similar
(the "why"). A user the model has never seen gets the most popular items and a
note saying so.

Example::

    service = load_recommender("work_dirs/recommendation-run7/model.safetensors")
    result = service.recommend("u0042", k=10)
    result["items"][0]     # {"rank": 1, "item_id": "v0107", "score": 3.1, "because": ["v0031", "v0200"], ...}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vkit.registry.errors import CheckpointError, ConfigError


class RecommendationService:
    """Top-K recommendations of one trained model.

    Args:
        model: a trained :class:`~vkit.plugins.recommendation.models.Recommender`.
        user_ids, item_ids: the external ids by index.
        item_videos: each item's video path (or ``None``).
    """

    def __init__(self, model: Any, user_ids: list[str], item_ids: list[str], item_videos: list[str | None] | None = None) -> None:
        if len(user_ids) != model.num_users or len(item_ids) != model.num_items:
            raise CheckpointError(f"recommender: {len(user_ids)} user ids / {len(item_ids)} item ids for a model of "
                                  f"{model.num_users} users / {model.num_items} items")
        self.model = model.eval()
        self.user_ids, self.item_ids = list(user_ids), list(item_ids)
        self.item_videos = list(item_videos or [None] * len(item_ids))
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        with torch.no_grad():
            self.item_vecs = model.item_vectors()

    def recommend(self, user: str, k: int = 10, explain: int = 2) -> dict[str, Any]:
        """``dict(user, known, note, model, items=[dict(rank, item_id, score, video, because)])``."""
        from vkit.plugins.recommendation.ranking import topk_items

        if k < 1:
            raise ConfigError(f"-k {k}: expected a positive number of recommendations")
        index = self.user_index.get(str(user))
        model = self.model
        if index is None:
            counts = model.item_counts
            scores, top = torch.topk(torch.log1p(counts), min(k, len(counts)))
            note = (f"unknown user {user!r}: not in the model's training data; showing the most popular items "
                    "(popularity fallback)")
            return self._result(user, False, note, "Popularity", scores[None], top[None], None, explain)
        users = torch.tensor([index])
        with torch.no_grad():
            scores, top = topk_items(model.user_vectors(users), self.item_vecs, k, users=users,
                                     seen=(model.history_indptr, model.history_indices))
        return self._result(user, True, None, type(model).__name__, scores, top, index, explain)

    def recommend_many(self, users: list[str], k: int = 10, explain: int = 2) -> list[dict[str, Any]]:
        """:meth:`recommend` for each user; the known users are ranked together (chunked matrix products)."""
        from vkit.plugins.recommendation.ranking import topk_items

        known = [(n, self.user_index[str(u)]) for n, u in enumerate(users) if str(u) in self.user_index]
        out: list[dict[str, Any] | None] = [None] * len(users)
        if known:
            if k < 1:
                raise ConfigError(f"-k {k}: expected a positive number of recommendations")
            index = torch.tensor([i for _, i in known])
            with torch.no_grad():
                scores, top = topk_items(self.model.user_vectors(index), self.item_vecs, k, users=index,
                                         seen=(self.model.history_indptr, self.model.history_indices))
            name = type(self.model).__name__
            for (n, i), s, t in zip(known, scores, top):
                out[n] = self._result(users[n], True, None, name, s[None], t[None], i, explain)
        return [r if r is not None else self.recommend(users[n], k, explain) for n, r in enumerate(out)]

    def _result(self, user: str, known: bool, note: str | None, model: str, scores: torch.Tensor, top: torch.Tensor,
                index: int | None, explain: int) -> dict[str, Any]:
        because = self._because(index, top[0], explain) if index is not None else [[] for _ in top[0]]
        items = [dict(rank=r + 1, item_id=self.item_ids[i], score=round(float(s), 5), video=self.item_videos[i],
                      because=b) for r, (i, s, b) in enumerate(zip(top[0].tolist(), scores[0].tolist(), because))]
        return dict(user=str(user), known=known, note=note, model=model, items=items)

    def _because(self, index: int, top: torch.Tensor, explain: int) -> list[list[str]]:
        """Per recommended item, the user's history items with the most similar content (content models only)."""
        model = self.model
        if not getattr(model, "uses_content", False) or explain < 1:
            return [[] for _ in top]
        history = model.history_indices[model.history_indptr[index]:model.history_indptr[index + 1]]
        if len(history) == 0:
            return [[] for _ in top]
        content = torch.nn.functional.normalize(model.content, dim=1)
        sim = content[top] @ content[history].T  # (k, H)
        best = torch.topk(sim, min(explain, len(history)), dim=1).indices
        return [[self.item_ids[int(history[j])] for j in row] for row in best.tolist()]


def load_recommender(checkpoint: str | Path, task: Any = None) -> RecommendationService:
    """The :class:`RecommendationService` of a run's ``model.safetensors``, reloaded by
    :func:`vkit.core.trained.load_trained` (its sidecar names the model and the ids; ``task`` rebuilds
    a checkpoint written before vkit saved ``model_config``)."""
    from vkit.core.trained import load_trained

    return service(load_trained(checkpoint, task=task))


def service(trained: Any) -> RecommendationService:
    """The :class:`RecommendationService` around a :class:`~vkit.core.trained.Trained` recommender (the sidecar's
    ``recommender`` entry holds the user and item ids and the items' videos)."""
    rec = recommender_meta(trained.meta, trained.files.weights)
    return RecommendationService(trained.model, rec["user_ids"], rec["item_ids"], rec.get("item_videos"))


def recommender_meta(meta: dict[str, Any], checkpoint: str | Path) -> dict[str, Any]:
    """The sidecar's ``recommender`` entry; a :class:`CheckpointError` when it has none."""
    rec = meta.get("recommender")
    if not isinstance(rec, dict):
        raise CheckpointError(f"{checkpoint}: its sidecar has no 'recommender' entry; it was not written by "
                              "`vkit run recommendation`")
    return rec


def rebuild_recommender(meta: dict[str, Any]) -> Any:
    """The untrained recommender of a sidecar written before vkit saved ``model_config`` (sized from ``recommender``)."""
    from vkit.registry.registries import MODELS

    rec = recommender_meta(meta, f"run {meta.get('run_id', '?')}")
    cls = MODELS.get(rec["model"].get("type", ""))
    content_dim = int(rec["content_dim"]) if getattr(cls, "uses_content", False) else 0
    extra = dict(metadata_dim=int(rec["metadata_dim"])) if rec.get("metadata_dim") else {}
    return MODELS.build(dict(rec["model"], num_users=int(rec["num_users"]), num_items=int(rec["num_items"]),
                             num_interactions=int(rec["num_interactions"]), content_dim=content_dim, **extra))
