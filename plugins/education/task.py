"""``vkit run education-engagement``: the engagement level (DAiSEE's 0-3) of learners from webcam clips.

A registered video backbone (default ``TinyC3D``) → optional fusion with per-clip
side signals (``side_signals.csv``: interaction-log features through ``SignalMLP``)
→ ``OrdinalHead`` (cumulative link, ordered thresholds) trained with class weights
against DAiSEE's skew; ``OrdinalMetric`` reports accuracy, macro-F1, QWK, mean
absolute level error and the confusion matrix. ``vkit score`` turns long lesson
recordings into engagement timelines with low-engagement events
(:mod:`vkit.plugins.education.scorer`).

Data: the embedded synthetic set (:mod:`vkit.plugins.education.synthetic`, DAiSEE
layout, generated once into the data cache), a real DAiSEE root, or a plain CSV::

    vkit run education-engagement
    vkit run education-engagement --set data.root=/data/DAiSEE --set data.size=112 \\
        --set model.backbones.video.input_size=[112,112]
    vkit run education-engagement --set data.root=clips.csv                      # path,level[,...,split]
    vkit run education-engagement --set side_signals.csv=side_signals.csv        # fuse the interaction logs
    vkit score education-engagement lessons/ --checkpoint RUN
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from vkit.core.task import DEFAULT_TRAIN, RunContext, Task
from vkit.registry.errors import ConfigError, DataError

LEVEL_NAMES = ("very low", "low", "high", "very high")
FRAMES, SIZE = 16, 32


class EducationEngagementTask(Task):
    """Ordinal engagement level per clip (very low, low, high, very high) and engagement timelines of lessons."""

    name = "education-engagement"
    description = ("Learner engagement (DAiSEE levels 0-3) from webcam clips: ordinal model, QWK/macro-F1, "
                   "lesson timelines with low-engagement events.")
    default_config: dict[str, Any] = dict(
        seed=0,
        data=dict(
            root=None,  # a DAiSEE root or a CSV (path,level[,learner,session,start,split]); None = embedded data
            num_frames=FRAMES,  # frames sampled evenly over each clip
            size=SIZE,  # frames resized to size x size
            # "diff" (frame-to-frame RGB differences: motion), "rgb+diff" or "rgb"; measured with the default
            # TinyC3D, 12 epochs: "diff" val QWK 0.81, "rgb+diff" 0.72 ("rgb", wider net, 10 epochs: 0.16)
            channels="diff",
            imbalance="weights",  # "weights" (class-weighted loss), "oversample" or "none"
            imbalance_power=0.5,  # class weight = (n / (K n_c)) ** power
            synthetic=dict(n_train=480, n_val=120, n_test=200, clips_per_subject=8, size=SIZE, sessions=2,
                           learners=3, lesson_seconds=48),
        ),
        side_signals=dict(
            csv=None,  # a side-signal CSV (ClipID + numeric columns); relative to the data folder; None = video only
            encoder=dict(type="SignalMLP", widths=(16, 16)),
            fusion=dict(type="Concat", dim=32),
        ),
        model=dict(
            # in_channels (3 or 6) and the preprocessor's mean/std follow data.channels (see model_config)
            backbones=dict(video=dict(type="TinyC3D", widths=(8, 16, 32), num_frames=FRAMES, input_size=(SIZE, SIZE),
                                      pool="avgmax")),
            head=dict(type="OrdinalHead", num_classes=4, dropout=0.2),
        ),
        metric=dict(type="OrdinalMetric", num_classes=4, decision="median", level_names=LEVEL_NAMES),
        train=dict(DEFAULT_TRAIN, epochs=12, batch_size=16, lr=3e-3),
        checkpoint=dict(save="best", metric="qwk", rule="greater", keep_epochs=False),
        compression=dict(stages=[], max_metric_drop=0.02, metric="qwk"),
        timeline=dict(segments=24, low_level=1.5, min_seconds=4.0),
    )
    free_keys = ("model", "metric", "compression", "data.synthetic", "side_signals")
    data_key = "data.root"
    smoke_overrides = ("train.epochs=1", "train.batch_size=4", "data.synthetic.n_train=8", "data.synthetic.n_val=4",
                       "data.synthetic.n_test=4", "data.synthetic.clips_per_subject=2", "data.synthetic.sessions=1",
                       "data.synthetic.learners=1", "data.synthetic.lesson_seconds=4", "data.num_frames=8",
                       "data.size=16", "data.synthetic.size=16", "model.backbones.video.widths=(4,8)",
                       "model.backbones.video.num_frames=8", "model.backbones.video.input_size=(16,16)")
    generator_version = "1"
    capabilities = frozenset({"predict", "score"})  # vkit predict clips, vkit score lessons

    def generate_data(self, root: Path, seed: int, **params: Any) -> Path:
        from vkit.plugins.education.synthetic import generate

        return generate(root, seed=seed, **params)

    # ------------------------------------------------------------------ data
    @staticmethod
    def items(data: Path, split: str, skipped: list[dict[str, Any]], skip_bad: bool = False) -> list[Any]:
        """The clips of ``split`` from a DAiSEE root or a CSV."""
        from vkit.plugins.education.data import read_csv, read_daisee

        data = Path(data)
        if data.is_file():
            if data.suffix.lower() != ".csv":
                raise ConfigError(f"data.root: {str(data)!r} is a file but not a CSV (path,level[,learner,session,start,split])")
            return read_csv(data, split, skip_bad=skip_bad, skipped=skipped)
        if (data / "Labels").is_dir():
            return read_daisee(data, split, skip_bad=skip_bad, skipped=skipped)
        raise ConfigError(f"data.root: {str(data)!r} is neither a CSV nor a DAiSEE root (DataSet/ + Labels/)")

    def signals_csv(self, cfg: Any, data: Path) -> Path | None:
        """The side-signal CSV (``side_signals.csv``, relative to the data folder), or ``None``."""
        value = cfg.side_signals.csv
        if not value:
            return None
        path = Path(value)
        if not path.is_absolute():
            path = (data if data.is_dir() else data.parent) / path
        if not path.is_file():
            raise ConfigError(f"side_signals.csv: {str(path)!r} does not exist")
        return path

    def datasets(self, cfg: Any, ctx: RunContext) -> dict[str, Any]:
        from vkit.plugins.education.data import EngagementClips, read_side_signals

        data = Path(ctx.data)
        signals_path = self.signals_csv(cfg, data)
        signals = read_side_signals(signals_path) if signals_path else None
        imbalance = str(cfg.data.imbalance)
        if imbalance not in ("weights", "oversample", "none"):
            raise ConfigError(f"data.imbalance: expected 'weights', 'oversample' or 'none', got {imbalance!r}")
        sets: dict[str, Any] = {}
        stats = None
        for split in ("train", "val", "test"):
            skipped: list[dict[str, Any]] = []
            items = self.items(data, split, skipped, ctx.skip_bad)
            if not items and split == "val":
                continue
            train = split == "train"
            ds = EngagementClips(items, int(cfg.data.num_frames), int(cfg.data.size), signals=signals, signal_stats=stats,
                                 channels=str(cfg.data.channels), augment=train,
                                 oversample=train and imbalance == "oversample", skip_bad=ctx.skip_bad)
            stats = stats or ds.signal_stats
            ctx.record_skipped([dict(s, item_id=f"{split}/{s['item_id']}") for s in skipped + ds.skipped])
            sets[split] = ds
        if not sets.get("test") or len(sets["test"]) == 0:
            raise DataError(f"{data}: no usable test clips")
        ctx.summary["clips"] = {k: len(v.items) for k, v in sets.items()}
        return sets

    # ------------------------------------------------------------------ model
    def model_config(self, cfg: Any, datasets: dict[str, Any] | None) -> dict[str, Any]:
        """``cfg.model`` completed: input channels and normalisation, class weights from the training labels,
        the side-signal branch when used."""
        from vkit.core.ordinal import balanced_class_weights
        from vkit.plugins.education.data import INPUTS, input_norm

        model = copy.deepcopy(cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model))
        channels = str(cfg.data.channels)
        if channels not in INPUTS:
            raise ConfigError(f"data.channels: expected one of {INPUTS}, got {channels!r}")
        mean, std = input_norm(channels)
        video = model["backbones"]["video"]
        video.setdefault("in_channels", len(mean))
        if int(video["in_channels"]) != len(mean):
            raise ConfigError(f"model.backbones.video.in_channels={video['in_channels']} but data.channels={channels!r} "
                              f"gives {len(mean)} channels")
        pre = model.setdefault("data_preprocessor", {})
        pre.setdefault("mean", {}).setdefault("video", list(mean))
        pre.setdefault("std", {}).setdefault("video", list(std))
        head = model["head"]
        num_classes = int(head.get("num_classes", 4))
        train = (datasets or {}).get("train")
        if train is not None and cfg.data.imbalance == "weights" and head.get("type") == "OrdinalHead" \
                and "class_weights" not in head:
            labels = [v for v in train.labels if v is not None and v >= 0]
            head["class_weights"] = balanced_class_weights(labels, num_classes, float(cfg.data.imbalance_power))
        if train is not None and cfg.data.imbalance == "weights" and head.get("type") != "OrdinalHead":
            raise ConfigError(f"data.imbalance='weights' needs model.head.type='OrdinalHead' (got {head.get('type')!r}); "
                              "use data.imbalance='oversample' or 'none' with other heads")
        if train is not None and train.signals is not None:
            sig = copy.deepcopy(dict(cfg.side_signals))
            model["backbones"]["signals"] = dict(sig["encoder"], in_channels=len(train.signal_columns))
            model.setdefault("fusion", sig["fusion"])
            model["signal_columns"] = list(train.signal_columns)
            model["signal_stats"] = [train.signal_stats[0].tolist(), train.signal_stats[1].tolist()]
        return model

    def build_model(self, cfg: Any, datasets: dict[str, Any] | None) -> Any:
        from vkit.core.model import build_model
        from vkit.plugins.education.data import side_signal_refusal

        if datasets is None and cfg.side_signals.csv:  # vkit predict: the branch's width came from the training CSV
            raise ConfigError(side_signal_refusal(f"task {self.name!r}", f"side_signals.csv={cfg.side_signals.csv!r}",
                                                  "vkit predict", "it reads clip files only"))
        model = self.model_config(cfg, datasets)
        model.pop("signal_columns", None)
        model.pop("signal_stats", None)
        return build_model(model)

    def checkpoint_meta(self, cfg: Any, datasets: dict[str, Any]) -> dict[str, Any]:
        """What the scorer needs: the completed model config, sampling, level names (the classes ``vkit predict``
        labels its probabilities with) and timeline settings; the decision rule is core's (the metric's)."""
        model = self.model_config(cfg, datasets)
        seconds = clip_seconds(datasets["train"])  # also vkit watch's default window and hop
        return dict(model=model, sampling=dict(num_frames=int(cfg.data.num_frames), size=int(cfg.data.size),
                                               channels=str(cfg.data.channels), clip_seconds=seconds,
                                               window_seconds=seconds, hop_seconds=seconds),
                    levels=list(cfg.metric.get("level_names") or LEVEL_NAMES), classes=list(cfg.metric.get("level_names") or LEVEL_NAMES),
                    timeline=dict(cfg.timeline))

    def rebuild_model(self, meta: dict[str, Any]) -> Any:
        """The model of a sidecar written before vkit saved ``model_config``: its completed ``model`` entry."""
        from vkit.core.model import build_model

        model = {k: v for k, v in dict(meta["model"]).items() if k not in ("signal_columns", "signal_stats")}
        return build_model(model)

    def prediction_dataset(self, cfg: Any, inputs: list[str]) -> Any:
        """Clip files (each named by its file name without extension, as DAiSEE names clips), or one CSV (``path[,level,...]``)."""
        from vkit.plugins.education.data import ClipItem, EngagementClips, read_csv, side_signal_refusal

        if cfg.side_signals.csv:
            raise ConfigError(side_signal_refusal(f"task {self.name!r}", f"side_signals.csv={cfg.side_signals.csv!r}",
                                                  "vkit predict", "it reads clip files only"))
        if len(inputs) == 1 and Path(inputs[0]).suffix.lower() == ".csv":
            items = read_csv(inputs[0], None, require_level=False)
        else:
            items = [ClipItem(clip_id=Path(p).stem, path=Path(p), level=None) for p in inputs]
        return EngagementClips(items, int(cfg.data.num_frames), int(cfg.data.size), channels=str(cfg.data.channels))

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> Any:
        from vkit.plugins.education.scorer import EngagementScorer

        return EngagementScorer(checkpoint, device, task=self)


def clip_seconds(dataset: Any) -> float:
    """The median duration of the training clips (the time span the model sees in one clip)."""
    import numpy as np

    from vkit.core.video import probe

    durations = []
    for item in dataset.items[:32]:
        try:
            durations.append(float(probe(item.path).duration))
        except DataError:
            continue
    return float(np.median(durations)) if durations else 2.0
