"""The ``Task`` extension point: what ``vkit run NAME`` runs.

Core owns the run (:func:`vkit.core.lifecycle.run_lifecycle`); a task says only
what differs: its embedded data, its datasets, its model config and its
evaluator, optionally a scorer for ``vkit score`` and report sections. A plugin
declares tasks through the ``vkit_tasks`` hook. A task stays import-light (no
torch at module level) so ``vkit tasks`` is fast.

Example::

    class DemoTask(Task):
        name = "demo-classify"
        description = "Classify tiny synthetic clips."
        default_config = dict(seed=0, data=dict(datalist=None, synthetic=dict(n=32)),
                              model=dict(backbones=dict(rgb=dict(type="TinyC3D")), head=dict(type="ClsHead", num_classes=2)),
                              metric=dict(type="ClassificationMetric"), train=dict(DEFAULT_TRAIN, epochs=1))

        def generate_data(self, root, seed, **params):
            ...  # write files under root, return the datalist path

        def datasets(self, cfg, ctx):
            return dict(train=..., val=..., test=...)   # read from ctx.data
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vkit.registry.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from mmengine.config import Config

    from vkit.core.evaluation import Evaluation, ReportSection, TaskEvaluator
    from vkit.core.trained import Trained


#: The ``train`` section every task's default config starts from.
DEFAULT_TRAIN = dict(
    epochs=5,
    batch_size=8,
    lr=1e-3,
    weight_decay=1e-4,
    optimizer="AdamW",
    scheduler="cosine",  # 'cosine' or None
    num_workers=0,
    log_interval=10,
    launcher="none",  # 'pytorch' under torchrun (gloo on CPU)
    log_level="WARNING",
    # fine-tuning (vkit.core.finetune, docs/pretrained.md)
    freeze=None,  # None | 'backbone' | N: the stem and first N stages of each backbone
    backbone_lr_mult=1.0,  # backbones learn at lr * this (mmengine paramwise_cfg custom_keys)
    paramwise_cfg=None,  # mmengine's paramwise_cfg as is (layer-wise lr_mult / decay_mult)
    warmup_epochs=0,  # linear warm-up epochs before the scheduler
    feature_norm=False,  # standardise the features before the head (BatchNorm without affine, MAE's linear probe)
    # 'linear_probe' (freeze='backbone', feature_norm=True) | 'finetune' (backbone_lr_mult=0.1, warmup_epochs=1,
    # feature_norm=True)
    preset=None,
)

#: The ``checkpoint`` section: which epoch's weights become the run's one ``model.safetensors``. The default
#: is ``save="best"``: the epoch with the best validation ``metric`` (a task starting from this dict declares
#: its metric and ``rule``, e.g. ``dict(DEFAULT_CHECKPOINT, metric="auc")``); what validation fitted (a
#: threshold, ...) comes from that same epoch. A task without a validation split declares ``save="last"``
#: (so does a config with no ``checkpoint`` section). ``keep_epochs`` also writes ``epoch_N`` files.
#: ``rule=None`` follows the direction the metric declares (``mae``: lower is better; ``auc``: higher;
#: undeclared: higher); ``"greater"`` / ``"less"`` override it (:func:`vkit.core.lifecycle.best_rule`).
DEFAULT_CHECKPOINT = dict(save="best", metric=None, rule=None, keep_epochs=False)


class Task:
    """Base class of every task; subclass it and return the subclass from ``vkit_tasks``.

    Attributes:
        name: the name users type (``vkit run NAME``): lowercase words joined by ``-``.
        description: one line shown by ``vkit tasks``.
        default_config: the full default config; user configs and ``--set``
            overrides may only use keys that exist here (except under keys
            listed in ``free_keys``).
        free_keys: top-level keys whose sub-keys are free-form (e.g. ``model``).
        smoke_overrides: ``--set`` strings that shrink a run to one quick
            iteration on tiny data (``["train.epochs=1", "data.n_train=8"]``);
            ``vkit plugins check`` and :func:`vkit.testing.run_task_smoke` apply
            them. Every key must exist in ``default_config``.
        data_key: the config key ``vkit run TASK --data PATH`` sets (the user's own data);
            when it is empty the embedded data set is used.
        synthetic_key: the config section handed to :meth:`generate_data` as keyword arguments.
        generator_version: bump it when :meth:`generate_data` writes something
            different: the cached embedded data set is then regenerated.
        plugin: filled in by the plugin manager with the declaring plugin's name.
        capabilities: what the task supports beyond training (:data:`vkit.core.capabilities.TASK_CAPABILITIES`), each backed by the
            method it names; checked when the plugin loads (a declared capability whose method is not
            implemented is a plugin error) and used instead of probing the task at run time.

    A task must implement :meth:`datasets`; everything else has a default.

    Example::

        class DemoTask(Task):
            capabilities = frozenset({"predict", "skip_bad", "score"})   # prediction_dataset(skip_bad=), build_scorer
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_config: ClassVar[dict[str, Any]] = {}
    free_keys: ClassVar[tuple[str, ...]] = ()
    data_key: ClassVar[str] = "data.datalist"
    smoke_overrides: ClassVar[tuple[str, ...] | list[str]] = ()
    synthetic_key: ClassVar[str] = "data.synthetic"
    generator_version: ClassVar[str] = "1"
    plugin: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def generate_data(self, root: Path, seed: int, **params: Any) -> Path | None:
        """Write the embedded data set into the empty folder ``root``; return its index file (or ``None``: no data).

        ``params`` is the config's ``synthetic_key`` section. Core caches the result.
        """
        return None

    def datasets(self, cfg: Config, ctx: RunContext) -> dict[str, Any]:
        """``{"train": ..., "val": ... (optional), "test": ...}`` read from ``ctx.data`` (the user's or embedded data)."""
        raise ConfigError(f"task {self.name!r} (plugin {self.plugin!r}) does not implement datasets()")

    def build_model(self, cfg: Config, datasets: dict[str, Any] | None) -> torch.nn.Module:
        """The model to train (``datasets`` is ``None`` when rebuilding from a checkpoint); default: ``cfg.model``."""
        from vkit.core.model import build_model

        return build_model(cfg["model"])

    def evaluator(self, cfg: Config) -> TaskEvaluator:
        """What evaluates the test split; default: :class:`~vkit.core.lifecycle.MetricEvaluator` over ``cfg.metric``."""
        from vkit.core.evaluation import MetricEvaluator

        return MetricEvaluator(dict(cfg["metric"]), batch_size=int(cfg["train"]["batch_size"]))

    def checkpoint_meta(self, cfg: Config, datasets: dict[str, Any]) -> dict[str, Any]:
        """Extra JSON for the checkpoint's sidecar (e.g. ``classes``); what a scorer needs to rebuild the model."""
        return {}

    def report_sections(self, cfg: Config, evaluation: Evaluation) -> list[ReportSection]:
        """Extra sections for the run report (tables, PNGs, text)."""
        return []

    def prediction_dataset(self, cfg: Config, inputs: list[str], skip_bad: bool = False) -> Any:
        """The dataset ``vkit predict`` runs the model on: ``inputs`` are files or one datalist.

        With ``skip_bad`` unreadable inputs are left out and listed in the dataset's ``skipped``
        (``[{"path", "reason"}]``) instead of raising.
        """
        raise ConfigError(f"task {self.name!r} (plugin {self.plugin!r}) does not support `vkit predict`")

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> Any:
        """A :class:`vkit.core.scoring.VideoScorer` for ``vkit score``; tasks that score videos override it
        (and declare ``"score"``), reloading the model with :func:`vkit.core.trained.load_trained`."""
        raise ConfigError(f"task {self.name!r} (plugin {self.plugin!r}) does not score videos (no build_scorer())")

    def recommender(self, trained: Trained) -> Any:
        """The serving side of a trained run for ``vkit recommend`` (capability ``"recommend"``): an object with
        ``recommend_many(users, k)``, built around ``trained.model`` and its sidecar ``trained.meta``."""
        raise ConfigError(f"task {self.name!r} (plugin {self.plugin!r}) does not recommend (no recommender())")

    def rebuild_model(self, meta: dict[str, Any]) -> torch.nn.Module:
        """The untrained model of a checkpoint whose sidecar records no ``model_config`` (written before vkit
        saved it): :func:`vkit.core.trained.load_trained` calls it, then loads the weights. Default: the
        task's own :meth:`build_model` on the sidecar's ``config``."""
        from mmengine.config import Config

        from vkit.registry.errors import CheckpointError

        if not isinstance(meta.get("config"), dict):
            raise CheckpointError(f"task {self.name!r}: the checkpoint sidecar has neither 'model_config' nor "
                                  f"'config'; it was not written by `vkit run`")
        return self.build_model(Config(meta["config"]), None)


class RunContext:
    """What ``vkit run`` hands a task: the store row, folders and switches of this run.

    Args:
        store: the open :class:`vkit.core.store.Store`.
        run_id: this run's row id in the store.
        work_dir: folder for checkpoints, logs and the report of this run.
        data_root: cache folder where embedded data sets are generated.
        regenerate: remake the embedded data set even if cached.
        skip_bad: record unreadable inputs in the store and go on.
        echo: prints a progress line for the user (``print`` by default).

    Attributes set during the run: ``data`` (where the data is: the user's or
    the embedded set's index), ``summary`` (figures shown at the end),
    ``report`` (plot inputs and sections for the report).

    ``video_engine`` is the seam through which a task scores (or embeds) many
    videos: ``engine(scorer, paths) -> outcomes`` (see :meth:`score_videos`).
    ``None`` scores them in this process
    (:func:`vkit.core.scoring.score_in_process`); ``vkit run`` installs the engine
    of ``vkit score`` (inventory, resume by sha256, failures recorded, local or
    Ray; :func:`vkit.workflows.scoring.video_engine.engine_score_videos`).
    """

    def __init__(
        self,
        store: Any,
        run_id: int,
        work_dir: Path,
        data_root: Path,
        *,
        regenerate: bool = False,
        skip_bad: bool = False,
        echo: Any = print,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.work_dir = Path(work_dir)
        self.data_root = Path(data_root)
        self.regenerate = regenerate
        self.skip_bad = skip_bad
        self.echo = echo
        self.data: Path | None = None
        #: Filled in by the task: paths and figures the summary shows.
        self.summary: dict[str, Any] = {}
        #: Filled in by the task: ``sections``, the extra report sections (:class:`vkit.core.reporting.ReportSection`)
        #: the run report shows after what it draws from the store (ROC, confusion, compression rows).
        self.report: dict[str, Any] = {}
        #: ``engine(scorer, paths) -> outcomes``; ``None``: :func:`vkit.core.scoring.score_in_process`.
        self.video_engine: Any = None
        #: Set by :func:`vkit.core.lifecycle.fit`: the epoch whose weights (and fitted values) the checkpoint holds.
        self.checkpoint_epoch: int | None = None
        #: ``True``: go on from the resume state in ``work_dir`` (``vkit run --resume``); ``False``: train from the
        #: start, writing that state after every epoch (:mod:`vkit.core.resume`).
        self.resume = False
        #: What ``vkit run`` checked before it opened the run row (:func:`vkit.core.weights.check.check_weights`);
        #: ``None``: the lifecycle checks the weights itself.
        self.checked_weights: Any = None

    def score_videos(self, scorer: Any, paths: list[str]) -> list[dict[str, Any]]:
        """Score (or embed) ``paths`` with a :class:`~vkit.core.scoring.VideoScorer`: one outcome per path, in order.

        Each outcome is ``dict(path, status='scored'|'failed', sha256, segments, error)``
        (``segments``: ``(num_segments,)`` scores, or ``(num_segments, D)`` vectors of an
        embedding scorer; ``None`` when failed). A bad video never raises: it is a
        ``failed`` outcome with its reason.

        Example::

            embedder = FrozenEmbedder(dict(type="ClipStats"), FrameSampler("dense", 1, 16))
            outcomes = ctx.score_videos(embedder, ["a.mp4", "b.mp4"])
        """
        if self.video_engine is not None:
            return list(self.video_engine(scorer, list(paths)))
        from vkit.core.scoring import score_in_process

        return score_in_process(scorer, list(paths), store=self.store, run_id=self.run_id)

    def record_skipped(self, rows: list[dict[str, Any]]) -> None:
        """Record unusable inputs (``item_id``, ``path``, ``reason``) as predictions of split ``skipped``; echo each.

        Example::

            ctx.record_skipped([dict(item_id="train/case_3", path="/d/case_3.nii.gz", reason="truncated gzip")])
        """
        if not rows:
            return
        self.store.add_predictions(self.run_id, "skipped", [
            dict(item_id=str(r["item_id"]), label=None, prediction=None,
                 values=dict(path=str(r.get("path", "")), reason=str(r.get("reason", "")))) for r in rows])
        self.summary["skipped"] = self.summary.get("skipped", 0) + len(rows)
        for r in rows:
            self.echo(f"skipped {r.get('path') or r['item_id']}: {r.get('reason', '')}")
