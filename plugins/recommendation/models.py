"""Recommenders, registered in MODELS: ``Popularity``, ``BPRMF``, ``VBPR``, ``TwoTower``.

Every model is an mmengine ``BaseModel`` (the Runner trains it) that scores a
user-item pair by a dot product ``user_vectors(u) · item_vectors()[i]``, so
one exact chunked ranking (:mod:`vkit.plugins.recommendation.ranking`) serves
them all. A model carries its data as buffers (saved in the checkpoint): the
training history per user (CSR ``history_indptr``/``history_indices``), the
training count of every item (``item_counts``: popularity, and the items
negatives are drawn from) and, for content models, the item content matrix
(``content``, rows of missing videos zero and ``content_mask`` False).

Batches: ``dict(users=Tensor, items=Tensor)`` (training pairs) or
``dict(users=Tensor, truth=Tensor)`` (users to rank, held-out items padded
with -1). ``mode='loss'`` samples negatives among the items with training
interactions, never one of the user's own training items (a positive drawn
as a negative pulls the model away from the user's taste; cornac, RecBole and
MMRec redraw it too); ``mode='predict'`` returns ``[dict(user=u, items=[top-k item
indices], truth=[held-out items])]`` with seen items excluded.

Adding a model (a plugin's ``vkit_register_components``)::

    class ItemKNN(Recommender):
        \"\"\"Scores = history x item-item similarity.\"\"\"
        def user_vectors(self, users): ...        # (B, d)
        def item_vectors(self): ...               # (N, d)
        def loss(self, users, items): ...         # {"loss": Tensor}

    registries["MODELS"].register_module(module=ItemKNN)
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from vkit.plugins.recommendation.ranking import csr_gather, topk_items
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import MODELS


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: ``-mean(log sigmoid(pos - neg))`` (Rendle et al., 2009)."""
    return -F.logsigmoid(pos - neg).mean()


