"""``vkit explain TASK --checkpoint RUN FILE...``: what drove a trained model's score, as maps over the files.

For each file (a scan, a DICOM series folder, a clip, a video; or one datalist)
it writes into ``--out`` (default ``./explain``) an overlay PNG and a JSON
summary (method, explained class, score, peak, per-frame saliency, segments)
and prints a table (``--json``: the summaries). Methods (:mod:`vkit.core.explain`):

``gradcam``
    ``monai.visualize.GradCAM`` on the backbone's last convolutional block that
    keeps a 7 x 7 map (``--target-layer`` names another); the task's default
    when it predicts files (``predict`` capability: medical, education).
``occlusion``
    ``monai.visualize.OcclusionSensitivity``: how much the score drops when each
    place is hidden.
``temporal``
    hide one segment at a time (``--segments``, ``--occlude drop|blur``) and
    measure the score drop: of the clip's frames for a model that sees one
    clip, of the video's segments for a task that scores videos (``score``
    capability; security-anomaly's default).

The checkpoint is a run id (weights and sidecar verified against the sha256
the store recorded) or a ``model.safetensors`` path (verified against its
sidecar), loaded by :func:`vkit.core.trained.load_trained`; files are checked
to be regular files (or folders, a DICOM series) before they are opened.
Settings may also come from the run's config (an ``explain`` section, if the
task has one) and from ``--config FILE`` (YAML/JSON data only: ``method``,
``target_layer``, ``target``, ``segments``, ``occlude``, ``mask_size``); the
command line wins.

Example::

    results = explain_files("medical-diagnosis", "3", ["case_7.nii.gz"], out_dir="explain")
    results[0]["summary"]["peak"]     # {'frame': 14, 'y': 9, 'x': 20, 'value': 1.0}
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from vkit.registry.errors import ConfigError, DataError, did_you_mean

#: The methods ``--method`` takes (see the module docstring).
METHODS = ("gradcam", "occlusion", "temporal")
#: The keys an ``explain`` settings section (``--config`` or the run's config) may hold.
SETTINGS = ("method", "target_layer", "target", "segments", "occlude", "mask_size")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_method(task: Any) -> str:
    """``gradcam`` for a task that predicts files, ``temporal`` for one that only scores videos."""
    capabilities = getattr(task, "capabilities", frozenset())
    if "predict" in capabilities:
        return "gradcam"
    if "score" in capabilities:
        return "temporal"
    raise ConfigError(f"task {task.name!r} cannot be explained: it neither predicts files (`predict`) nor scores "
                      f"videos (`score`); its capabilities are {sorted(capabilities) or 'none'}")


def explain_settings(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings of ``sources`` merged left to right (``None`` values do not override); unknown keys are
    a :class:`ConfigError` with a did-you-mean."""
    merged: dict[str, Any] = {}
    for source in sources:
        for key, value in dict(source or {}).items():
            if key not in SETTINGS:
                raise ConfigError(f"explain.{key}: unknown key{did_you_mean(str(key), SETTINGS)}; expected {SETTINGS}")
            if value is not None:
                merged[key] = value
    if merged.get("method") is not None and merged["method"] not in METHODS:
        raise ConfigError(f"explain.method={merged['method']!r}{did_you_mean(str(merged['method']), METHODS)}; "
                          f"expected one of {METHODS}")
    return merged


def _config_settings(config_file: str | Path | None) -> dict[str, Any]:
    """The ``explain`` section (or the whole mapping) of a YAML/JSON ``--config`` file; a ``.py`` file is refused."""
    if config_file is None:
        return {}
    from vkit.workflows.config import DATA_SUFFIXES, load_data_config

    if not str(config_file).lower().endswith(DATA_SUFFIXES):
        raise ConfigError(f"--config {config_file}: vkit explain reads YAML or JSON settings only ({DATA_SUFFIXES})")
    data = load_data_config(config_file)
    section = data.get("explain", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"--config {config_file}: expected a mapping of explain settings {SETTINGS}")
    return section


