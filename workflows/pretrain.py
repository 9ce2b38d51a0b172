"""``vkit pretrain BACKBONE ARCHIVE...``: self-supervised pretraining of a registered backbone on unlabelled files.

Steps (one run of kind ``pretrain`` in the store, ``vkit runs show ID``):

1. config: the backbone is built, the objective checked against it
   (``mae`` needs a ViT-type backbone) and the archive listed before
   anything is recorded — a bad ``--set`` or name is an error that names the key;
2. decode, through the scoring engine: :func:`~vkit.workflows.scoring.inventory.inventory`
   lists the files, :func:`~vkit.workflows.scoring.engine.prepare_video` hashes,
   probes and decodes each (``DataLoader`` workers, or a Ray Data actor pool
   with ``--engine ray``) and the worker writes its clips into the run's clip
   cache (``<work_dir>/clips/<sha256>.npy``). Every file is recorded in the
   ``videos`` table and as a per-run summary (``scored`` = decoded and used,
   ``failed`` with its reason): a bad file never stops the run;
3. train (:class:`~vkit.core.ssl.train.Pretrainer`): the loss and its terms are
   metrics of split ``train`` per epoch (the loss curve); the resume state is
   rewritten after each epoch;
4. the backbone's weights: ``<work_dir>/backbone.safetensors`` + JSON sidecar
   (backbone config, objective, loss curve), recorded as the run's
   ``checkpoint`` / ``checkpoint-meta`` artifacts with their sha256, usable as
   ``pretrained='run:ID'`` (:mod:`vkit.core.weights.run_ref`).

``--resume RUN`` goes on with an interrupted pretraining run: files it decoded
are hashed again and, unchanged, not decoded again (the scoring engine's skip
by sha256); training continues after the last finished epoch.

Example::

    summary = pretrain(dict(type="TinyC3D"), ["/data/unlabelled"], PretrainOptions(epochs=20))
    summary.run_id, summary.sha256        # use as pretrained='run:<run_id>'
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from vkit.registry.errors import ConfigError, DataError, StoreError

TASK = "pretrain"
KIND = "pretrain"
WEIGHTS = "backbone.safetensors"
META_FORMAT = "vkit-pretrained-backbone/1"


@dataclass
class PretrainOptions:
    """How ``vkit pretrain`` trains and decodes (stored as the run's config).

    Args:
        objective: ``auto``, ``vicreg`` or ``mae`` (:mod:`vkit.core.ssl.objectives`).
        epochs, batch_size, lr, weight_decay, warmup_epochs: the training schedule (AdamW, cosine decay).
        segments: clips decoded per video (two views of a video come from two of them).
        frame_interval: step between a clip's frames.
        seed: seeds the backbone's initialisation, the views and the order.
        device: torch device.
        engine: ``local`` (DataLoader workers) or ``ray`` (a Ray Data actor pool) for decoding.
        workers: decoding processes or actors.
        ray_address: Ray cluster to join (``None``: a local one).
        objective_args: arguments of the objective (``mask_ratio``, ``expander`` ...).
        augment: arguments of the augmentation (``flip``, ``area`` ...; :mod:`vkit.core.ssl.augment`).
        for_task: pretrain for this task's input (``--for-task``): its video backbone, input mode (frame
            differences for ``education-engagement``), frames, size, sampling and normalisation, or its volume
            backbone with each scan read by the task's loading pipeline (``medical-diagnosis``: orientation, the
            intensity window; :func:`vkit.core.ssl.inputs.task_input`); ``None``: RGB clips, the backbone's own
            normalisation (a volume backbone: z-scored scans).
        task_overrides: the task's config keys (``--set task.data.size=16``) read with ``for_task``.
    """

    objective: str = "auto"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    segments: int = 4
    frame_interval: int = 1
    seed: int = 0
    device: str = "cpu"
    engine: str = "local"
    workers: int = 2
    ray_address: str | None = None
    objective_args: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    for_task: str | None = None
    task_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 2), ("segments", 1), ("frame_interval", 1),
                          ("warmup_epochs", 0), ("workers", 0), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"pretrain: {name}={value!r}; expected an int >= {low}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10:
                raise ConfigError(f"pretrain: {name}={value!r}; expected a number 0 <= value < 10")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"pretrain: engine={self.engine!r}; expected 'local' or 'ray'")


@dataclass
class PretrainSummary:
    """What a pretraining run did (printed by the CLI, ``--json`` for scripts)."""

    run_id: int
    db_url: str
    backbone: str
    objective: str
    work_dir: str
    files: int = 0
    decoded: int = 0
    reused: int = 0  # decoded by this run before a resume, unchanged: not decoded again
    failed: int = 0
    epochs: int = 0
    loss_curve: list[float] = field(default_factory=list)
    seconds: float = 0.0
    weights: str | None = None
    sha256: str | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    modality: str = "video"  # the input the backbone reads: where a model config puts it (model.backbones.<modality>)
    input: str = "rgb"  # the input mode it was pretrained on (vkit.core.ssl.inputs): 'rgb', 'diff' ...
    task: str | None = None  # --for-task


# ----------------------------------------------------------------------------- config
def split_sets(overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``--set`` pairs by section: ``backbone.``, ``objective.``, ``augment.`` or ``task.`` (a dotted key of the
    ``--for-task`` task's config); anything else is a ConfigError."""
    sections: dict[str, dict[str, Any]] = dict(backbone={}, objective={}, augment={}, task={})
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in sections or not rest or ("." in rest and head != "task"):
            raise ConfigError(f"--set {key}: expected backbone.ARG, objective.ARG, augment.ARG or task.KEY "
                              "(e.g. backbone.widths=[8,16,32], objective.mask_ratio=0.9, augment.flip=0, "
                              "task.data.size=16 with --for-task)")
        sections[head][rest] = value
    return sections


