"""The test split of ``security-anomaly``: scored through its ``VideoScorer``, measured at frame level.

Each test video goes through :class:`~vkit.plugins.security.scorer.AnomalyScorer`
(decode → frozen backbone → MIL head) and :func:`vkit.core.scoring.score_videos`,
which writes the rows ``vkit score`` writes — so a training run's rows equal
those of scoring the same video later. The annotated intervals are stored too,
as events of kind ``ground_truth`` (:mod:`vkit.core.ground_truth`), for the report.

Example::

    evaluation = MILEvaluator(events=dict(threshold=0.5, min_duration=0.5)).evaluate(model, sets, cfg, ctx)
    evaluation.metrics     # {"frame_auc": 0.93, "frame_ap": 0.71}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.evaluation import Evaluation, ReportSection, TaskEvaluator
from vkit.core.ground_truth import frame_spans, record_ground_truth
from vkit.plugins.security.annotations import frame_labels
from vkit.core.events import frame_scores
from vkit.registry.errors import DataError


def frame_metrics(labels: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, Any]:
    """Frame-level ROC-AUC and AP over all test frames (sklearn), with the ROC curve.

    Args:
        labels: per video, 0/1 per frame.
        scores: per video, a score per frame.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    y, s = np.concatenate(labels), np.concatenate(scores)
    if y.min() == y.max():
        raise DataError(f"test split: frame labels are all {int(y[0])}; frame-level AUC needs both normal and "
                        "anomalous frames (check the annotation file)")
    fpr, tpr, _ = roc_curve(y, s)
    auc = float(roc_auc_score(y, s))
    return dict(auc=auc, ap=float(average_precision_score(y, s)), roc=(fpr.tolist(), tpr.tolist(), auc),
                frames=int(y.size), anomalous_frames=int(y.sum()))


class MILEvaluator(TaskEvaluator):
    """Scores the test videos with the trained model through the task's scorer; frame AUC/AP, events, score rows.

    ``datasets`` holds ``test`` (the test split's ``VideoRecord`` s) and ``extractor``
    (the frozen ``FrozenEmbedder`` the model was trained on).

    Args:
        events: ``dict(threshold=..., min_duration=...)`` for event detection.
    """

    def __init__(self, events: dict[str, Any]) -> None:
        self.events = dict(events)

    def evaluate(self, model: torch.nn.Module, datasets: dict[str, Any], cfg: Any, ctx: Any) -> Evaluation:
        from vkit.core.scoring import score_videos
        from vkit.plugins.security.scorer import AnomalyScorer

        scorer = AnomalyScorer.from_model(model, datasets["extractor"], self.events)
        records = {str(Path(r.path).resolve()): r for r in datasets["test"]}
        done, _ = score_videos(scorer, list(records), store=ctx.store if ctx else None, run_id=ctx.run_id if ctx else None,
                               skip_bad=bool(ctx and ctx.skip_bad))
        if not done:
            raise DataError("test split: no test video could be scored")
        videos = [(records[v["path"]], v) for v in done]
        if ctx is not None:  # the annotated stretches beside the detected events: the report shades them
            record_ground_truth(ctx.store, ctx.run_id, {v["path"]: frame_spans(r.intervals, v["info"].fps, v["info"].duration)
                                                        for r, v in videos})
        result = frame_metrics([frame_labels(r.intervals, int(v["info"].frames)) for r, v in videos],
                               [frame_scores(v["segments"], int(v["info"].frames)) for _, v in videos])
        predictions = [dict(item_id=r.name, label=r.label, prediction=float(v["segments"].max()),
                            values=dict(path=r.path, category=r.category, events=[[e["start"], e["end"]] for e in v["events"]],
                                        segment_scores=[round(float(x), 5) for x in v["segments"]])) for r, v in videos]
        events = [dict(video=r.name, kind=e["kind"], start_s=round(e["start"], 2), end_s=round(e["end"], 2),
                       score=round(float(e["score"]), 4)) for r, v in videos for e in v["events"]]
        if ctx is not None:
            ctx.summary.update({"events": len(events), "test videos": len(done)})
        return Evaluation(metrics={"frame_auc": result["auc"], "frame_ap": result["ap"]}, predictions=predictions,
                          sections=[ReportSection("detected events (test)", table=events)])
