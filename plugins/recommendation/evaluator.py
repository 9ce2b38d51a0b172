"""``RankingEvaluator``: full ranking on the test split, overall and on the cold-start slice, for the run's model
and the comparison models of ``compare.models`` (trained in the same run with :func:`vkit.core.lifecycle.fit`;
``compare.models`` lists names (or MODELS configs), ``compare.settings.<name>`` their settings, whose ``train``
dict overrides keys of the run's ``train`` section for that model, e.g. ``BPRMF=dict(dim=32, train=dict(lr=0.01))``).

Metrics (bare names, stored with split ``test``): the run's model as
``recall@K``, ``ndcg@K``, ``hr@K``, ``coverage@K``, ``mrr`` and the same with
a ``cold_`` prefix on the cold-start slice; each comparison model as
``<model>_recall@10`` etc. (lower-case type name). Test seen items (excluded
from every ranking) are the user's training *and* validation interactions.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from vkit.core.evaluation import Evaluation, ReportSection, TaskEvaluator
from vkit.plugins.recommendation.metric import RankingMetric
from vkit.plugins.recommendation.ranking import ranking_metrics, topk_items
from vkit.registry.errors import ConfigError

TABLE_METRICS = ("recall@10", "ndcg@10", "cold_recall@10", "cold_ndcg@10")


def set_threads(threads: int | None) -> int | None:
    """Set torch's intra-op threads to ``threads`` (``None``: leave them); returns the previous count (or ``None``)."""
    if threads is None:
        return None
    if int(threads) < 1:
        raise ConfigError(f"threads={threads!r}; expected a positive int or None")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    return previous


def comparison_configs(cfg: Any) -> list[dict[str, Any]]:
    """The MODELS configs of ``compare.models`` (a name takes its ``compare.settings`` entry)."""
    import copy

    settings = dict(cfg["compare"].get("settings") or {})
    out = []
    for entry in cfg["compare"]["models"]:
        if isinstance(entry, str):
            out.append(dict(copy.deepcopy(dict(settings.get(entry) or {})), type=entry))
        elif isinstance(entry, dict) and "type" in entry:
            out.append(copy.deepcopy(dict(entry)))
        else:
            raise ConfigError(f"compare.models: {entry!r}; expected a model name (e.g. 'BPRMF') or a dict with 'type'")
    return out


def _seen(split: Any) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each user's training + validation items (what test rankings exclude)."""
    index = np.concatenate([split.train, split.val])
    users, items = split.data.users[index], split.data.items[index]
    order = np.argsort(users, kind="stable")
    counts = np.bincount(users, minlength=split.data.num_users)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), items[order]


@torch.no_grad()
def evaluate_model(model: Any, datasets: dict[str, Any], ks: tuple[int, ...] = (10, 20), chunk: int = 1024) -> dict[str, float]:
    """Overall and cold-start (``cold_`` prefix) full-ranking metrics of ``model`` on the test users."""
    model.eval()
    split, test = datasets["split"], datasets["test"]
    users = torch.as_tensor(test.users)
    uv, iv = model.user_vectors(users), model.item_vectors()
    seen = _seen(split)
    out = ranking_metrics(uv, iv, users, test.truth, seen, ks=ks, chunk=chunk)
    if len(split.cold_items):
        cold = ranking_metrics(uv, iv, users, test.truth, seen, ks=ks, candidates=split.cold_items, chunk=chunk)
        out.update({f"cold_{k}": v for k, v in cold.items()})
    return out


