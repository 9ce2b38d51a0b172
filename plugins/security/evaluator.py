"""The test split of ``security-anomaly``: scored through its ``VideoScorer``, measured at frame level.

Each test video goes through :class:`~vkit.plugins.security.scorer.AnomalyScorer`
(decode → frozen backbone → MIL head) and :func:`vkit.core.scoring.video_results`,
then ``Store.add_video_results`` — exactly what ``vkit score`` does — so the
rows a training run writes equal those of scoring the same video later.

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
from vkit.plugins.security.annotations import frame_labels
from vkit.plugins.security.data import VideoRecord
from vkit.plugins.security.events import frame_scores
from vkit.plugins.security.features import FeatureExtractor
from vkit.registry.errors import DataError, VkitError


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

    ``datasets`` holds ``test`` (the :class:`VideoRecord` s) and ``extractor``
    (the frozen :class:`FeatureExtractor` the model was trained on).

    Args:
        events: ``dict(threshold=..., min_duration=...)`` for event detection.
    """

    def __init__(self, events: dict[str, Any]) -> None:
        self.events = dict(events)

    def evaluate(self, model: torch.nn.Module, datasets: dict[str, Any], cfg: Any, ctx: Any) -> Evaluation:
        from vkit.core.scoring import video_results
        from vkit.core.store.provenance import sha256_file
        from vkit.core.video import probe
        from vkit.plugins.security.scorer import AnomalyScorer

        scorer = AnomalyScorer.from_model(model, datasets["extractor"], self.events)
        done: list[tuple[VideoRecord, Any, np.ndarray, dict[str, Any], dict[str, Any]]] = []
        failed: list[dict[str, Any]] = []
        for record in datasets["test"]:
            try:
                sha, size = sha256_file(record.path)
                info = probe(record.path)
                segments = scorer.score(torch.as_tensor(scorer.decode(record.path))).numpy()
            except (VkitError, OSError) as err:
                if ctx is None or not ctx.skip_bad:
                    raise DataError(f"{record.path}: {err} (use --skip-bad to record it and go on)") from err
                failed.append(dict(path=_abs(record.path), status="failed", error=str(err)))
                continue
            video = dict(path=_abs(record.path), sha256=sha, size=size, duration=float(info.duration),
                         fps=float(info.fps), frames=int(info.frames), status="ok")
            done.append((record, info, segments, video_results(segments, info, scorer), video))
        if not done:
            raise DataError("test split: no test video could be scored")
        result = frame_metrics([frame_labels(r.intervals, int(i.frames)) for r, i, *_ in done],
                               [frame_scores(seg, int(i.frames)) for _, i, seg, *_ in done])
        if ctx is not None:
            self._write(ctx, done, failed)
        predictions = [dict(item_id=r.name, label=r.label, prediction=float(seg.max()),
                            values=dict(path=r.path, category=r.category, segment_scores=[round(float(x), 5) for x in seg],
                                        events=[[e["start"], e["end"]] for e in rows["events"]]))
                       for r, _, seg, rows, _ in done]
        events = [dict(video=r.name, kind=e["kind"], start_s=round(e["start"], 2), end_s=round(e["end"], 2),
                       score=round(float(e["score"]), 4)) for r, _, _, rows, _ in done for e in rows["events"]]
        if ctx is not None:
            ctx.summary.update({"events": len(events), "test videos": len(done)})
        return Evaluation(metrics={"frame_auc": result["auc"], "frame_ap": result["ap"]}, predictions=predictions,
                          sections=[ReportSection("detected events (test)", table=events)], report=dict(roc=result["roc"]))

    @staticmethod
    def _write(ctx: Any, done: list[tuple], failed: list[dict[str, Any]]) -> None:
        """Video rows, then segment scores + events + a summary per video: the writer ``vkit score`` uses."""
        ids = ctx.store.upsert_videos([video for *_, video in done] + failed)
        ctx.store.add_video_results(ctx.run_id, [
            dict(video_id=ids[video["path"]], status="scored", error=None, **rows) for *_, rows, video in done])


def _abs(path: str) -> str:
    return str(Path(path).resolve())