def _build(backbone_cfg: dict[str, Any], options: PretrainOptions) -> tuple[Any, Any, Any, str]:
    """``(backbone, objective, augment, objective name)`` from the config, seeded; nothing is read yet."""
    from mmengine.runner import set_random_seed

    from vkit.core.ssl.augment import build_augment
    from vkit.core.ssl.objectives import build_objective, resolve_objective
    from vkit.registry.registries import BACKBONES

    set_random_seed(options.seed)
    try:
        backbone = BACKBONES.build(dict(backbone_cfg))
    except (TypeError, ValueError) as err:  # a --set backbone.ARG value the backbone cannot take (widths=x)
        args = {k: v for k, v in backbone_cfg.items() if k != "type"}
        raise ConfigError(f"backbone: cannot build {backbone_cfg.get('type')} from --set backbone.ARG values "
                          f"{args!r}: {type(err).__name__}: {err}") from err
    name = resolve_objective(options.objective, backbone)
    objective = build_objective(name, backbone, **options.objective_args)
    size = (backbone.num_frames, *backbone.input_size) if backbone.modality == "volume" else backbone.input_size
    try:
        augment = build_augment(backbone.modality, size, **options.augment)
    except TypeError as err:
        raise ConfigError(f"augment: {err}") from err
    return backbone, objective, augment, name


def _decoder(backbone: Any, options: PretrainOptions, spec: Any) -> Any:
    from vkit.core.ssl.decode import ClipDecoder, TaskClipDecoder, TaskVolumeDecoder, VolumeDecoder, crop_room
    from vkit.core.ssl.inputs import VOLUME

    if spec is not None and spec.mode == VOLUME:  # the task's pipeline: its orientation and intensity window
        from vkit.plugins.medical.data import build_transforms

        return TaskVolumeDecoder(crop_room((backbone.num_frames, *backbone.input_size)), backbone.in_channels,
                                 spec.transforms or {}, build_transforms)
    if backbone.modality == "volume":
        return VolumeDecoder(crop_room((backbone.num_frames, *backbone.input_size)), backbone.in_channels)
    if spec is not None and spec.sampling == "uniform":  # the task's sampling: its step between frames
        return TaskClipDecoder(options.segments, spec.num_frames, crop_room(spec.size))
    return ClipDecoder(options.segments, backbone.num_frames, crop_room(backbone.input_size), options.frame_interval)


