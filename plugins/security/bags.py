"""The ``security-anomaly`` run: data → cached features → MIL training (mmengine Runner) → frame metrics → store.

Called by :meth:`SecurityAnomalyTask.run`; every step is a small function so
scripts can reuse them (e.g. :func:`extract_features` for another head).

Example::

    metrics = run_anomaly(task, cfg, ctx)      # {"test/frame_auc": 0.9, "test/frame_ap": 0.7}
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.plugins.security.annotations import frame_labels
from vkit.plugins.security.data import AnomalyVideoDataset, VideoRecord
from vkit.plugins.security.events import detect_events, frame_scores
from vkit.plugins.security.features import FeatureExtractor
from vkit.registry.errors import ConfigError, DataError, VkitError

GENERATOR_STAMP = "generator.txt"


@dataclass
class VideoFeatures:
    """One video's segment features with what the metrics and the store need."""

    record: VideoRecord
    features: np.ndarray  # (num_segments, D)
    info: dict[str, Any]  # frames, fps, duration
    sha256: str
    video_id: int | None = None


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


def data_root(task: Any, cfg: Any, ctx: Any) -> Path:
    """The user's ``data.root``, or the embedded data set (generated on first use or with ``ctx.regenerate``)."""
    if cfg.data.root:
        return Path(cfg.data.root)
    root = ctx.data_root / task.name
    params = dict(cfg.data.synthetic)
    stamp = f"seed={int(cfg.seed)} {sorted(params.items())}"
    done = root / GENERATOR_STAMP
    if ctx.regenerate or not done.is_file() or done.read_text() != stamp:
        if root.exists():
            shutil.rmtree(root)
        ctx.echo(f"generating the embedded data set into {root}")
        task.generate_data(root, int(cfg.seed), **params)
        done.write_text(stamp)
    else:
        ctx.echo(f"embedded data set: {root}")
    return root


def extract_features(records: list[VideoRecord], extractor: FeatureExtractor, ctx: Any) -> list[VideoFeatures]:
    """Features of every record (cached), registering each video in the store; bad videos per ``ctx.skip_bad``."""
    from vkit.core.store.provenance import sha256_file

    out, failed = [], []
    for record in records:
        try:
            sha, size = sha256_file(record.path)
            feats, info = extractor(record.path, sha)
        except (VkitError, OSError) as err:
            if not ctx.skip_bad:
                raise DataError(f"{record.path}: {err} (use --skip-bad to record it and go on)") from err
            failed.append(dict(path=str(Path(record.path).resolve()), status="failed", error=str(err)))
            continue
        out.append(VideoFeatures(record, feats, info, sha))
        out[-1].info["size"] = size
    rows = [dict(path=str(Path(v.record.path).resolve()), sha256=v.sha256, size=v.info["size"],
                 duration=v.info["duration"], fps=v.info["fps"], frames=v.info["frames"], status="ok") for v in out]
    ids = ctx.store.upsert_videos(rows + failed) if rows or failed else {}
    for video, row in zip(out, rows):
        video.video_id = ids[row["path"]]
    if failed:
        ctx.summary["skipped videos"] = len(failed)
    return out


@torch.inference_mode()
def segment_scores(model: Any, videos: list[VideoFeatures]) -> list[np.ndarray]:
    """Per-video segment scores ``(S,)`` of the trained model (eval mode)."""
    model.eval()
    return [model(features=torch.as_tensor(v.features)[None], mode="predict")[0].numpy() for v in videos]


