"""``--checkpoint RUN_OR_PATH``: a run id (or a path) resolved to checkpoint files checked against the store.

A run id names the run's ``checkpoint`` artifact; the weights and their JSON
sidecar must still have the sha256 the store recorded for that run (artifacts
``checkpoint`` and ``checkpoint-meta``), and so must each compressed stage
(``compressed``, ``compressed-meta``). A mismatch is a :class:`CheckpointError`
naming the file and both sha256: another store's run, a re-run in the same
folder, or an edited sidecar (a changed threshold) is refused, never loaded.

A path given directly is checked against the store where the store recorded
that file for a run; otherwise it loads as before, its weights checked
against the sha256 its own sidecar records.

Example::

    files = resolve_checkpoint("3", store)             # verified against run 3's artifacts
    load_checkpoint(files.weights, model)
    meta = files.compressed_meta("final")              # the chain's final model, verified too
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vkit.registry.errors import CheckpointError

#: The largest run id a store holds (a signed 64-bit integer); CLIs take run ids as ``click.IntRange(1, MAX_RUN_ID)``.
MAX_RUN_ID = 2**63 - 1


def parse_run_id(text: str, option: str = "--checkpoint") -> int | None:
    """``text`` as a run id, or ``None`` when it is not all digits (a path); refuses an id no store can hold.

    Example::

        parse_run_id("12")          # 12
        parse_run_id("w/m.safetensors")   # None
    """
    if not text.isdigit():
        return None
    run_id = int(text)
    if not 1 <= run_id <= MAX_RUN_ID:
        raise CheckpointError(f"{option} {text}: expected a run id from 1 to {MAX_RUN_ID} or a .safetensors path")
    return run_id


@dataclass(frozen=True)
class CheckpointFiles:
    """A checkpoint's weights and sidecar, and the sha256 the store recorded for them (empty: nothing recorded).

    Attributes:
        weights: the ``.safetensors`` (or ``.pth``) file, absolute.
        sidecar: its JSON sidecar (``weights.with_suffix('.json')``; may not exist for a foreign ``.pth``).
        run_id: the run whose artifacts the files were checked against (``None``: nothing recorded them).
        recorded: ``{absolute path: sha256}`` of every artifact of that run.
    """

    weights: Path
    sidecar: Path
    run_id: int | None = None
    recorded: Mapping[str, str] = field(default_factory=dict)

    def verify(self, path: Path, what: str) -> None:
        """Refuse ``path`` when its sha256 differs from the one the store recorded for the run (a
        :class:`CheckpointError` naming both), or when the run recorded no such file; no-op without a run."""
        if self.run_id is None:
            return
        expected = self.recorded.get(str(Path(path).resolve()))
        if expected is None:
            raise CheckpointError(f"{path}: run {self.run_id} recorded no such {what} in the store; "
                                  f"its files were moved or replaced")
        from vkit.core.store.provenance import sha256_file

        if not Path(path).is_file():
            raise CheckpointError(f"{path}: run {self.run_id}'s {what} (sha256 {expected} in the store) is missing")
        found, _ = sha256_file(path)
        if found != expected:
            raise CheckpointError(f"{path}: sha256 {found} differs from {expected} that the store recorded for run "
                                  f"{self.run_id}'s {what}; the file was replaced or edited (another store's or "
                                  f"another run's model?), refusing to load it")

    def compressed_meta(self, stage: str | None) -> dict[str, Any]:
        """The sidecar meta of a compressed model saved beside the weights (``stage``; ``None``/``"final"``: the
        chain's final model), its sidecar and weights checked against the run's ``compressed`` artifacts."""
        from vkit.core.compression import compressed_meta

        meta = compressed_meta(self.weights.parent / "compression", None if stage in (None, "", "final") else stage)
        sidecar = Path(meta["sidecar"])
        self.verify(sidecar, "compressed model's sidecar")
        self.verify(sidecar.parent / str(meta["weights"]), "compressed model")
        return meta


def resolve_checkpoint(ref: str | Path, store: Any, option: str = "--checkpoint") -> CheckpointFiles:
    """``ref`` (a run id, or a checkpoint path) → its :class:`CheckpointFiles`, verified against ``store``.

    Raises:
        CheckpointError: empty ``ref``; an id out of range, unknown or without a
            ``checkpoint`` artifact; a missing file; weights or sidecar whose
            sha256 differs from the store's (the message names both).

    Example::

        resolve_checkpoint("7", store).weights      # Path('/abs/work_dirs/medical-diagnosis-run7-3f2a9c1e/model.safetensors')
    """
    text = str(ref).strip()
    if not text:
        raise CheckpointError(f"{option} is empty: expected a run id (e.g. 3) or a .safetensors path")
    run_id = parse_run_id(text, option)
    files = _run_files(run_id, store, option) if run_id is not None else _path_files(Path(text).expanduser(), store, option)
    files.verify(files.weights, "checkpoint weights")
    if str(files.sidecar) in files.recorded:  # runs recorded before sidecars were have only the weights' sha256
        files.verify(files.sidecar, "checkpoint sidecar")
    return files


def _run_files(run_id: int, store: Any, option: str) -> CheckpointFiles:
    run = store.get_run(run_id)
    if run is None:
        raise CheckpointError(f"{option} {run_id}: no run {run_id} in the store at {store.url}")
    if run.get("kind") == "pretrain":  # its checkpoint is a bare backbone, not a model a task can load
        raise CheckpointError(f"{option} {run_id}: run {run_id} is a `vkit pretrain` run: it holds backbone weights, "
                              f"not a trained model; train on them with --set model.backbones.<modality>.pretrained="
                              f"run:{run_id} (`vkit runs list --kind train` lists trained models)")
    artifacts = store.run_artifacts(run_id)
    paths = [a["path"] for a in artifacts if a["kind"] == "checkpoint"]
    if not paths:
        kind = f"a {run['kind']} run" if run.get("kind") not in (None, "train") else f"{run.get('status')}"
        raise CheckpointError(f"{option} {run_id}: run {run_id} ({kind}) has no 'checkpoint' artifact "
                              f"(did it finish? `vkit runs list --kind train` lists trained models)")
    weights = _existing(Path(paths[-1]), option, str(run_id))
    return _recorded_files(weights, run_id, artifacts)


def _path_files(path: Path, store: Any, option: str) -> CheckpointFiles:
    weights = _existing(path, option, str(path)).resolve()
    owners = [a["run_id"] for a in store.artifacts_at(weights) if a["kind"] == "checkpoint"]
    if not owners:
        return CheckpointFiles(weights, weights.with_suffix(".json"))
    return _recorded_files(weights, owners[-1], store.run_artifacts(owners[-1]))


def _recorded_files(weights: Path, run_id: int, artifacts: list[dict[str, Any]]) -> CheckpointFiles:
    recorded = {str(a["path"]): str(a["sha256"]) for a in artifacts}
    return CheckpointFiles(weights, weights.with_suffix(".json"), run_id, recorded)


def _existing(path: Path, option: str, given: str) -> Path:
    if not path.is_file():
        if path.is_dir():
            raise CheckpointError(f"{option} {given}: {str(path)!r} is a folder, not a checkpoint file (expected a "
                                  f"run id or a .safetensors file)")
        what = "is not a regular file" if path.exists() else "does not exist"
        raise CheckpointError(f"{option} {given}: file {str(path)!r} {what}")
    return path


__all__ = ["MAX_RUN_ID", "CheckpointFiles", "parse_run_id", "resolve_checkpoint"]