# ----------------------------------------------------------------------------- the run
def pretrain(backbone_cfg: dict[str, Any] | None, archives: Sequence[str], options: PretrainOptions | None = None, *,
             db_url: str | None = None, plugins: Sequence[str] = (), work_dir: str | Path | None = None,
             resume: int | None = None, given: dict[str, Any] | None = None,
             echo: Callable[[str], None] = lambda _line: None) -> PretrainSummary:
    """Pretrain ``backbone_cfg`` (a BACKBONES config) on the files of ``archives``; see the module docstring.

    With ``resume``, ``backbone_cfg``, ``archives`` and ``options`` come from that run (given ones must match;
    ``given``: the options a user named, ``{field: value}``, each must equal the run's).
    """
    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.scoring.inventory import VIDEO_SUFFIXES, inventory

    manager = get_plugin_manager(extra=tuple(plugins))
    manager.register_components()
    store = open_store(db_url)
    if resume is not None:
        backbone_cfg, archives, options, work_dir = _resumed(store, resume, backbone_cfg, archives, options, given)
    options = options or PretrainOptions()
    spec = None
    if options.for_task:
        backbone_cfg = _task_backbone(options, backbone_cfg, plugins)
    if not backbone_cfg:
        raise ConfigError("pretrain: no BACKBONE given: `vkit pretrain BACKBONE ARCHIVE...` (e.g. TinyC3D; "
                          "`vkit components backbones` lists them), `vkit pretrain --for-task TASK ARCHIVE...`, "
                          "or `vkit pretrain --resume RUN`")
    if "type" not in backbone_cfg:
        raise ConfigError(f"pretrain: backbone: expected a BACKBONES name or config with 'type', got {backbone_cfg!r}")
    if not archives:
        raise ConfigError("pretrain: no ARCHIVE given (folders, files or globs of unlabelled videos or scans)")
    from vkit.core.weights.check import check_backbone_keys

    check_backbone_keys("backbone", backbone_cfg)  # an unknown type or --set backbone.KEY: did-you-mean, accepted keys
    backbone, objective, augment, name = _build(backbone_cfg, options)
    from vkit.core.ssl.inputs import VOLUME, ZSCORE, rgb_input

    if options.for_task:
        spec = task_input(options.for_task, options.task_overrides, plugins)[0]
    elif backbone.modality == "video":
        spec = rgb_input(backbone)
    from vkit.core.ssl.decode import VOLUME_SUFFIXES

    found = inventory(list(archives), VOLUME_SUFFIXES if backbone.modality == "volume" else VIDEO_SUFFIXES)
    if not found.files:
        raise DataError(f"pretrain: no {'scan' if backbone.modality == 'volume' else 'video'} files in "
                        f"{', '.join(map(str, archives))}" + (f" ({len(found.failures)} unreadable folders: "
                                                               f"{found.failures[0][0]}: {found.failures[0][1]})"
                                                               if found.failures else ""))
    if spec is not None and spec.mode == VOLUME:
        from vkit.plugins.medical.data import choose_intensity  # the volume task's (the only one: medical)

        spec.resolve_intensity(found.files, choose_intensity)  # intensity.mode='auto': from the scans, as the task does
    decoder = _decoder(backbone, options, spec)
    config = dict(backbone=dict(backbone_cfg), archives=[os.path.abspath(os.path.expanduser(a)) for a in archives],
                  options=asdict(options), objective=name, decoder=decoder.settings, augment=augment.settings(),
                  backbone_info=backbone.describe(), input=spec.record() if spec else None)
    from vkit.core.processes import sigterm_interrupts

    # `kill PID` stops it like Ctrl-C: the run is recorded interrupted with its resume hint at once
    with sigterm_interrupts(), store.track_run(TASK, "vkit", config, options.seed, resume=resume, kind=KIND) as run_id:
        folder = _work_dir(store, run_id, work_dir, resume is not None)
        summary = PretrainSummary(run_id=run_id, db_url=store.url, backbone=str(backbone_cfg["type"]), objective=name,
                                  work_dir=str(folder), files=len(found.files), modality=str(backbone.modality),
                                  input=spec.mode if spec else ZSCORE if backbone.modality == "volume"
                                  else str(backbone.modality), task=options.for_task)
        for path, why in found.failures:
            summary.failed += 1
            summary.failures.append(dict(path=path, error=why))
        began = time.perf_counter()
        from vkit.workflows.pretrain_decode import decode_archive

        shas = decode_archive(store, run_id, found.files, decoder, folder / "clips", options, summary, echo)
        echo(f"run {run_id}: {summary.decoded} decoded, {summary.reused} reused, {summary.failed} failed")
        _train(store, run_id, folder, backbone, objective, augment, options, shas, summary, resume is not None, echo,
               prepare=spec.prepare if spec and spec.mode != VOLUME else None)  # a task's scans: as decoded
        _save(store, run_id, folder, backbone, backbone_cfg, name, options, summary, spec)
        summary.seconds = time.perf_counter() - began
    return summary


