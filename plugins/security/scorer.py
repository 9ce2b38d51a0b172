"""``AnomalyScorer``: the :class:`~vkit.core.scoring.VideoScorer` of ``security-anomaly`` for ``vkit score``.

Rebuilt from a training checkpoint (safetensors + JSON sidecar): the sidecar
names the backbone config and sampling used for training, so scoring decodes
the same 32 segments (consecutive frames centred in each), computes the same
frozen backbone features and the head's score per segment, and summarises
each video as events in seconds (the training run's ``events`` thresholds).

Example::

    scorer = AnomalyScorer("work_dirs/security-anomaly-run1/model.safetensors")
    clips = scorer.decode("cam1.mp4")                 # (32, 3, 6, 64, 64) float32
    scores = scorer.score(torch.as_tensor(clips))     # (32,) in [0, 1]
    scorer.summarize(scores.numpy(), probe("cam1.mp4"))["events"]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.plugins.security.events import detect_events, frame_scores
from vkit.plugins.security.features import FeatureExtractor, feature_extractor, sample_clips
from vkit.registry.errors import CheckpointError


class AnomalyScorer:
    """Decode → backbone features → MIL head score per segment → events per video.

    Args:
        checkpoint: the ``model.safetensors`` written by ``vkit run security-anomaly``.
        device: torch device for the backbone and head.
        task: the task (its :meth:`~vkit.core.task.Task.rebuild_model` reloads a checkpoint written before
            vkit saved ``model_config``); ``build_scorer`` passes itself.

    :meth:`from_model` builds one around a model in memory (the run's test split
    is scored this way, so its rows equal what ``vkit score`` writes).
    """

    def __init__(self, checkpoint: str | Path, device: str = "cpu", task: Any = None) -> None:
        from vkit.core.trained import load_trained

        trained = load_trained(checkpoint, task=task)  # task: rebuilds a sidecar without model_config
        meta = trained.meta
        missing = [k for k in ("features", "events") if k not in meta]
        if missing:
            raise CheckpointError(f"{checkpoint}: not a security-anomaly checkpoint (sidecar lacks {missing})")
        self._setup(trained.model, feature_extractor(meta["features"]), meta["events"], trained.sha256, device)

    @classmethod
    def from_model(cls, model: torch.nn.Module, extractor: FeatureExtractor, events: dict[str, Any],
                   model_sha256: str = "in-memory", device: str = "cpu") -> AnomalyScorer:
        """A scorer around a trained model in memory (no checkpoint file)."""
        scorer = cls.__new__(cls)
        scorer._setup(model, extractor, events, model_sha256, device)
        return scorer

    def _setup(self, model: torch.nn.Module, extractor: FeatureExtractor, events: dict[str, Any], model_sha256: str,
               device: str) -> None:
        self.model, self.extractor = model, extractor
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.extractor.net.to(self.device)
        self.model_sha256: str = model_sha256
        self.num_segments: int = extractor.num_segments
        self.min_frames: int = 2
        self.events = dict(events)

    def decode(self, path: str) -> np.ndarray:
        """Clips ``(num_segments, 3, T, H, W)`` float32 in 0..255; raises ``DataError`` on a bad file."""
        clips, _ = sample_clips(path, self.num_segments, self.extractor.frames_per_segment, self.extractor.size)
        return clips

    @torch.inference_mode()
    def score(self, clips: torch.Tensor) -> torch.Tensor:
        """Anomaly scores ``(B,)`` in [0, 1] of clips ``(B, 3, T, H, W)`` (segments of any videos)."""
        net = self.extractor.net
        x = clips.to(self.device, torch.float32)
        feats = net.infer(net.normalize(x))
        return self.model(features=feats, mode="predict").float().cpu()

    def summarize(self, segment_scores: np.ndarray, info: Any) -> dict[str, Any]:
        """Events in seconds (runs of frames over the threshold, at least ``min_duration`` long)."""
        frames = frame_scores(segment_scores, int(info.frames))
        events = detect_events(frames, float(info.fps), float(self.events["threshold"]),
                               float(self.events["min_duration"]))
        return dict(events=[dict(kind=e["kind"], start=e["start"], end=e["end"], score=e["score"]) for e in events])
