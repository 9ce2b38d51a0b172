"""Exact full ranking: chunked score matrices, seen items masked, ``torch.topk``; Recall/NDCG/HR@K, MRR, coverage.

Every model scores by a dot product of a user vector and an item vector, so
ranking ``U`` users over ``N`` items is ``U/chunk`` matrix products of
``(chunk, d) @ (d, N)``, a scatter of ``-inf`` over the items each user has
already seen, and one ``torch.topk`` per chunk: no Python loop over users or
items, memory bounded by ``chunk x N``. The top-K of each row is exact and
taken in two passes (:func:`row_topk`: block maxima, then the best blocks).

Metric definitions (per user with at least one held-out item, averaged over
those users; ``rel`` the user's held-out items among the candidates, ``K``
the cut-off):

* ``recall@K`` = hits in the top K / ``|rel|``;
* ``ndcg@K`` = ``sum(1/log2(rank+1))`` over hits / the same for an ideal
  list of ``min(|rel|, K)`` hits;
* ``hr@K`` = 1 if any hit in the top K;
* ``mrr`` = 1 / the full-ranking rank of the best-ranked held-out item
  (rank = 1 + candidates scored strictly higher, seen items excluded);
* ``coverage@K`` = distinct items in all top-K lists / candidates.

Example::

    top = topk_items(user_vecs, item_vecs, k=10, seen=(indptr, indices))      # (U, 10) item indices
    metrics = ranking_metrics(user_vecs, item_vecs, users, truth, seen, ks=(10, 20))
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

CSR = tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]


def _t(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.long)


def csr_gather(csr: CSR, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(position of the row in rows, column)`` of every entry of ``rows`` in a CSR matrix (vectorised).

    Example::

        csr_gather((np.array([0, 2, 3]), np.array([5, 7, 9])), torch.tensor([1, 0]))
        # (tensor([0, 1, 1]), tensor([9, 5, 7]))
    """
    indptr, indices = _t(csr[0]), _t(csr[1])
    rows = rows.long()
    starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
    owner = torch.repeat_interleave(torch.arange(len(rows)), lengths)
    total = int(lengths.sum())
    if total == 0:
        return owner, torch.zeros(0, dtype=torch.long)
    offsets = torch.arange(total) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    return owner, indices[torch.repeat_interleave(starts, lengths) + offsets]


