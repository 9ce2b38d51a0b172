"""``vkit run security-anomaly``: weakly supervised video anomaly detection (Sultani et al., CVPR 2018).

Each video is cut into 32 segments; a frozen registered backbone turns each
segment into a feature vector (cached on disk by video sha256 and a hash of
the feature settings); a small scoring head (FC feature_dim→512→32→1 with
dropout, sigmoid) is trained from *video-level* labels only with the MIL
ranking loss (hinge between the top anomalous and top normal segment, plus
sparsity and temporal smoothness on the anomalous bag, λ1 = λ2 = 8e-5) through
mmengine's Runner. Segment scores map back to frames; the test split is
evaluated with frame-level ROC-AUC and AP, and events (runs of frames over
``events.threshold`` lasting ``events.min_duration`` seconds or more, runs apart by at
most ``events.merge_gap`` seconds merged) go to
the store's events table with start/end times.

Data: the embedded synthetic data set (see
:mod:`vkit.plugins.security.synthetic`: 100 real H.264 surveillance-like
clips, 64x64, 10 fps, 6 s, with ``Running``, ``Falling`` and ``Intrusion``
events, 60 train / 40 test), generated once into the data cache, or your own
UCF-Crime-style folder with ``--set data.root=/data/UCF_Crimes`` (see
:mod:`vkit.plugins.security.data`). Default features: ``MotionStats``, a
parameter-free frame-difference backbone (see
:mod:`vkit.plugins.security.motion` for exactly what it computes); select any
registered backbone with ``features.backbone``, e.g.
``--set features.backbone.type=X3D`` (random initialisation unless you give
``pretrained=`` a local safetensors file: random features do not separate
motion anomalies).

Examples::

    vkit run security-anomaly
    vkit run security-anomaly --set data.root=/data/UCF_Crimes --set features.size=[112,112] \\
        --set "features.backbone={'type':'X3D','setting':'s','pretrained':'x3d_s.safetensors'}"
    vkit score security-anomaly /archive --checkpoint 1     # run 1, or its work_dirs/.../model.safetensors
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vkit.core.task import DEFAULT_TRAIN, Task
from vkit.registry.errors import CheckpointError, ConfigError

#: The ``train`` section: :data:`vkit.core.task.DEFAULT_TRAIN` with what MIL training changes.
TRAIN = dict(DEFAULT_TRAIN, epochs=20, batch_size=16, optimizer="Adam", scheduler=None)


class SecurityAnomalyTask(Task):
    """Weakly supervised anomaly detection in surveillance video: MIL ranking on segment features."""

    name = "security-anomaly"
    description = ("Detect anomalous events in surveillance video (MIL ranking, Sultani et al.): "
                   "frame ROC-AUC/AP, events in the store.")
    default_config: dict[str, Any] = dict(
        seed=0,
        data=dict(
            root=None,  # a UCF-Crime-style folder; None = the embedded synthetic data set
            annotation=None,  # default: root/Temporal_Anomaly_Annotation*.txt
            train_list=None,  # default: root/Anomaly_Train.txt if present
            test_list=None,  # default: root/Anomaly_Test.txt if present
            synthetic=dict(num_normal=50, num_anomalous=50, test_fraction=0.4),
        ),
        features=dict(
            backbone=dict(type="MotionStats"),
            num_segments=32,
            frames_per_segment=6,
            size=(64, 64),
            cache_dir=None,  # default: <data cache>/security-anomaly-features
            batch_size=64,
        ),
        head=dict(hidden=(512, 32), dropout=0.6),
        loss=dict(lambda_sparsity=8e-5, lambda_smooth=8e-5),
        pairs_per_video=8,  # each epoch pairs every anomalous training video with this many normal ones
        train=TRAIN,
        checkpoint=dict(save="last", metric=None, rule="greater", keep_epochs=False),  # no validation split: last
        # a segment scoring >= threshold counts; runs apart by <= merge_gap seconds are one event; shorter than
        # min_duration seconds are dropped (vkit.core.events)
        events=dict(threshold=0.5, min_duration=0.5, merge_gap=0.0),
    )
    free_keys = ("features.backbone", "data.synthetic")
    data_key = "data.root"

    smoke_overrides = ("train.epochs=1", "data.synthetic.num_normal=4", "data.synthetic.num_anomalous=4",
                       "data.synthetic.test_fraction=0.5", "features.num_segments=8", "features.frames_per_segment=2",
                       "features.size=(32,32)", "head.hidden=(16,)", "pairs_per_video=2", "train.batch_size=4")
    generator_version = "1"
    capabilities = frozenset({"score"})  # vkit score an archive

    def generate_data(self, root: Path, seed: int, **params: Any) -> Path:
        """Write the embedded data set under ``root``; returns its annotation file."""
        from vkit.plugins.security.synthetic import generate

        return generate(root, seed=seed, **params)

    def datasets(self, cfg: Any, ctx: Any) -> dict[str, Any]:
        """``train``: MIL pairs of cached segment features; ``test``: the test videos (scored by the evaluator)."""
        import numpy as np

        from vkit.plugins.security.bags import MILPairs, extract_features
        from vkit.plugins.security.data import AnomalyVideoDataset

        from vkit.core.events import event_settings

        event_settings(cfg.events, "events")  # a bad events.* setting fails before any feature is extracted
        root = ctx.data if ctx.data.is_dir() else ctx.data.parent
        sets = {split: AnomalyVideoDataset(root, split, cfg.data.annotation, cfg.data.train_list, cfg.data.test_list)
                for split in ("train", "test")}
        extractor = self._extractor(cfg, ctx)
        ctx.echo(f"features: {cfg.features.backbone.get('type')} ({extractor.cache_dir})")
        ctx.summary["feature cache"] = str(extractor.cache_dir)
        train = extract_features(sets["train"].records, extractor, ctx)
        bags = {label: np.stack([v.features for v in train if v.record.label == label]) if any(
            v.record.label == label for v in train) else np.empty((0,)) for label in (0, 1)}
        return dict(train=MILPairs(bags[1], bags[0], int(cfg.pairs_per_video), int(cfg.seed)),
                    test=sets["test"].records, extractor=extractor,
                    window=training_window([v.info for v in train], int(cfg.features.num_segments),
                                           int(cfg.features.frames_per_segment)))

    @staticmethod
    def _extractor(cfg: Any, ctx: Any) -> Any:
        from vkit.plugins.security.features import feature_embedder

        f = cfg.features
        cache = Path(f.cache_dir) if f.cache_dir else ctx.data_root / "security-anomaly-features"
        return feature_embedder(dict(f.backbone), int(f.num_segments), int(f.frames_per_segment), tuple(f.size),
                                cache_dir=cache, seed=int(cfg.seed), batch_size=int(f.batch_size))

    def build_model(self, cfg: Any, datasets: dict[str, Any] | None) -> Any:
        """The MIL scoring head for the extractor's features, its standardisation fitted on the training bags."""
        import torch

        from vkit.core.model import build_model

        if datasets is None:
            raise ConfigError("security-anomaly: reload a trained model with vkit.core.trained.load_trained(checkpoint) "
                              "(its sidecar has the architecture and the feature settings)")
        pairs = datasets["train"]
        model = build_model(dict(type="MILAnomalyModel", head=dict(in_channels=datasets["extractor"].feature_dim,
                                                                   **dict(cfg.head)), **dict(cfg.loss)))
        model.head.fit_normalizer(torch.cat([pairs.anomalous, pairs.normal]))
        return model

    def rebuild_model(self, meta: dict[str, Any]) -> Any:
        """The MIL head of a sidecar written before vkit saved ``model_config`` (its ``head`` and ``loss`` entries)."""
        from vkit.plugins.security.model import MILAnomalyModel

        missing = [k for k in ("features", "head", "events") if k not in meta]
        if missing:
            raise CheckpointError(f"not a security-anomaly checkpoint (sidecar lacks {missing})")
        return MILAnomalyModel(head=dict(meta["head"]), **meta.get("loss", {}))

    def evaluator(self, cfg: Any) -> Any:
        from vkit.plugins.security.evaluator import MILEvaluator

        return MILEvaluator(dict(cfg.events))

    def checkpoint_meta(self, cfg: Any, datasets: dict[str, Any]) -> dict[str, Any]:
        """What :class:`~vkit.plugins.security.scorer.AnomalyScorer` needs to rebuild the extractor and the head."""
        extractor = datasets["extractor"]
        meta = dict(features=dict(extractor.settings, feature_dim=extractor.feature_dim),
                    head=dict(in_channels=extractor.feature_dim, **dict(cfg.head)), loss=dict(cfg.loss),
                    events=dict(cfg.events))
        if datasets.get("window"):  # vkit watch's default windows: what one training segment covered
            meta["sampling"] = dict(datasets["window"])
        return meta

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> Any:
        from vkit.plugins.security.scorer import AnomalyScorer

        return AnomalyScorer(checkpoint, device, task=self)


def training_window(infos: list[dict[str, Any]], num_segments: int, frames_per_segment: int) -> dict[str, float] | None:
    """``vkit watch``'s default windows for this run (saved as the sidecar's ``sampling``): ``hop_seconds``, the
    median span of one training segment (a video's duration / ``num_segments``), and ``window_seconds``, the median
    of that span or the ``frames_per_segment`` consecutive frames a segment's clip reads, whichever is longer (a
    shorter window would repeat frames the training clips never repeated). ``None`` when no training video has a
    duration and a frame rate (then ``vkit watch`` asks for ``--window``).

    Example: 6 s videos at 10 fps, 32 segments of 6 frames -> ``window_seconds=0.6, hop_seconds=0.1875``.
    """
    import numpy as np

    usable = [i for i in infos if float(i.get("duration") or 0) > 0 and float(i.get("fps") or 0) > 0]
    if not usable or num_segments < 1:
        return None
    spans = np.array([float(i["duration"]) / num_segments for i in usable])
    clips = np.array([frames_per_segment / float(i["fps"]) for i in usable])
    return dict(window_seconds=float(np.median(np.maximum(spans, clips))), hop_seconds=float(np.median(spans)))