def task_input(task_name: str, overrides: Mapping[str, Any] | Sequence[str] = (),
               plugins: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """``(input spec, backbone config)`` of ``--for-task TASK`` (:func:`vkit.core.ssl.inputs.task_input`): the task
    found among the plugins, its default config with ``overrides`` (``--set task.KEY=V`` pairs, e.g.
    ``{'data.size': 16}``) built as ``vkit run`` builds it.

    Example::

        spec, backbone_cfg = task_input("education-engagement", {"data.size": 16})   # spec.mode == 'diff'

    Raises:
        ConfigError: an unknown task or key, or a task with neither a video nor a volume backbone.
    """
    from vkit.core.ssl import inputs
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.config import build_config

    manager = get_plugin_manager(extra=tuple(plugins))
    task_cls = manager.get_task(task_name)
    manager.register_components(require=task_cls.plugin)
    cfg = build_config(task_cls.default_config, None, dict(overrides) if isinstance(overrides, Mapping)
                       else list(overrides), free_keys=task_cls.free_keys)
    return inputs.task_input(task_name, task_cls(), cfg)


def _task_backbone(options: PretrainOptions, given: dict[str, Any] | None, plugins: Sequence[str]) -> dict[str, Any]:
    """The ``--for-task`` task's video (or volume) backbone config with ``--set backbone.ARG`` values on top (a
    BACKBONE of another type than the task's is refused: its weights would not load into the task)."""
    from vkit.core.ssl.inputs import VIDEO_KEY, VOLUME, VOLUME_KEY

    spec, task_cfg = task_input(options.for_task, options.task_overrides, plugins)
    key = VOLUME_KEY if spec.mode == VOLUME else VIDEO_KEY
    given = dict(given or {})
    if given.get("type") not in (None, task_cfg["type"]):
        raise ConfigError(f"pretrain: BACKBONE {given['type']!r} with --for-task {options.for_task}: the task's "
                          f"{key} is {task_cfg['type']!r} (change it with --set task.{key}.type=..., or leave "
                          "BACKBONE out)")
    return dict(task_cfg, **given)


def _resumed(store: Any, run_id: int, backbone_cfg: dict[str, Any] | None, archives: Sequence[str],
             options: PretrainOptions | None,
             given: dict[str, Any] | None) -> tuple[dict[str, Any], list[str], PretrainOptions, str]:
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"--resume {run_id}: no run {run_id} in the store at {store.url}")
    if run["kind"] != KIND:
        raise StoreError(f"--resume {run_id}: run {run_id} is a {run['kind']} run of task {run['task']!r}, "
                         f"not a pretraining run (`vkit run {run['task']} --resume {run_id}` resumes training runs)")
    saved = run["config"]
    if backbone_cfg and dict(backbone_cfg) != saved["backbone"]:
        raise ConfigError(f"--resume {run_id}: backbone {backbone_cfg!r} differs from the run's {saved['backbone']!r}; "
                          "leave BACKBONE and ARCHIVE out to resume it as it was")
    if archives and [os.path.abspath(os.path.expanduser(a)) for a in archives] != saved["archives"]:
        raise ConfigError(f"--resume {run_id}: archives differ from the run's {saved['archives']!r}")
    if options is not None and asdict(options) != saved["options"]:
        raise ConfigError(f"--resume {run_id}: options cannot change on resume (the run's: {saved['options']!r})")
    for name, value in (given or {}).items():
        if saved["options"].get(name) != value:
            raise ConfigError(f"--resume {run_id}: --{name.replace('_', '-')} {value} differs from the run's "
                              f"{saved['options'].get(name)!r}; a resumed run keeps its options")
    return dict(saved["backbone"]), list(saved["archives"]), PretrainOptions(**saved["options"]), run["work_dir"]


def _work_dir(store: Any, run_id: int, work_dir: str | Path | None, resuming: bool) -> Path:
    from vkit.core.workdir import check_work_dir_free, mark_work_dir, new_work_dir, ownership

    if resuming:
        folder = Path(str(work_dir))
        why = ownership(folder, store.identity, run_id)
        if why:
            raise ConfigError(f"--resume {run_id}: its work dir {folder} is not usable ({why})")
        return folder
    folder = check_work_dir_free(work_dir) if work_dir else new_work_dir(Path("work_dirs"), TASK, run_id, store.identity)
    mark_work_dir(folder, store.identity, run_id, TASK)
    store.set_work_dir(run_id, folder)
    return folder