class RankingEvaluator(TaskEvaluator):
    """Validation by :class:`RankingMetric`; test by exact full ranking, with the comparison models trained alongside.

    Args:
        cfg: the run config (``eval.ks``, ``eval.chunk``, ``compare.models``, ``train``, ``checkpoint``).
    """

    def __init__(self, cfg: Any, threads_before: int | None = None) -> None:
        self.cfg = cfg
        self.threads_before = threads_before  # torch threads to rank with (training ran with cfg.threads)
        self.ks = tuple(int(k) for k in cfg["eval"]["ks"])
        self._val = RankingMetric(ks=self.ks)

    def val_metrics(self) -> list[Any]:
        return [self._val]

    def evaluate(self, model: torch.nn.Module, datasets: dict[str, Any], cfg: Any, ctx: Any) -> Evaluation:
        if self.threads_before is not None:  # rank with the process's threads; train comparisons with cfg.threads
            torch.set_num_threads(self.threads_before)
        chunk = int(cfg["eval"]["chunk"])
        main = evaluate_model(model, datasets, self.ks, chunk)
        name = type(model).__name__
        rows = [dict(model=name, role="this run", **{k: round(main.get(k, float("nan")), 4) for k in TABLE_METRICS})]
        metrics = dict(main)
        if ctx is not None:
            for model_cfg in comparison_configs(cfg):
                other, seconds = self._train_other(model_cfg, datasets, cfg, ctx)
                values = evaluate_model(other, datasets, self.ks, chunk)
                label = type(other).__name__
                rows.append(dict(model=label, role="comparison", train_s=round(seconds, 1),
                                 **{k: round(values.get(k, float("nan")), 4) for k in TABLE_METRICS}))
                metrics.update({f"{label.lower()}_{k}": values[k] for k in TABLE_METRICS if k in values})
            ctx.echo(_format(rows))
            ctx.summary["models (test)"] = "; ".join(
                f"{r['model']} R@10 {r['recall@10']:.3f} cold {r.get('cold_recall@10', float('nan')):.3f}" for r in rows)
        return Evaluation(metrics=metrics, predictions=self._rows(model, datasets) if ctx is not None else [],
                          sections=[ReportSection("models on the test split (full ranking; cold = items without "
                                                  "training interactions)", table=rows)])

    def _train_other(self, model_cfg: dict, datasets: dict[str, Any], cfg: Any, ctx: Any) -> tuple[Any, float]:
        from mmengine.runner import set_random_seed

        if cfg.get("seed") is not None:
            set_random_seed(int(cfg["seed"]))
        start = time.perf_counter()
        before = set_threads(cfg.get("threads"))
        try:
            return self._fit_other(model_cfg, datasets, cfg, ctx, start)
        finally:
            if before is not None:
                torch.set_num_threads(before)

    def _fit_other(self, model_cfg: dict, datasets: dict[str, Any], cfg: Any, ctx: Any, start: float) -> tuple[Any, float]:
        from vkit.core.lifecycle import fit
        from vkit.plugins.recommendation.models import build_recommender

        train = dict(cfg["train"], **dict(model_cfg.pop("train", None) or {}))
        model = build_recommender(model_cfg, datasets)
        if getattr(model, "trainable", True):
            name = type(model).__name__
            ctx.echo(f"training comparison model {name}")
            quiet = SimpleNamespace(work_dir=Path(ctx.work_dir) / "compare" / name, store=None, run_id=None,
                                    echo=ctx.echo, summary={})
            metric = RankingMetric(ks=self.ks) if datasets.get("val") is not None else None
            model = fit(model, datasets["train"], datasets.get("val"), dict(cfg, train=train), quiet,
                        val_metrics=[metric] if metric else [],
                        checkpoint=dict(cfg["checkpoint"]) if metric else dict(save="last"))
        return model, time.perf_counter() - start

    @staticmethod
    def _rows(model: Any, datasets: dict[str, Any], k: int = 10) -> list[dict[str, Any]]:
        """One prediction row per test user: its top-k ids and scores, held-out ids, hits (``prediction``)."""
        split, test = datasets["split"], datasets["test"]
        data = split.data
        users = torch.as_tensor(test.users)
        with torch.no_grad():
            scores, top = topk_items(model.user_vectors(users), model.item_vectors(), k, users=users, seen=_seen(split))
        indptr, indices = test.truth
        rows = []
        for u, items, s in zip(test.users.tolist(), top.tolist(), scores.tolist()):
            held = indices[indptr[u]:indptr[u + 1]].tolist()
            rows.append(dict(item_id=data.user_ids[u], label=None, prediction=float(len(set(items) & set(held))),
                             values=dict(items=[data.item_ids[i] for i in items], scores=[round(x, 5) for x in s],
                                         held_out=[data.item_ids[i] for i in held])))
        return rows


def _format(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<11}{'role':<12}{'train s':>8}" + "".join(f"{m:>16}" for m in TABLE_METRICS)
    lines = [head]
    for r in rows:
        lines.append(f"{r['model']:<11}{r['role']:<12}{r.get('train_s', ''):>8}"
                     + "".join(f"{r.get(m, float('nan')):>16.4f}" for m in TABLE_METRICS))
    return "\n".join(lines)