def _remap(owner: torch.Tensor, cols: torch.Tensor, position: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns as positions among the candidates (entries outside the candidates dropped)."""
    if position is None:
        return owner, cols
    pos = position[cols]
    keep = pos >= 0
    return owner[keep], pos[keep]


def _candidates(num_items: int, candidates: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if candidates is None:
        return None, None
    cand = _t(candidates)
    position = torch.full((num_items,), -1, dtype=torch.long)
    position[cand] = torch.arange(len(cand))
    return cand, position


@torch.inference_mode()
def masked_scores(user_vecs: torch.Tensor, item_vecs: torch.Tensor, users: torch.Tensor, seen: CSR | None,
                  position: torch.Tensor | None = None) -> torch.Tensor:
    """Scores ``(len(users), N)`` of one chunk with the users' seen items at ``-inf``.

    ``user_vecs`` are the chunk's vectors; ``users`` their row indices in ``seen``.
    """
    scores = user_vecs.float() @ item_vecs.float().T
    if seen is not None:
        owner, cols = _remap(*csr_gather(seen, users), position)
        scores[owner, cols] = -torch.inf
    return scores


def row_topk(scores: torch.Tensor, k: int, block: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``torch.topk(scores, k, dim=1)`` of a wide matrix in two cheap passes.

    The row's top-``k`` entries lie in the ``k`` blocks (of ``block`` columns)
    with the largest maxima: a block outside them has ``k`` blocks whose maxima
    are at least its own, so ``k`` entries beat each of its entries. One
    ``amax`` over the blocks, a ``topk`` over the block maxima and one over the
    ``k x block`` gathered entries replace a ``topk`` over the full row (which
    is several times slower on CPU for rows of 10^5 items). Ties may come back
    in a different order than ``torch.topk``'s.
    """
    rows, width = scores.shape
    k = min(int(k), width)
    if width < 8 * block or k * block * 4 > width or not scores.is_contiguous():
        return torch.topk(scores, k, dim=1)
    blocks = width // block
    full = blocks * block
    grid = scores.as_strided((rows, blocks, block), (width, block, 1))  # a view: no copy of the scores
    best = torch.topk(grid.amax(2), k, dim=1).indices  # (rows, k) blocks
    picked = grid.gather(1, best[:, :, None].expand(rows, k, block)).reshape(rows, k * block)
    columns = (best[:, :, None] * block + torch.arange(block)).reshape(rows, k * block)
    if full < width:  # the last partial block is always a candidate
        picked = torch.cat([picked, scores[:, full:]], 1)
        columns = torch.cat([columns, torch.arange(full, width).expand(rows, width - full)], 1)
    values, where = torch.topk(picked, k, dim=1)
    return values, columns.gather(1, where)


@torch.inference_mode()
def topk_items(user_vecs: torch.Tensor, item_vecs: torch.Tensor, k: int, users: Any = None, seen: CSR | None = None,
               candidates: Any = None, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` ``(scores, item indices)`` for every row of ``user_vecs``, seen items excluded.

    Args:
        user_vecs: ``(U, d)``; item_vecs: ``(N, d)``.
        k: list length (clipped to the number of candidates).
        users: row index of each user vector in ``seen`` (default ``0..U-1``).
        seen: CSR ``(indptr, indices)`` of the items to exclude per user.
        candidates: item indices to rank among (default: all items).
        chunk: users per matrix product.
    """
    cand, position = _candidates(len(item_vecs), candidates)
    items = item_vecs if cand is None else item_vecs[cand]
    users = torch.arange(len(user_vecs)) if users is None else _t(users)
    k = min(int(k), len(items))
    out_s, out_i = [], []
    for start in range(0, len(user_vecs), chunk):
        scores = masked_scores(user_vecs[start:start + chunk], items, users[start:start + chunk], seen, position)
        top_s, top_i = row_topk(scores, k)
        out_s.append(top_s)
        out_i.append(top_i if cand is None else cand[top_i])
    if not out_s:
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(out_s), torch.cat(out_i)


def _padded(owner: torch.Tensor, cols: torch.Tensor, rows: int) -> torch.Tensor:
    """CSR entries as a ``(rows, max_len)`` matrix padded with ``-1``."""
    counts = torch.bincount(owner, minlength=rows)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    out = torch.full((rows, width), -1, dtype=torch.long)
    slot = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    out[owner, slot] = cols
    return out


@torch.inference_mode()
def ranking_metrics(user_vecs: torch.Tensor, item_vecs: torch.Tensor, users: Any, truth: CSR, seen: CSR | None,
                    ks: Sequence[int] = (10, 20), candidates: Any = None, chunk: int = 512) -> dict[str, float]:
    """Full-ranking metrics (module docstring) of ``users`` against their ``truth`` items.

    Args:
        user_vecs: ``(len(users), d)`` vectors of the users to evaluate.
        item_vecs: ``(N, d)`` of every item.
        users: each user's row in ``truth`` and ``seen``.
        truth: CSR of the held-out items per user.
        seen: CSR of the items to exclude per user (training history).
        ks: cut-offs.
        candidates: rank among these items only (e.g. the cold-start slice); truth outside them is ignored.
        chunk: users per matrix product.

    Returns ``{"recall@K", "ndcg@K", "hr@K", "coverage@K" (each K), "mrr", "users"}``.
    """
    cand, position = _candidates(len(item_vecs), candidates)
    items = item_vecs if cand is None else item_vecs[cand]
    users = _t(users)
    kmax = min(max(ks), len(items))
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr")}
    sums["mrr"], evaluated = 0.0, 0
    covered = {k: torch.zeros(len(items), dtype=torch.bool) for k in ks}
    discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))
    for start in range(0, len(users), chunk):
        rows = users[start:start + chunk]
        owner, cols = _remap(*csr_gather(truth, rows), position)
        rel = _padded(owner, cols, len(rows))  # (B, T) candidate positions, -1 pad
        n_rel = (rel >= 0).sum(1)
        keep = n_rel > 0
        if not bool(keep.any()):
            continue
        scores = masked_scores(user_vecs[start:start + chunk], items, rows, seen, position)[keep]
        rel, n_rel = rel[keep], n_rel[keep].double()
        top = row_topk(scores, kmax)[1]
        hits = ((top[:, :, None] == rel[:, None, :]) & (rel[:, None, :] >= 0)).any(2).double()  # (B, kmax)
        for k in ks:
            kk = min(k, kmax)
            h = hits[:, :kk]
            ideal = torch.cumsum(discount[:kk], 0)[(torch.clamp(n_rel, max=kk) - 1).long()]
            sums[f"recall@{k}"] += float((h.sum(1) / n_rel).sum())
            sums[f"ndcg@{k}"] += float(((h * discount[:kk]).sum(1) / ideal).sum())
            sums[f"hr@{k}"] += float((h.sum(1) > 0).sum())
            covered[k][top[:, :kk].reshape(-1)] = True
        rel_scores = torch.where(rel >= 0, scores.gather(1, rel.clamp(min=0)), torch.tensor(-torch.inf))
        best = rel_scores.max(1).values
        rank = 1 + (scores > best[:, None]).sum(1)
        sums["mrr"] += float((1.0 / rank.double()).sum())
        evaluated += int(keep.sum())
    out = {key: value / evaluated if evaluated else 0.0 for key, value in sums.items()}
    out.update({f"coverage@{k}": float(covered[k].float().mean()) if len(items) else 0.0 for k in ks})
    out["users"] = float(evaluated)
    return out


def list_metrics(top: torch.Tensor, users: Any, truth: CSR, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Recall/NDCG/HR@K of ready-made top lists ``(U, L)`` (``L >= max(ks)``) against ``truth`` (no MRR: lists are cut)."""
    owner, cols = csr_gather(truth, _t(users))
    rel = _padded(owner, cols, len(top))
    n_rel = (rel >= 0).sum(1).double()
    keep = n_rel > 0
    top, rel, n_rel = top[keep], rel[keep], n_rel[keep]
    out: dict[str, float] = {}
    hits = ((top[:, :, None] == rel[:, None, :]) & (rel[:, None, :] >= 0)).any(2).double()
    discount = 1.0 / torch.log2(torch.arange(2, top.shape[1] + 2, dtype=torch.float64))
    for k in ks:
        h = hits[:, :k]
        ideal = torch.cumsum(discount[:k], 0)[(torch.clamp(n_rel, max=h.shape[1]) - 1).long()]
        out[f"recall@{k}"] = float((h.sum(1) / n_rel).mean()) if len(h) else 0.0
        out[f"ndcg@{k}"] = float(((h * discount[:h.shape[1]]).sum(1) / ideal).mean()) if len(h) else 0.0
        out[f"hr@{k}"] = float((h.sum(1) > 0).double().mean()) if len(h) else 0.0
    return out