def _train(store: Any, run_id: int, folder: Path, backbone: Any, objective: Any, augment: Any,
           options: PretrainOptions, shas: list[str], summary: PretrainSummary, resuming: bool,
           echo: Callable[[str], None], prepare: Any = None) -> None:
    from vkit.core.ssl.train import ClipCache, Pretrainer

    if len(shas) < 2:
        first = f"; first failure: {summary.failures[0]['path']}: {summary.failures[0]['error']}" if summary.failures else ""
        raise DataError(f"pretrain: {len(shas)} file(s) decoded of {summary.files}; at least 2 are needed{first}")
    cache = ClipCache(folder / "clips")
    videos = [cache.get(sha) for sha in shas]
    steps = max(1, len(videos) // min(options.batch_size, len(videos)))
    trainer = Pretrainer(objective, augment, backbone, epochs=options.epochs, batch_size=options.batch_size,
                         lr=options.lr, steps_per_epoch=steps, weight_decay=options.weight_decay,
                         warmup_epochs=options.warmup_epochs, device=options.device, prepare=prepare)
    state = folder / "resume" / "state.safetensors"
    if resuming and state.is_file():
        trainer.load_state(state)
        echo(f"run {run_id}: resuming after epoch {trainer.epoch}")
    summary.loss_curve = [r["value"] for r in store.run_metrics(run_id, "train") if r["key"] == "loss"
                          and r["step"] <= trainer.epoch]
    while trainer.epoch < options.epochs:
        began = time.perf_counter()
        metrics = trainer.train_epoch(videos)
        metrics["seconds"] = time.perf_counter() - began
        store.log_metrics(run_id, metrics, step=trainer.epoch, split="train")
        trainer.save_state(state)
        summary.loss_curve.append(metrics["loss"])
        echo(f"epoch {trainer.epoch}/{options.epochs}: loss {metrics['loss']:.4f} ({metrics['seconds']:.1f} s)")
    summary.epochs = trainer.epoch


def _save(store: Any, run_id: int, folder: Path, backbone: Any, backbone_cfg: dict[str, Any], objective: str,
          options: PretrainOptions, summary: PretrainSummary, spec: Any = None) -> None:
    import shutil

    from vkit.core.checkpoint import save_checkpoint

    meta = dict(kind=META_FORMAT, run_id=run_id, store=store.identity, backbone=dict(backbone_cfg),
                backbone_info=backbone.describe(), objective=objective, epochs=summary.epochs,
                loss_curve=summary.loss_curve, videos=summary.decoded + summary.reused, failed=summary.failed,
                options=asdict(options), input=spec.record() if spec else None)
    path = save_checkpoint(backbone, folder / WEIGHTS, meta=meta)
    weights = store.add_artifact(run_id, "checkpoint", path)
    store.add_artifact(run_id, "checkpoint-meta", path.with_suffix(".json"))
    summary.weights, summary.sha256 = str(path), weights["sha256"]
    shutil.rmtree(folder / "resume", ignore_errors=True)


# ----------------------------------------------------------------------------- CLI
@click.command("pretrain")
@click.argument("backbone", required=False)
@click.argument("archives", nargs=-1)
@click.option("--objective", type=click.Choice(("auto", "vicreg", "mae")), default="auto", show_default=True,
              help="auto: vicreg (measured best on the generated data, docs/pretrain.md); mae: TimeSformer only.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(2), help="Videos per step.")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(0, 10, max_open=True))
@click.option("--segments", default=4, show_default=True, type=click.IntRange(1), help="Clips decoded per video.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
@click.option("--for-task", "for_task", metavar="TASK", default=None,
              help="Pretrain for TASK's input: its video backbone, input mode (education-engagement: frame "
                   "differences), frames, size and normalisation, read from its config (tasks with a "
                   "model.backbones.video), or its volume backbone with each scan read by the task's pipeline "
                   "(medical-diagnosis: orientation, intensity window); BACKBONE may be left out (if given, it "
                   "must be the task's backbone).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="backbone.ARG, objective.ARG, augment.ARG, or task.KEY with --for-task, e.g. "
                   "backbone.widths=[8,16,32], task.data.size=16.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--engine", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="Decoding engine (as vkit score): DataLoader workers or a Ray Data actor pool.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0), help="Decoding processes (Ray: actors).")
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to join (default: start a local one).")
@click.option("--work-dir", type=click.Path(file_okay=False), help="Folder for the clip cache and the weights.")
@click.option("--resume", type=click.IntRange(1), metavar="RUN", help="Continue interrupted pretraining run RUN.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def pretrain_cmd(ctx: click.Context, backbone: str | None, archives: tuple[str, ...], objective: str, epochs: int,
                 batch_size: int, lr: float, segments: int, seed: int, for_task: str | None,
                 overrides: tuple[str, ...], device: str,
                 engine: str, workers: int, ray_address: str | None, work_dir: str | None, resume: int | None,
                 as_json: bool) -> None:
    """Pretrain BACKBONE (a registered name) self-supervised on the unlabelled videos (or scans) in ARCHIVES.

    Stores a run of kind pretrain with its loss curve; its weights load anywhere as pretrained='run:ID'.
    With --for-task TASK (`vkit pretrain --for-task education-engagement ARCHIVES...`) the backbone and its input
    (frame differences, frames, size, normalisation) are the task's, and the run only loads into a config that
    feeds the same input.
    """
    from vkit.workflows.config import parse_overrides

    obj = ctx.find_root().obj or {}
    sets = split_sets(parse_overrides(overrides))
    if sets["task"] and not for_task:
        raise ConfigError(f"--set task.{next(iter(sets['task']))}: task keys need --for-task TASK")
    if for_task and backbone and _names_backbone(backbone):  # BACKBONE given too: it must be the task's (checked)
        backbone_cfg = dict(type=backbone, **sets["backbone"])
    elif for_task:  # the backbone is the task's: every positional argument is an archive
        archives = ((backbone,) if backbone else ()) + tuple(archives)
        backbone_cfg = dict(sets["backbone"]) or None
    else:
        backbone_cfg = dict(type=backbone, **sets["backbone"]) if backbone else None
    options = PretrainOptions(objective=objective, epochs=epochs, batch_size=batch_size, lr=lr, segments=segments,
                              seed=seed, device=device, engine=engine, workers=workers, ray_address=ray_address,
                              objective_args=sets["objective"], augment=sets["augment"], for_task=for_task,
                              task_overrides=sets["task"])
    given = {name: getattr(options, name) for name in ("objective", "epochs", "batch_size", "lr", "segments", "seed",
                                                       "device", "engine", "workers", "ray_address", "for_task")
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}
    if resume is not None and not (backbone or archives or overrides):
        options = None  # the run's own; options named with --resume must equal the run's
    echo = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    summary = pretrain(backbone_cfg, archives, options, db_url=obj.get("db_url"), plugins=obj.get("plugins", ()),
                       work_dir=work_dir, resume=resume, given=given, echo=echo)
    if as_json:
        click.echo(json.dumps(asdict(summary), indent=2, default=str))
        return
    _print_summary(summary)


def _names_backbone(arg: str) -> bool:
    """Whether the first argument of ``vkit pretrain --for-task TASK ARG ...`` is a registered backbone name (then it
    is a BACKBONE, checked against the task's) rather than an archive (an existing path wins)."""
    if os.path.exists(arg) or any(c in arg for c in "/\\*?[."):
        return False
    from vkit.registry.registries import BACKBONES

    try:
        return BACKBONES.get(arg) is not None
    except Exception:  # noqa: BLE001 - a name the registry cannot look up: an archive
        return False


def _print_summary(summary: PretrainSummary) -> None:
    from vkit.core.console import console, print_table

    curve = summary.loss_curve
    rows = [["backbone", summary.backbone], ["objective", summary.objective], ["files", summary.files],
            ["input", summary.input + (f" (the input of task {summary.task})" if summary.task else "")],
            ["decoded", summary.decoded], ["reused (decoded before a resume)", summary.reused],
            ["failed", summary.failed], ["epochs", summary.epochs],
            ["loss first -> last", f"{curve[0]:.4f} -> {curve[-1]:.4f}" if curve else "-"],
            ["time", f"{summary.seconds:.1f} s"], ["weights", summary.weights], ["sha256", summary.sha256],
            ["run id", summary.run_id], ["database", summary.db_url]]
    print_table(f"pretrain: run {summary.run_id}", ["", "value"], rows)
    if summary.failures:
        print_table("failed files", ["path", "reason"], [[f["path"], f["error"]] for f in summary.failures[:20]])
    if summary.task:
        console().print(f"use it: vkit run {summary.task} --set model.backbones.{summary.modality}.pretrained="
                        f"run:{summary.run_id} "
                        "(the same task settings)")
        return
    console().print(f"use it: --set model.backbones.{summary.modality}.pretrained=run:{summary.run_id} "
                    "(the same backbone arguments)")


__all__ = ["PretrainOptions", "PretrainSummary", "pretrain", "pretrain_cmd", "split_sets"]