class Explainer:
    """One trained model's explanations of files, by one method: what ``vkit explain`` and the report share.

    Args:
        task: the task instance; ``trained``: its :class:`~vkit.core.trained.Trained`.
        settings: :func:`explain_settings` (``method`` defaults to :func:`default_method`).
    """

    def __init__(self, task: Any, trained: Any, settings: Mapping[str, Any] | None = None) -> None:
        self.task, self.trained = task, trained
        self.settings = dict(settings or {})
        self.method = str(self.settings.get("method") or default_method(task))
        capabilities = getattr(task, "capabilities", frozenset())
        self.scorer = None
        self._layers: dict[tuple[Any, ...], str] = {}
        if "predict" not in capabilities:
            if self.method != "temporal" or "score" not in capabilities:
                raise ConfigError(f"task {task.name!r} explains with --method temporal only: it scores whole videos "
                                  f"(no per-file model input for {self.method!r}); "
                                  f"run `vkit explain {task.name} --method temporal ...`")
            self.scorer = task.build_scorer(trained.files.weights)

    def explain(self, path: str | Path, out_dir: Path, stem: str) -> list[dict[str, Any]]:
        """Explain ``path`` (every item the task reads from it); write ``<stem>-<method>.png/.json`` into ``out_dir``.

        Returns:
            one ``dict(file, case, png, json, summary)`` per item.
        """
        _check_file(path)
        from vkit.core.files import make_folder

        make_folder(out_dir, "--out")  # a FIFO, device or file where the folder goes is a one-line error
        if self.scorer is not None:
            return [self._scored(Path(path), out_dir, stem)]
        dataset = self.task.prediction_dataset(self.trained.config, [str(path)])
        if len(dataset) == 0:
            raise DataError(f"{path}: the task read no item from it")
        results = []
        for i in range(len(dataset)):
            item = dataset[i]
            name = stem if len(dataset) == 1 else f"{stem}-{safe_stem(str(item.get('case_id', i)))}"
            results.append(self._item(item, Path(str(item.get("path") or path)), out_dir, name))
        return results

    def _item(self, item: Mapping[str, Any], path: Path, out_dir: Path, stem: str) -> dict[str, Any]:
        from vkit.core.explain import model_inputs
        from vkit.core.explain.overlay import display_frames, draw_spatial, draw_temporal, segment_thumbnails

        found = self._compute(model_inputs(self.trained.model, item["inputs"]))
        base = display_frames(item["inputs"][found.modality], path, found.modality)
        png, title = out_dir / f"{stem}-{self.method}.png", _title(path, found)
        if found.heat is not None:
            draw_spatial(png, base, found, title, volume=found.modality == "volume")
        else:
            draw_temporal(png, segment_thumbnails(base, [(r["start"], r["end"]) for r in found.segments]), found, title)
        return self._write(path, str(item.get("case_id") or path.stem), png, found)

    def _compute(self, inputs: Mapping[str, Any]) -> Any:
        """The :class:`~vkit.core.explain.Explanation` of one item's normalised inputs by :attr:`method`."""
        from vkit.core.explain import clip_saliency, grad_cam, occlusion

        model, s = self.trained.model, self.settings
        target = s.get("target")
        if target is None and self.trained.decision.rule in ("threshold", "ordinal"):
            target = self._decided(inputs)  # the class vkit predict prints, not the most probable one
        common = dict(target=target, classes=self.trained.classes)
        if self.method == "gradcam":  # the layer found for the first item serves the next (same model, same input size)
            shapes = tuple(tuple(inputs[m].shape) for m in sorted(inputs))
            found = grad_cam(model, inputs, target_layer=s.get("target_layer") or self._layers.get(shapes), **common)
            self._layers[shapes] = found.layer
            return found
        if self.method == "occlusion":
            return occlusion(model, inputs, mask_size=s.get("mask_size"), **common)
        return clip_saliency(model, inputs, segments=int(s.get("segments") or 8), occlude=str(s.get("occlude") or "drop"),
                             **common)

    def _decided(self, inputs: Mapping[str, Any]) -> int:
        """The class the run's decision rule (validation threshold, ordinal rule) picks for this item."""
        import torch

        from vkit.core.explain.model import Focus

        focus = Focus(self.trained.model, inputs)
        with torch.no_grad():
            probs = focus(focus.x)[0].tolist()
        return int(self.trained.decision.decide(probs))

    def _scored(self, path: Path, out_dir: Path, stem: str) -> dict[str, Any]:
        from vkit.core.explain import scorer_saliency
        from vkit.core.explain.overlay import draw_temporal

        found = scorer_saliency(self.scorer, path, occlude=str(self.settings.get("occlude") or "drop"))
        thumbs = None
        try:
            clips = self.scorer.sampler.read(path, self.scorer.size)  # (S, T, H, W, 3) uint8
            thumbs = clips[:, clips.shape[1] // 2].astype("float32") / 255.0
        except Exception:  # noqa: BLE001 - the bars are drawn without thumbnails
            thumbs = None
        png = draw_temporal(out_dir / f"{stem}-{self.method}.png", thumbs, found, _title(path, found))
        return self._write(path, path.stem, png, found)

    def _write(self, path: Path, case: str, png: Path, found: Any) -> dict[str, Any]:
        summary = found.summary()
        record = dict(file=str(path), case=case, task=self.task.name, model_sha256=self.trained.sha256,
                      png=png.name, **summary)
        target = png.with_suffix(".json")
        target.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        return dict(file=str(path), case=case, png=str(png), json=str(target), summary=summary)


def _title(path: Path, found: Any) -> str:
    what = "score" if found.target == "score" else f"P({found.target})" if found.target not in ("value",) else "value"
    return f"{path.name}: {found.method}, {what} {found.score:.3f}"


def safe_stem(text: str) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``._-``; at most 60 characters)."""
    return _UNSAFE.sub("_", text).strip("._")[:60] or "item"


def _check_file(path: str | Path) -> None:
    """A file must be a regular file (a folder may be a DICOM series); anything else is a :class:`DataError`."""
    from vkit.core.files import check_regular

    if Path(path).is_dir():
        return
    try:
        check_regular(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None


def load_explainer(task_name: str, checkpoint: str | Path, *, settings: Mapping[str, Any] | None = None,
                   config_file: str | Path | None = None, db_url: str | None = None, plugins: Sequence[str] = (),
                   manager: Any = None, store: Any = None) -> Explainer:
    """The :class:`Explainer` of ``checkpoint`` (a run id, verified against the store; or a path, against its
    sidecar) for task ``task_name``, its settings merged: the run's ``explain`` section ← ``config_file`` ← ``settings``."""
    from vkit.core.trained import load_trained

    if manager is None:
        from vkit.hooks.manager import get_plugin_manager

        manager = get_plugin_manager(extra=plugins)
    task = manager.get_task(task_name)()
    default_method(task)  # a task with nothing to explain is refused before its checkpoint is read
    manager.register_components(require=task.plugin)
    if store is None and str(checkpoint).strip().isdigit():
        from vkit.core.store import open_store

        store = open_store(db_url, read_only=True, create=False)
    trained = load_trained(checkpoint, store=store, task=task)
    from_run = trained.config.get("explain") if isinstance(trained.meta.get("config"), dict) else None
    merged = explain_settings(from_run if isinstance(from_run, Mapping) else None, _config_settings(config_file), settings)
    return Explainer(task, trained, merged)


