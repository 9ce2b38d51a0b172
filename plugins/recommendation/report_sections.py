"""The recommendation vertical's sections of a training run's report (its ``vkit_report_sections`` hook).

At the top of the page, before the long metrics table:

- **model comparison**: a bar chart of Recall@10 and NDCG@10, overall and on the cold-start slice, of the
  run's model and each model of ``compare.models`` (the test metrics ``recall@10``... and
  ``<model>_recall@10``... the evaluator stores);
- **sample recommendations**: the top :data:`K` for :data:`USERS` test users from the run's own checkpoint
  (reloaded and sha256-verified by :func:`vkit.core.trained.load_trained`), each with its reason (the user's
  history items with the most similar content, as ``vkit recommend`` gives it), whether it is one of the user's
  held-out items and whether it is a cold item;
- **cold-start slice**: how many catalogue items have no training interaction and each model's metrics
  ranking only among them, beside its overall Recall@10.

Example::

    sections = report_sections(dict(run, report_dir="report/"), store)   # None for other tasks' runs
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vkit.core.reporting import ReportSection, plain_text

TASK = "recommendation"
#: The compared metrics (as the evaluator names them), test users sampled, recommendations shown per user.
CHART_METRICS = ("recall@10", "ndcg@10", "cold_recall@10", "cold_ndcg@10")
USERS, K = 4, 5


def report_sections(run: dict[str, Any], store: Any) -> list[ReportSection] | None:
    """Comparison chart, sample recommendations with reasons and the cold-start slice of a recommendation run."""
    if run.get("task") != TASK or run.get("kind") != "train":
        return None
    models = model_metrics(run, store)
    if not models:
        return None
    out = Path(run["report_dir"])
    sections = [ReportSection("Model comparison (test split)", image=plot_comparison(out / "recommendation_models.png",
                                                                                    models), top=True,
                              text=_comparison_text(models))]
    samples, cold = _samples(run, store)
    sections.append(samples)
    sections.append(_cold_slice(models, cold, store, int(run["id"])))
    return sections


def model_metrics(run: dict[str, Any], store: Any) -> dict[str, dict[str, float]]:
    """``{model: {metric: value}}`` of the test split: the run's model (its ``model.type``) first, then the
    comparison models (``<model>_<metric>`` keys)."""
    latest: dict[str, float] = {}
    for row in sorted(store.run_metrics(int(run["id"]), split="test"), key=lambda r: (r["step"], r.get("id", 0))):
        latest[str(row["key"])] = float(row["value"])
    config = run.get("config") or {}
    name = str((config.get("model") or {}).get("type") or "this run")
    named = {str(m.get("type") if isinstance(m, dict) else m).lower(): str(m.get("type") if isinstance(m, dict) else m)
             for m in (config.get("compare") or {}).get("models") or []}  # the evaluator lower-cases the names
    models: dict[str, dict[str, float]] = {f"{name} (this run)": {m: latest[m] for m in CHART_METRICS if m in latest}}
    for key, value in latest.items():
        for metric in sorted(CHART_METRICS, key=len, reverse=True):  # cold_recall@10 before recall@10
            if key.endswith("_" + metric) and key != metric and not key.startswith("cold_"):
                prefix = key[:-len(metric) - 1]
                models.setdefault(named.get(prefix, prefix), {})[metric] = value
                break
    return {k: v for k, v in models.items() if v}


def _comparison_text(models: dict[str, dict[str, float]]) -> str:
    best = max(models, key=lambda m: models[m].get("recall@10", float("-inf")))
    cold = max(models, key=lambda m: models[m].get("cold_recall@10", float("-inf")))
    return (f"{len(models)} models ranked every item for each test user (seen items excluded). Best Recall@10: "
            f"{best} ({models[best].get('recall@10', float('nan')):.3f}); best on the cold-start slice: {cold} "
            f"({models[cold].get('cold_recall@10', float('nan')):.3f}).")


@plain_text()  # model names are drawn as text
def plot_comparison(path: Path, models: dict[str, dict[str, float]]) -> Path:
    """Grouped bars: one group per metric of :data:`CHART_METRICS`, one bar per model (values written on top)."""
    import numpy as np
    from matplotlib.figure import Figure

    names = list(models)
    fig = Figure(figsize=(8.0, 3.4), dpi=100)
    ax = fig.add_axes((0.07, 0.13, 0.68, 0.77))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(CHART_METRICS))
    for i, name in enumerate(names):
        values = [models[name].get(m, float("nan")) for m in CHART_METRICS]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name,
                      edgecolor="black" if i == 0 else None, linewidth=1.2 if i == 0 else 0)
        for bar, value in zip(bars, values):
            if np.isfinite(value):
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value:.2f}", ha="center",
                        va="bottom", fontsize=6)
    ax.set_xticks(x, ["Recall@10", "NDCG@10", "cold Recall@10", "cold NDCG@10"], fontsize=8)
    ax.set_ylabel("test metric (higher is better)", fontsize=8)
    ax.set_title("models on the test split: overall and cold-start slice", fontsize=9, loc="left")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(path)
    return path


def _samples(run: dict[str, Any], store: Any) -> tuple[ReportSection, dict[str, Any] | None]:
    """The sample-recommendations section and what the checkpoint says of cold items (``None`` if unreadable)."""
    title = "Sample recommendations with their reasons"
    rows = [r for r in store.run_predictions(int(run["id"]), split="test") if isinstance(r.get("values"), dict)]
    users = [r for r in sorted(rows, key=lambda r: str(r["item_id"])) if r["values"].get("held_out")][:USERS]
    try:
        from vkit.core.trained import load_trained
        from vkit.plugins.recommendation.serve import service

        recommender = service(load_trained(str(run["id"]), store=store))
    except Exception as err:  # noqa: BLE001 - a moved or edited checkpoint: the page says why, the rest is shown
        return ReportSection(title, text=f"the run's checkpoint could not be loaded ({type(err).__name__}: "
                                         f"{str(err)[:200]})", top=True), None
    counts = recommender.model.item_counts.cpu().numpy()
    cold = {recommender.item_ids[i] for i in range(len(counts)) if counts[i] == 0}
    table = []
    for row in users:
        held = set(row["values"]["held_out"])
        result = recommender.recommend(str(row["item_id"]), k=K)
        for item in result["items"]:
            table.append({"user": result["user"], "rank": item["rank"], "item": item["item_id"],
                          "score": round(float(item["score"]), 3),
                          "because (similar items the user watched)": ", ".join(item["because"]) or "-",
                          "held out (a hit)": "yes" if item["item_id"] in held else "",
                          "cold item": "yes" if item["item_id"] in cold else ""})
    reasons = ("reasons: the user's history items whose content is most similar" if any(
        r["because (similar items the user watched)"] != "-" for r in table) else
        f"{type(recommender.model).__name__} uses no content, so its recommendations carry no reason")
    text = (f"the top {K} for {len(users)} test users from the run's checkpoint ({reasons}); 'held out' marks "
            "the items the user watched in the test split, 'cold' the items without training interactions.")
    return ReportSection(title, table=table or None, text=text, top=True), dict(cold=len(cold), items=len(counts))


def _cold_slice(models: dict[str, dict[str, float]], cold: dict[str, Any] | None, store: Any,
                run_id: int) -> ReportSection:
    users = {str(r["key"]): r["value"] for r in store.run_metrics(run_id, split="test") if r["key"] in ("users", "cold_users")}
    table = [{"model": name, "Recall@10 (all items)": values.get("recall@10", float("nan")),
              "cold Recall@10": values.get("cold_recall@10", float("nan")),
              "cold NDCG@10": values.get("cold_ndcg@10", float("nan"))} for name, values in models.items()]
    share = (f"{cold['cold']} of {cold['items']} catalogue items have no training interaction (cold); "
             if cold else "")
    held = (f"{int(users['cold_users'])} of {int(users.get('users', 0))} test users hold out a cold item; "
            if "cold_users" in users else "")
    return ReportSection("Cold-start slice", table=table, top=True, text=(
        f"{share}{held}the cold metrics rank only the cold items against each user's held-out cold items: "
        "content models can recommend a video nobody has watched yet, id-only models cannot."))


__all__ = ["CHART_METRICS", "K", "USERS", "model_metrics", "plot_comparison", "report_sections"]