def _contains(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Whether each of ``keys`` occurs in the sorted 1-D ``sorted_keys`` (binary search)."""
    if len(sorted_keys) == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    at = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[at] == keys


class Recommender(BaseModel):
    """Base class: data buffers, negative sampling, ranking, and the Runner's ``forward``.

    Args:
        num_users, num_items: sizes of the index spaces.
        num_interactions: training interactions (size of the history buffer).
        content_dim: width of the item content features (0: none).
        num_negatives: negatives sampled per positive.
        predict_k: list length of ``mode='predict'``.
        metadata_dim: width of the item metadata features (0: none; used by a fusing TwoTower).

    Subclasses implement :meth:`user_vectors`, :meth:`item_vectors` and :meth:`loss`.
    """

    uses_content: ClassVar[bool] = False
    trainable: ClassVar[bool] = True

    def __init__(self, num_users: int = 1, num_items: int = 1, num_interactions: int = 0, content_dim: int = 0,
                 num_negatives: int = 1, predict_k: int = 20, metadata_dim: int = 0,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if (num_users < 1 or num_items < 1 or num_interactions < 0 or content_dim < 0 or num_negatives < 1
                or metadata_dim < 0):
            raise ConfigError(f"{type(self).__name__}: num_users={num_users}, num_items={num_items}, "
                              f"num_interactions={num_interactions}, content_dim={content_dim}, "
                              f"num_negatives={num_negatives}; expected positive sizes")
        if self.uses_content and content_dim < 1:
            raise ConfigError(f"{type(self).__name__} ranks by content: it needs item content features "
                              "(content_dim >= 1); set content.backbone or give feature arrays")
        self.num_users, self.num_items, self.content_dim = int(num_users), int(num_items), int(content_dim)
        self.num_negatives, self.predict_k = int(num_negatives), int(predict_k)
        self.register_buffer("history_indptr", torch.zeros(num_users + 1, dtype=torch.long))
        self.register_buffer("history_indices", torch.zeros(num_interactions, dtype=torch.long))
        self.register_buffer("item_counts", torch.zeros(num_items))
        self.register_buffer("content", torch.zeros(num_items, content_dim))
        self.register_buffer("content_mask", torch.zeros(num_items, dtype=torch.bool))
        self.metadata_dim = int(metadata_dim)
        self.register_buffer("metadata", torch.zeros(num_items, self.metadata_dim))
        self.register_buffer("metadata_mask", torch.zeros(num_items, dtype=torch.bool))

    def set_data(self, indptr: np.ndarray, indices: np.ndarray, content: np.ndarray | None = None,
                 content_mask: np.ndarray | None = None, metadata: np.ndarray | None = None,
                 metadata_mask: np.ndarray | None = None) -> Recommender:
        """Fill the buffers from the training CSR, the (standardised) content matrix and the metadata features."""
        indptr_t, indices_t = torch.as_tensor(indptr, dtype=torch.long), torch.as_tensor(indices, dtype=torch.long)
        if indptr_t.shape != self.history_indptr.shape or indices_t.shape != self.history_indices.shape:
            raise DataError(f"{type(self).__name__}.set_data: history of {len(indptr_t) - 1} users / {len(indices_t)} "
                            f"interactions, model built for {self.num_users} / {len(self.history_indices)}")
        self.history_indptr.copy_(indptr_t)
        self.history_indices.copy_(indices_t)
        self.item_counts.copy_(torch.bincount(indices_t, minlength=self.num_items).float())
        if self.content_dim:
            if content is None or tuple(content.shape) != (self.num_items, self.content_dim):
                raise DataError(f"{type(self).__name__}.set_data: content of shape "
                                f"{None if content is None else content.shape}, expected ({self.num_items}, {self.content_dim})")
            self.content.copy_(torch.as_tensor(content, dtype=torch.float32))
            mask = np.ones(self.num_items, bool) if content_mask is None else content_mask
            self.content_mask.copy_(torch.as_tensor(mask, dtype=torch.bool))
        if self.metadata_dim:
            if metadata is None or tuple(metadata.shape) != (self.num_items, self.metadata_dim):
                raise DataError(f"{type(self).__name__}.set_data: metadata of shape "
                                f"{None if metadata is None else metadata.shape}, expected ({self.num_items}, {self.metadata_dim})")
            self.metadata.copy_(torch.as_tensor(metadata, dtype=torch.float32))
            mask = np.ones(self.num_items, bool) if metadata_mask is None else metadata_mask
            self.metadata_mask.copy_(torch.as_tensor(mask, dtype=torch.bool))
        return self

    # ---- what subclasses implement ----
    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` vectors of the users (indices)."""
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor:
        """``(N, d)`` vectors of every item."""
        raise NotImplementedError

    def loss(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training loss of a batch of positive pairs."""
        raise NotImplementedError

    # ---- shared ----
    #: Rounds of redrawing the negatives that hit a user's own training items before the few left (users who
    #: saw most of the catalogue) are drawn from their unseen items directly.
    negative_redraws: ClassVar[int] = 8

    def sample_negatives(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), num_negatives)`` items drawn uniformly from those with training interactions, none of
        them an item the user interacted with in training (only a user who saw every such item gets seen ones).

        Example::

            model = BPRMF(num_users=2, num_items=4, num_interactions=4)
            model.set_data(np.array([0, 2, 4]), np.array([0, 1, 2, 3]))   # user 0 saw items 0, 1; user 1 saw 2, 3
            model.sample_negatives(torch.tensor([0, 1]))   # e.g. tensor([[3], [0]]): user 0 gets 2 or 3, user 1 0 or 1
        """
        pool, seen = self._negative_pool()
        users = users.long().to(pool.device)
        draw = torch.randint(len(pool), (len(users), self.num_negatives), device=pool.device)
        owner = users[:, None].expand_as(draw)
        for _ in range(self.negative_redraws):
            hit = _contains(seen, owner * self.num_items + pool[draw])
            if not bool(hit.any()):
                return pool[draw]
            draw[hit] = torch.randint(len(pool), (int(hit.sum()),), device=pool.device)
        items = pool[draw]
        hit = _contains(seen, owner * self.num_items + items)
        for user in torch.unique(owner[hit]).tolist():  # users who saw most of the pool: draw from what is left
            left = pool[~_contains(seen[(seen >= user * self.num_items) & (seen < (user + 1) * self.num_items)],
                                   user * self.num_items + pool)]
            rows = hit & (owner == user)
            if len(left):
                items[rows] = left[torch.randint(len(left), (int(rows.sum()),), device=pool.device)]
        return items

    def _negative_pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Items negatives come from (with training interactions; all when none has) and the sorted
        ``user * num_items + item`` keys of the training history; cached until the buffers change."""
        key = tuple((t.device, t.data_ptr(), t._version) for t in (self.history_indptr, self.history_indices,
                                                                   self.item_counts))
        if getattr(self, "_pool_key", None) != key:
            pool = torch.nonzero(self.item_counts > 0).flatten()
            if len(pool) == 0:
                pool = torch.arange(self.num_items, device=self.item_counts.device)
            owner = torch.repeat_interleave(torch.arange(self.num_users, device=pool.device),
                                            torch.diff(self.history_indptr))
            self._pool = (pool, torch.sort(owner * self.num_items + self.history_indices).values)
            self._pool_key = key
        return self._pool

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``users[b]`` with ``items[b, ...]`` (``items`` ``(B,)`` or ``(B, M)``)."""
        u = self.user_vectors(users)
        v = self.item_vectors()[items]
        return (v * (u[:, None] if v.dim() == 3 else u)).sum(-1)

    @torch.no_grad()
    def recommend(self, users: torch.Tensor, k: int, exclude_seen: bool = True,
                  candidates: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` ``(scores, items)`` per user, items seen in training excluded."""
        seen = (self.history_indptr, self.history_indices) if exclude_seen else None
        return topk_items(self.user_vectors(users), self.item_vectors(), k, users=users, seen=seen,
                          candidates=candidates)

    def history(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(owner row, item)`` of the training histories of ``users``."""
        return csr_gather((self.history_indptr, self.history_indices), users)

    def forward(self, users: torch.Tensor, items: torch.Tensor | None = None, truth: torch.Tensor | None = None,
                mode: str = "tensor") -> Any:
        users = users.long()
        if mode == "loss":
            if items is None:
                raise ConfigError(f"{type(self).__name__}: mode='loss' needs items (positive pairs)")
            return self.loss(users, items.long())
        if mode == "predict":
            _, top = self.recommend(users, self.predict_k)
            out = [dict(user=int(u), items=t.tolist()) for u, t in zip(users, top)]
            if truth is not None:  # held-out items of a validation batch, for RankingMetric
                for sample, held in zip(out, truth.tolist()):
                    sample["truth"] = [i for i in held if i >= 0]
            return out
        if mode == "tensor":
            return self.user_vectors(users) @ self.item_vectors().T
        raise ConfigError(f"{type(self).__name__}.forward: mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(num_users=4, num_items=6, num_interactions=5, content_dim=3 if cls.uses_content else 0)


class Popularity(Recommender):
    """Most-popular baseline: every user gets the items with the most training interactions (no parameters)."""

    trainable = False

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(users), 1, device=self.item_counts.device)

    def item_vectors(self) -> torch.Tensor:
        return torch.log1p(self.item_counts)[:, None]

    def loss(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        raise ConfigError("Popularity has nothing to train (it counts interactions); rank with it directly")


class BPRMF(Recommender):
    """Matrix factorisation trained with the BPR loss: ``score = b_i + p_u · q_i`` (Rendle et al., 2009).

    The loss is BPR-Opt: the BPR loss of each (user, positive, sampled negative)
    triple plus ``reg / 2`` times the squared norms of the rows that triple
    touches (``p_u``, ``q_i``, ``b_i``, ``q_j``, ``b_j``), averaged over the
    triples, as cornac's BPR regularises each SGD step. The optimiser's
    ``weight_decay`` is no substitute: AdamW's decoupled decay shrinks every row
    by ``lr x weight_decay`` per step (1e-6 at the defaults), which left the
    factors unregularised.

    Args:
        dim: latent factors.
        init_std: std of the normal initialisation of the factors.
        reg: L2 weight of the rows each triple touches (cornac's ``lambda_reg``; 0: none).
    """

    def __init__(self, dim: int = 32, init_std: float = 0.1, reg: float = 0.03, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not reg >= 0:
            raise ConfigError(f"{type(self).__name__}: reg={reg!r}; expected a weight >= 0")
        self.reg = float(reg)
        self.user_emb = nn.Embedding(self.num_users, dim)
        self.item_emb = nn.Embedding(self.num_items, dim)
        self.item_bias = nn.Embedding(self.num_items, 1)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.user_emb(users), torch.ones(len(users), 1, device=users.device)], 1)

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([self.item_emb.weight, self.item_bias.weight], 1)

    def loss(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        neg = self.sample_negatives(users)
        loss = bpr_loss(self.pair_scores(users, items)[:, None], self.pair_scores(users, neg))
        if self.reg:
            loss = loss + self.penalty(users, items, neg)
        return {"loss": loss}

    def user_tables(self) -> tuple[nn.Embedding, ...]:
        """The per-user parameter tables :meth:`penalty` regularises."""
        return (self.user_emb,)

    def penalty(self, users: torch.Tensor, items: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``reg / 2 x (|p_u|^2 + |q_i|^2 + b_i^2 + |q_j|^2 + b_j^2)`` averaged over the ``(B, M)`` triples."""
        def rows(table: nn.Embedding, index: torch.Tensor) -> torch.Tensor:
            return table(index).pow(2).sum(-1)

        user = sum(rows(table, users) for table in self.user_tables())
        pos = rows(self.item_emb, items) + rows(self.item_bias, items)
        negs = rows(self.item_emb, neg) + rows(self.item_bias, neg)
        return self.reg / 2 * ((user + pos)[:, None] + negs).mean()


class VBPR(BPRMF):
    """BPR-MF plus a visual term: ``score = b_i + p_u · q_i + θ_u · (E f_i) + β' · f_i`` (He & McAuley, AAAI 2016).

    ``f_i`` is the item's content embedding (zero for a missing video); a cold
    item's id factors are untrained, so its rank comes from the visual terms.
    Regularised as :class:`BPRMF`, with ``θ_u`` among the user's rows (``E`` and
    ``β'`` are shared by every item and left to the optimiser, as cornac's
    ``lambda_e=0``).

    Args:
        dim: id factors; visual_dim: visual factors (width of ``E f_i``).
    """

    uses_content = True

    def __init__(self, dim: int = 32, visual_dim: int = 32, init_std: float = 0.1, **kwargs: Any) -> None:
        super().__init__(dim=dim, init_std=init_std, **kwargs)
        self.user_visual = nn.Embedding(self.num_users, visual_dim)
        self.visual_proj = nn.Linear(self.content_dim, visual_dim, bias=False)
        self.visual_bias = nn.Linear(self.content_dim, 1, bias=False)
        nn.init.normal_(self.user_visual.weight, std=init_std)

    def user_tables(self) -> tuple[nn.Embedding, ...]:
        return (self.user_emb, self.user_visual)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(len(users), 2, device=users.device)
        return torch.cat([self.user_emb(users), self.user_visual(users), ones], 1)

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([self.item_emb.weight, self.visual_proj(self.content), self.item_bias.weight,
                          self.visual_bias(self.content)], 1)


class TwoTower(Recommender):
    """Two towers trained with a sampled softmax: users from their history, items from content + id.

    Item tower: ``g(W f_i + e_i)``, ``f_i`` the content embedding, ``e_i`` an id
    embedding (initialised to zero, so an item never seen in training is placed
    by content alone; dropped with probability ``id_dropout`` during training so
    content carries the signal). User tower: ``h(mean of W f_j + e_j over the
    user's training history)`` (the target item left out of its own history in
    training). Scores are cosine similarities over ``temperature``; the loss is
    cross-entropy of each positive against ``num_negatives`` sampled items.

    With ``fusion`` (a FUSIONS config, e.g. ``dict(type='GatedAttention')``) and
    item metadata (``metadata_dim > 0``: hashed title/tag tokens and duration,
    :mod:`~vkit.plugins.recommendation.metadata`), ``W f_i`` becomes the fusion
    of the content and the metadata (``in_dims`` and ``dim`` filled in; a
    masked video or missing metadata drops out of the fusion), projected to
    ``dim`` when the fusion's output is wider.

    Args:
        dim: width of the towers; hidden: width of the MLP layer.
        temperature: softmax temperature.
        id_dropout: probability of dropping an item's id embedding in training.
        use_ids: add id embeddings at all (False: content only).
        fusion: FUSIONS config fusing content with metadata (``None``: content only).
    """

    uses_content = True

    def __init__(self, dim: int = 32, hidden: int = 64, temperature: float = 0.1, id_dropout: float = 0.5,
                 use_ids: bool = True, num_negatives: int = 32, fusion: dict | None = None, **kwargs: Any) -> None:
        super().__init__(num_negatives=num_negatives, **kwargs)
        if not 0 < temperature or not 0 <= id_dropout < 1:
            raise ConfigError(f"TwoTower: temperature={temperature}, id_dropout={id_dropout}; expected > 0 and in [0, 1)")
        self.temperature, self.id_dropout, self.use_ids = float(temperature), float(id_dropout), bool(use_ids)
        self.fusion: nn.Module | None = None
        if fusion is not None:
            self.fusion, self.content_proj = self._fusion(fusion, dim)
        else:
            self.content_proj = nn.Linear(self.content_dim, dim)
        self.item_id = nn.Embedding(self.num_items, dim)
        nn.init.zeros_(self.item_id.weight)
        self.item_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.user_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def _fusion(self, cfg: dict, dim: int) -> tuple[nn.Module, nn.Module]:
        """The FUSIONS module over content + metadata and the projection of its output to ``dim``."""
        from vkit.registry.registries import FUSIONS

        if not isinstance(cfg, dict) or "type" not in cfg:
            raise ConfigError(f"TwoTower.fusion: expected a FUSIONS config dict with 'type', got {cfg!r}")
        if self.metadata_dim < 1:
            raise ConfigError("TwoTower.fusion fuses content with item metadata, but the items have none: give "
                              "items.csv title/tags/duration columns (content.metadata) or drop model.fusion")
        fusion = FUSIONS.build(dict(cfg, in_dims=dict(content=self.content_dim, metadata=self.metadata_dim),
                                    dim=int(cfg.get("dim", dim))))
        if getattr(fusion, "produces_logits", False):
            raise ConfigError(f"TwoTower.fusion: {cfg['type']!r} outputs class logits; use a feature fusion "
                              "(Concat, Mean, Weighted, GatedAttention)")
        return fusion, nn.Linear(fusion.out_dim, dim) if fusion.out_dim != dim else nn.Identity()

    def _item_features(self, items: torch.Tensor | None) -> torch.Tensor:
        """``W f_i``: projected content, or the fusion of content and metadata, of ``items`` (all when ``None``).

        Each distinct item is computed once (a batch's histories repeat items many times).
        """
        if items is None:
            return self._features(slice(None))
        unique, inverse = torch.unique(items.reshape(-1), return_inverse=True)
        return self._features(unique)[inverse].reshape(*items.shape, -1)

    def _features(self, pick: Any) -> torch.Tensor:
        if self.fusion is None:
            return self.content_proj(self.content[pick])
        return self.content_proj(self.fusion(dict(content=self.content[pick], metadata=self.metadata[pick]),
                                             mask=dict(content=self.content_mask[pick], metadata=self.metadata_mask[pick])))

    def _inputs(self, items: torch.Tensor | None = None, drop: bool = False) -> torch.Tensor:
        """``W f_i + e_i`` of ``items`` (all when ``None``)."""
        x = self._item_features(items)
        if self.use_ids:
            ids = self.item_id.weight if items is None else self.item_id(items)
            if drop and self.id_dropout:
                keep = (torch.rand(ids.shape[:-1], device=ids.device) >= self.id_dropout).float()[..., None]
                ids = ids * keep
            x = x + ids
        return x

    def _user(self, users: torch.Tensor, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        owner, hist = self.history(users)
        x = self._inputs(hist)
        total = torch.zeros(len(users), x.shape[-1], device=x.device).index_add_(0, owner, x)
        count = torch.bincount(owner, minlength=len(users)).float()
        if leave_out is not None:
            total = total - self._inputs(leave_out)
            count = count - 1
        return F.normalize(self.user_tower(total / count.clamp(min=1)[:, None]), dim=-1)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self._user(users) / self.temperature

    def item_vectors(self) -> torch.Tensor:
        return F.normalize(self.item_tower(self._inputs()), dim=-1)

    def loss(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        u = self._user(users, leave_out=items)
        cand = torch.cat([items[:, None], self.sample_negatives(users)], 1)  # (B, 1 + M)
        v = F.normalize(self.item_tower(self._inputs(cand, drop=True)), dim=-1)
        logits = (v * u[:, None]).sum(-1) / self.temperature
        return {"loss": F.cross_entropy(logits, torch.zeros(len(users), dtype=torch.long, device=logits.device))}


def build_recommender(model_cfg: dict, datasets: dict[str, Any]) -> Any:
    """A MODELS recommender from ``model_cfg`` sized to ``datasets`` (``split``, ``content``, ``content_mask``)."""
    split = datasets["split"]
    content = datasets.get("content")
    cls = MODELS.get(model_cfg.get("type", ""))
    uses_content = bool(getattr(cls, "uses_content", False))
    if uses_content and content is None:
        raise ConfigError(f"model.type={model_cfg.get('type')!r} ranks by content, but the items have no videos or "
                          "features; give items.csv with a video column or .npy features")
    indptr, indices = split.csr("train")
    metadata = datasets.get("metadata") if model_cfg.get("fusion") is not None else None
    if model_cfg.get("fusion") is not None and metadata is None:
        raise ConfigError(f"model.fusion={model_cfg['fusion']!r} fuses content with item metadata, but the items have "
                          "none: give items.csv title/tags/duration columns or drop model.fusion")
    extra = dict(metadata_dim=int(metadata.shape[1])) if metadata is not None else {}
    from vkit.core.model import build_model  # records the sized config: load_trained rebuilds the model from it

    model = build_model(dict(model_cfg, num_users=split.data.num_users, num_items=split.data.num_items,
                             num_interactions=len(indices), content_dim=content.shape[1] if uses_content else 0, **extra))
    return model.set_data(indptr, indices, content if uses_content else None,
                          datasets.get("content_mask") if uses_content else None,
                          metadata, datasets.get("metadata_mask") if metadata is not None else None)


#: The models this plugin registers (MODELS), by name.
MODEL_CLASSES: dict[str, type[Recommender]] = {c.__name__: c for c in (Popularity, BPRMF, VBPR, TwoTower)}