def frame_metrics(videos: list[VideoFeatures], scores: list[np.ndarray]) -> dict[str, Any]:
    """Frame-level ROC-AUC and AP over all test frames (sklearn), with the ROC curve."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    labels = np.concatenate([frame_labels(v.record.intervals, v.info["frames"]) for v in videos])
    values = np.concatenate([frame_scores(s, v.info["frames"]) for v, s in zip(videos, scores)])
    if labels.min() == labels.max():
        raise DataError(f"test split: frame labels are all {int(labels[0])}; frame-level AUC needs both normal and "
                        "anomalous frames (check the annotation file)")
    fpr, tpr, _ = roc_curve(labels, values)
    auc = float(roc_auc_score(labels, values))
    return dict(auc=auc, ap=float(average_precision_score(labels, values)), roc=(fpr.tolist(), tpr.tolist(), auc),
                frames=int(labels.size), anomalous_frames=int(labels.sum()))


def _write_results(ctx: Any, videos: list[VideoFeatures], scores: list[np.ndarray], events_cfg: Any) -> list[dict]:
    """Predictions, segment scores and events of the test videos into the store; returns the events (report rows)."""
    predictions, segment_rows, event_rows = [], [], []
    for video, seg in zip(videos, scores):
        duration, n = video.info["duration"], len(seg)
        frames = frame_scores(seg, video.info["frames"])
        events = detect_events(frames, video.info["fps"], float(events_cfg.threshold), float(events_cfg.min_duration))
        predictions.append(dict(item_id=video.record.name, label=video.record.label, prediction=float(seg.max()),
                                values=dict(path=video.record.path, category=video.record.category,
                                            segment_scores=[round(float(s), 5) for s in seg],
                                            events=[[e["start"], e["end"]] for e in events])))
        segment_rows += [dict(video_id=video.video_id, segment=i, start=duration * i / n, end=duration * (i + 1) / n,
                              score=float(s)) for i, s in enumerate(seg)]
        event_rows += [dict(video_id=video.video_id, kind=e["kind"], start=e["start"], end=e["end"], score=e["score"])
                       for e in events]
    ctx.store.add_predictions(ctx.run_id, "test", predictions)
    ctx.store.add_scores(ctx.run_id, segment_rows)
    if event_rows:
        ctx.store.add_events(ctx.run_id, event_rows)
    names = {v.video_id: v.record.name for v in videos}
    return [dict(video=names[e["video_id"]], kind=e["kind"], start_s=round(e["start"], 2), end_s=round(e["end"], 2),
                 score=round(float(e["score"]), 4)) for e in event_rows]


def _save(model: Any, ctx: Any, cfg: Any, extractor: FeatureExtractor, metrics: dict[str, float]) -> Path:
    from vkit.core.checkpoint import save_checkpoint

    path = save_checkpoint(model, ctx.work_dir / "model.safetensors", meta=dict(
        task="security-anomaly", run_id=ctx.run_id, config=cfg.to_dict(), metrics=metrics,
        features=dict(extractor.settings, feature_dim=extractor.feature_dim),
        head=dict(in_channels=extractor.feature_dim, **dict(cfg.head)), loss=dict(cfg.loss),
        events=dict(cfg.events)))
    ctx.store.add_artifact(ctx.run_id, "checkpoint", path)
    ctx.store.add_artifact(ctx.run_id, "checkpoint-meta", path.with_suffix(".json"))
    return path


def run_anomaly(task: Any, cfg: Any, ctx: Any) -> dict[str, float]:
    """Train and evaluate end to end; returns ``{"test/frame_auc", "test/frame_ap"}``."""
    from vkit.core.engine import build_runner
    from vkit.plugins.security.model import MILAnomalyModel

    seed = int(cfg.seed)
    root = data_root(task, cfg, ctx)
    sets = {split: AnomalyVideoDataset(root, split, cfg.data.annotation, cfg.data.train_list, cfg.data.test_list)
            for split in ("train", "test")}
    f = cfg.features
    extractor = FeatureExtractor(dict(f.backbone), int(f.num_segments), int(f.frames_per_segment), tuple(f.size),
                                 cache_dir=Path(f.cache_dir) if f.cache_dir else ctx.data_root / f"{task.name}-features",
                                 seed=seed, batch_size=int(f.batch_size))
    ctx.echo(f"features: {f.backbone.get('type')} ({extractor.cache_dir})")
    videos = {split: extract_features(ds.records, extractor, ctx) for split, ds in sets.items()}
    train = videos["train"]
    anomalous = np.stack([v.features for v in train if v.record.label == 1]) if train else np.empty(0)
    normal = np.stack([v.features for v in train if v.record.label == 0]) if train else np.empty(0)
    torch.manual_seed(seed)
    model = MILAnomalyModel(head=dict(in_channels=extractor.feature_dim, **dict(cfg.head)), **dict(cfg.loss))
    model.head.fit_normalizer(np.concatenate([anomalous, normal]))
    runner = build_runner(model, work_dir=ctx.work_dir, train_set=MILPairs(anomalous, normal, int(cfg.pairs_per_video), seed),
                          train=dict(cfg.train), store=ctx.store, run_id=ctx.run_id, seed=seed, checkpoint=False,
                          echo=ctx.echo)
    runner.train()
    model = runner.model
    test = videos["test"]
    scores = segment_scores(model, test)
    result = frame_metrics(test, scores)
    metrics = {"test/frame_auc": result["auc"], "test/frame_ap": result["ap"]}
    ctx.store.log_metrics(ctx.run_id, {"frame_auc": result["auc"], "frame_ap": result["ap"]},
                          step=int(cfg.train.epochs), split="test")
    detected = _write_results(ctx, test, scores, cfg.events)
    events = len(detected)
    checkpoint = _save(model, ctx, cfg, extractor, metrics)
    ctx.echo(f"test: frame AUC {result['auc']:.4f}  AP {result['ap']:.4f}  events {events} "
             f"({len(test)} videos, {result['frames']} frames)")
    ctx.summary.update({"checkpoint": str(checkpoint), "frame AUC": round(result["auc"], 4),
                        "frame AP": round(result["ap"], 4), "events": events, "data": str(root),
                        "feature cache": str(extractor.cache_dir)})
    ctx.report = dict(roc=result["roc"], tables={"detected events (test)": detected})
    return metrics
