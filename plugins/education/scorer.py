"""``EngagementScorer``: the :class:`~vkit.core.scoring.VideoScorer` of ``education-engagement`` for ``vkit score``.

A long lesson recording is cut into ``timeline.segments`` equal segments (set
at training time, stored in the checkpoint sidecar); from each, one clip of the
training clips' length (``num_frames`` frames over ``clip_seconds``) is taken
around its centre (``FrameSampler("segments")``). The model's level probabilities give the expected level;
the segment's score is ``expected level / 3`` in [0, 1] (1 = very high
engagement). Per recording, stretches at or below ``timeline.low_level`` lasting at
least ``timeline.min_seconds`` become ``low-engagement`` events (core's event rule), and the
aggregates ``mean_level``, ``low_share`` (share of the recording below the
level), ``low_stretches`` and ``low_seconds`` are kept with its summary; at the
end of a job, :meth:`EngagementScorer.group_aggregates` gives the same per
session (``.../<session>/<learner>.mp4``) and per learner (salted hash only).

Example::

    scorer = EngagementScorer("work_dirs/education-engagement-run1/model.safetensors")
    clips = scorer.decode("lesson/session01/learner03.mp4")     # (24, 3, 16, 32, 32) float32: RGB differences
    scores = scorer.score(torch.as_tensor(clips))                # (24,) in [0, 1]
    scorer.summarize(scores.numpy(), probe("lesson/session01/learner03.mp4"))["events"]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.sampling import FrameSampler
from vkit.core.scoring import SegmentScorer
from vkit.registry.errors import CheckpointError


class EngagementScorer(SegmentScorer):
    """Sliding clips over a recording → expected engagement level per segment → low-engagement events.

    Args:
        checkpoint: the ``model.safetensors`` written by ``vkit run education-engagement``.
        device: torch device of the model.
        task: the task (its :meth:`~vkit.core.task.Task.rebuild_model` reloads a checkpoint written before
            vkit saved ``model_config``); ``build_scorer`` passes itself.
    """

    supports = frozenset({"compressed"})  # vkit score --compressed (vkit.core.capabilities)
    compressed_module = "model"  # what the run's compression chain compressed

    def __init__(self, checkpoint: str | Path, device: str = "cpu", task: Any = None) -> None:
        from vkit.core.trained import load_trained

        trained = load_trained(checkpoint, task=task, device=device)  # task: rebuilds a sidecar without model_config
        meta = trained.meta
        missing = [k for k in ("model", "sampling", "timeline") if k not in meta]
        if missing:
            raise CheckpointError(f"{checkpoint}: not an education-engagement checkpoint (sidecar lacks {missing})")
        model_cfg = dict(meta["model"])
        if "signals" in model_cfg.get("backbones", {}):
            from vkit.plugins.education.data import side_signal_refusal

            raise CheckpointError(side_signal_refusal(str(checkpoint), f"columns {model_cfg.get('signal_columns')}",
                                                      "vkit score", "recordings carry no per-segment signals"))
        self.model, self.device = trained.model, torch.device(device)
        sampling, timeline = trained.sampling, meta["timeline"]
        self.num_frames, self.size = int(sampling["num_frames"]), (int(sampling["size"]),) * 2
        self.channels = str(sampling.get("channels", "rgb"))
        self.sampler = FrameSampler("segments", int(timeline["segments"]), self.num_frames,
                                    clip_seconds=float(sampling["clip_seconds"]))
        self.min_frames: int = self.num_frames
        self.low_level, self.min_seconds = float(timeline["low_level"]), float(timeline["min_seconds"])
        self.num_levels = int(model_cfg["head"].get("num_classes", 4))
        self.model_sha256: str = trained.sha256

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """Sampled frames ``(S, T, H, W, 3)`` to the training input ``(S, C, T, H, W)`` (RGB and/or frame differences)."""
        from vkit.plugins.education.data import to_model_input

        return np.stack([to_model_input(clip, self.channels).numpy() for clip in frames]).astype(np.float32)

    @torch.inference_mode()
    def levels(self, clips: torch.Tensor) -> torch.Tensor:
        """Level probabilities ``(B, K)`` of clips ``(B, C, T, H, W)`` from :meth:`decode`."""
        from vkit.core.model import _probabilities

        data = self.model.data_preprocessor({"inputs": {"video": clips.to(self.device, torch.float32)}}, False)
        return _probabilities(self.model(data["inputs"])).float().cpu()

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        """Engagement scores ``(B,)`` in [0, 1]: the expected level / (K - 1)."""
        probs = self.levels(clips)
        return probs @ torch.arange(self.num_levels, dtype=probs.dtype) / (self.num_levels - 1)

    def summarize(self, segment_scores: np.ndarray, info: Any) -> dict[str, Any]:
        """``events``: low-engagement stretches in seconds; ``levels``: the expected level per segment;
        ``aggregates``: the recording's mean level, share below ``low_level``, stretches and their seconds."""
        from vkit.plugins.education.timeline import low_stretches

        levels = np.asarray(segment_scores, dtype=np.float64) * (self.num_levels - 1)
        seconds = float(info.duration) / len(levels) if len(levels) else 0.0
        events = low_stretches(levels, seconds, self.low_level, self.min_seconds)
        aggregates = dict(mean_level=round(float(levels.mean()), 4) if len(levels) else None,
                          low_share=round(float((levels <= self.low_level).mean()), 4) if len(levels) else None,
                          low_stretches=len(events), low_seconds=round(sum(e["end"] - e["start"] for e in events), 3))
        return dict(events=events, levels=[round(float(v), 3) for v in levels], aggregates=aggregates)

    @staticmethod
    def may_share_content(path: str, other: str) -> bool:
        """Whether ``path`` may be recorded as a duplicate of the same content scored at ``other``: never when
        either is a pseudonymous link (``pseudo-<hash>``), so no store row ties a link to a learner's name, nor
        one salt's pseudonym to another's; the link is scored again instead.

        Example::

            EngagementScorer.may_share_content("farm/s1/pseudo-3fa2b9c01d7e.mp4", "lessons/s1/ana.mp4")   # False
        """
        from vkit.plugins.education.privacy import is_pseudonymised

        return not (is_pseudonymised(path) or is_pseudonymised(other))

    def group_aggregates(self, videos: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
        """Per ``session`` and per ``learner`` (salted hash) aggregates of scored recordings (their summaries)."""
        from vkit.plugins.education.aggregates import engagement_groups

        return engagement_groups(videos, self.num_levels)
