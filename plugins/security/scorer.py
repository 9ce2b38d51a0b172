"""``AnomalyScorer``: the :class:`~vkit.core.scoring.VideoScorer` of ``security-anomaly`` for ``vkit score``.

Rebuilt from a training checkpoint (safetensors + JSON sidecar): the sidecar
names the frozen embedder used for training (backbone config and sampler), so
scoring decodes the same 32 segments (consecutive frames centred in each),
computes the same features and the head's score per segment; events are the
core rule (:func:`vkit.core.events.events`) with the run's ``events`` settings.

Example::

    scorer = AnomalyScorer("work_dirs/security-anomaly-run1/model.safetensors")
    clips = scorer.decode("cam1.mp4")                 # (32, 3, 6, 64, 64) float32
    scores = scorer.score(torch.as_tensor(clips))     # (32,) in [0, 1]
    scorer.summarize(scores.numpy(), probe("cam1.mp4"))["events"]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vkit.core.embedding import FrozenEmbedder
from vkit.core.events import event_settings
from vkit.core.scoring import SegmentScorer
from vkit.plugins.security.features import feature_extractor
from vkit.registry.errors import CheckpointError


class AnomalyScorer(SegmentScorer):
    """Frozen backbone features → MIL head score per segment (decoding and events are core's).

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
    def from_model(cls, model: torch.nn.Module, extractor: FrozenEmbedder, events: dict[str, Any],
                   model_sha256: str = "in-memory", device: str = "cpu") -> AnomalyScorer:
        """A scorer around a trained model in memory (no checkpoint file)."""
        scorer = cls.__new__(cls)
        scorer._setup(model, extractor, events, model_sha256, device)
        return scorer

    def _setup(self, model: torch.nn.Module, extractor: FrozenEmbedder, events: dict[str, Any], model_sha256: str,
               device: str) -> None:
        self.model, self.extractor = model, extractor.to(device)
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.model_sha256: str = model_sha256
        self.sampler, self.size, self.min_frames = extractor.sampler, extractor.size, 2
        self.event_rule = dict(event_settings(events, "events"), kind="anomaly")  # merge_gap 0 in older checkpoints

    @torch.inference_mode()
    def score(self, clips: torch.Tensor) -> torch.Tensor:
        """Anomaly scores ``(B,)`` in [0, 1] of clips ``(B, 3, T, H, W)`` (segments of any videos)."""
        feats = self.extractor.score(clips).to(self.device)
        return self.model(features=feats, mode="predict").float().cpu()