def explain_files(task_name: str, checkpoint: str | Path, inputs: Sequence[str | Path], *,
                  out_dir: str | Path = "explain", **options: Any) -> list[dict[str, Any]]:
    """Explain each of ``inputs`` with ``checkpoint`` (see :func:`load_explainer` for ``options``); one
    ``dict(file, case, png, json, summary)`` per item, PNG and JSON written into ``out_dir``."""
    explainer = load_explainer(task_name, checkpoint, **options)
    out = Path(out_dir)
    results: list[dict[str, Any]] = []
    for i, path in enumerate(inputs):
        results += explainer.explain(path, out, f"{i:02d}-{safe_stem(Path(str(path)).name)}")
    return results


def peak_text(summary: Mapping[str, Any]) -> str:
    """The peak of a summary in words: ``frame 9, y 6, x 14`` or ``segment 3 (1.5-2.0 s)``."""
    peak = summary.get("peak") or {}
    if "frame" in peak:
        return f"frame {peak['frame']}, y {peak['y']}, x {peak['x']}"
    if "segment" in peak:
        unit = " s" if summary.get("segment_unit") == "s" else ""
        start, end = peak["start"], peak["end"]
        span = f"{start:.1f}-{end:.1f}{unit}" if unit else f"frames {start}-{end - 1}"
        return f"segment {peak['segment']} ({span}), drop {peak['saliency']:.3f}"
    return "none"


@click.command("explain")
@click.argument("task")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(), metavar="FILE...")
@click.option("--checkpoint", required=True, metavar="RUN_OR_PATH", help="A run id or a model.safetensors file.")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="gradcam | occlusion | temporal (default: gradcam for tasks that predict files, temporal for scorers).")
@click.option("--target-layer", default=None, metavar="MODULE",
              help="Grad-CAM layer, relative to the model (default: the backbone's last conv block with a 7x7 map).")
@click.option("--class", "target", default=None, metavar="NAME_OR_INDEX", help="Class to explain (default: the predicted one).")
@click.option("--segments", type=click.IntRange(1), default=None, help="Temporal: segments of a clip (default 8).")
@click.option("--occlude", type=click.Choice(("drop", "blur")), default=None,
              help="Temporal: how a segment is hidden: drop (frozen, the default) or blur (smeared over time).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML/JSON explain settings.")
@click.option("--out", "out_dir", default="explain", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the PNGs and JSON files.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def explain_cmd(ctx: click.Context, task: str, inputs: tuple[str, ...], checkpoint: str, method: str | None,
                target_layer: str | None, target: str | None, segments: int | None, occlude: str | None,
                config_file: str | None, out_dir: str, as_json: bool) -> None:
    """Explain what drove a trained model's score on FILE...: heat maps (Grad-CAM, occlusion) or temporal saliency."""
    from vkit.core.console import print_table

    obj = ctx.find_root().obj or {}
    settings = dict(method=method, target_layer=target_layer, target=target, segments=segments, occlude=occlude)
    results = explain_files(task, checkpoint, inputs, out_dir=out_dir, settings=settings, config_file=config_file,
                            db_url=obj.get("db_url"), plugins=obj.get("plugins", ()))
    if as_json:
        click.echo(json.dumps([dict(r["summary"], file=r["file"], case=r["case"], png=r["png"], json=r["json"])
                               for r in results], indent=2, default=str))
        return
    rows = [[r["case"], r["summary"]["method"], r["summary"]["target"], f"{r['summary']['score']:.4f}",
             peak_text(r["summary"]), r["png"]] for r in results]
    print_table(f"{task}: explanations (checkpoint {checkpoint})", ["case", "method", "explained", "score", "peak", "png"], rows)


__all__ = ["METHODS", "SETTINGS", "Explainer", "default_method", "explain_cmd", "explain_files", "explain_settings",
           "load_explainer", "peak_text", "safe_stem"]
