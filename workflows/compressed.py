"""``--compressed`` / ``--stage NAME`` of ``vkit predict`` and ``vkit score``: a run's saved compressed model in place
of its checkpoint.

The compression chain of ``vkit run`` saves each applied stage beside the
checkpoint, in ``<work_dir>/compression`` (:mod:`vkit.core.compression.artifact`).
``"final"`` names the chain's final model, anything else a stage
(``ChannelPrune``, ``OnnxExport``: an ONNX Runtime model). The compressed
model's identity is its artifact's sha256, so a job resumes it as a model of
its own. Given a run's verified :class:`~vkit.core.run_checkpoint.CheckpointFiles`, the stage's
files are checked against the sha256 the store recorded for them too.

Example::

    model, meta = compressed_model(Path("work/model.safetensors"), "final")
    scorer = use_compressed(task_scorer, Path("work/model.safetensors"), "OnnxExport", "cpu")
    scorer.model_sha256 == meta["sha256"]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vkit.core.run_checkpoint import CheckpointFiles
from vkit.registry.errors import ConfigError


def compressed_option(compressed: bool, stage: str | None) -> str | None:
    """What ``--compressed`` and ``--stage NAME`` ask for: ``None`` (the checkpoint), ``"final"`` or a stage name.

    Example::

        compressed_option(True, None), compressed_option(False, "OnnxExport")   # ('final', 'OnnxExport')
    """
    if stage is not None and not stage.strip():
        raise ConfigError("--stage is empty: expected a stage name such as OnnxExport (or --compressed alone)")
    return stage if stage is not None else ("final" if compressed else None)


def compressed_model(checkpoint: Path | CheckpointFiles, stage: str) -> tuple[Any, dict[str, Any]]:
    """The compressed model saved beside ``checkpoint`` (``stage``, or the chain's final one) and its sidecar meta,
    reloaded by :func:`vkit.core.trained.load_trained` (the one reload path)."""
    from vkit.core.trained import load_trained

    trained = load_trained(checkpoint, stage=stage)
    return trained.model, dict(trained.stage or {})


def stage_meta(checkpoint: Path | CheckpointFiles, stage: str) -> dict[str, Any]:
    """The sidecar meta of the compressed model saved beside ``checkpoint`` (``sha256``, ``kind``, ``precision`` ...);
    :func:`vkit.core.trained.compressed_stage`, the check :func:`~vkit.core.trained.load_trained` makes too."""
    from vkit.core.trained import compressed_stage

    files = checkpoint if isinstance(checkpoint, CheckpointFiles) else CheckpointFiles(Path(checkpoint), Path(checkpoint).with_suffix(".json"))
    return compressed_stage(files, stage)


def check_precision(meta: dict[str, Any], precision: str) -> None:
    """A reduced ``--precision`` applies to a float32 torch model only; other stages run as they were saved."""
    if precision == "fp32":
        return
    if meta.get("kind") == "onnx" or meta.get("precision") != "float32":
        saved = "an ONNX Runtime model" if meta.get("kind") == "onnx" else f"saved in {meta.get('precision')}"
        raise ConfigError(f"--compressed: stage {meta.get('stage')} is {saved} and runs as it was saved; "
                          f"drop --precision {precision}")


def use_compressed(scorer: Any, checkpoint: Path, stage: str, device: str = "cpu") -> Any:
    """``scorer`` (a task's VideoScorer for ``checkpoint``) running the compressed model instead.

    The scorer declares ``"compressed"`` in its ``supports`` (:mod:`vkit.core.capabilities`) and names the
    model the run's chain compressed in ``compressed_module`` (a dotted attribute path, e.g. ``"model"``);
    the compressed model takes its place and the artifact's sha256 becomes the scorer's ``model_sha256``.

    Raises:
        ConfigError: the scorer does not declare ``"compressed"``, names no ``compressed_module``, or an ONNX
            model lacks a part the scorer uses (its ``data_preprocessor``).
        CheckpointError: no compression folder, stage or valid artifact.
    """
    from vkit.core.capabilities import scorer_supports

    if "compressed" not in scorer_supports(scorer):
        raise ConfigError(f"--compressed: {type(scorer).__name__} does not name the model a compression chain "
                          f"compresses (it does not declare 'compressed' in its supports, with a compressed_module); "
                          f"this task cannot score with a compressed model")
    path = scorer.compressed_module
    if not isinstance(path, str) or not path:
        raise ConfigError(f"--compressed: {type(scorer).__name__} declares 'compressed' but its compressed_module is "
                          f"{path!r}; expected the dotted path of the model the chain compressed (e.g. 'model')")
    owner_path, _, name = path.rpartition(".")
    owner = scorer
    for part in owner_path.split(".") if owner_path else []:
        owner = _attribute(owner, part, scorer, path)
    original = _attribute(owner, name, scorer, path)
    model, meta = compressed_model(checkpoint, stage)
    if meta["kind"] == "onnx" and hasattr(original, "data_preprocessor") and not hasattr(model, "data_preprocessor"):
        raise ConfigError(f"--compressed {meta['stage']}: {meta['sidecar']} records no architecture, so the ONNX model "
                          f"has no data_preprocessor, which {type(scorer).__name__} runs before the model")
    setattr(owner, name, model.to(device).eval())
    scorer.model_sha256 = str(meta["sha256"])
    scorer.compressed = dict(stage=meta["stage"], kind=meta["kind"], precision=meta["precision"],
                             sha256=meta["sha256"], sidecar=meta["sidecar"])
    return scorer


def _attribute(obj: Any, name: str, scorer: Any, path: str) -> Any:
    if not hasattr(obj, name):
        raise ConfigError(f"--compressed: {type(scorer).__name__}.compressed_module is {path!r}, but "
                          f"{type(obj).__name__} has no attribute {name!r}")
    return getattr(obj, name)
