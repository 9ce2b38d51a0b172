"""Load a ``pretrained=`` value into a backbone: resolve it, read it safely, match keys, adapt, report.

``pretrained`` is a local file (see :mod:`vkit.core.weights.formats`), a MONAI bundle
folder, or ``run:ID`` (the weights a ``vkit pretrain`` run stored,
:mod:`vkit.core.weights.run_ref`). The result is a :class:`LoadReport`: the file's sha256
and how many keys matched, were missing, unexpected, ignored or adapted; a run records it
(:func:`record_reports`).

Strict (the default): every model key must be covered and no key under the matched prefix
left over; ``strict=False`` loads what matches and reports the rest.

Example::

    report = load_weights(backbone, "x3d_s.pth")               # mmaction2 recognizer checkpoint
    report.line()   # "x3d_s.pth (mmengine, sha256 3f1c2a…): 412 matched, 0 missing, 0 unexpected, 4 ignored ..."
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vkit.core.weights.formats import WeightsFile, read_weights, weights_path
from vkit.core.weights.inflate import adapt
from vkit.core.weights.prefixes import match_keys
from vkit.registry.errors import CheckpointError, ConfigError, VkitError

RUN_PREFIX = "run:"
#: The store ``run:ID`` resolves in when none is passed (set by a run: :func:`use_store`).
_STORE: contextvars.ContextVar[Any] = contextvars.ContextVar("vkit_weights_store", default=None)
#: Files :func:`load_weights` read inside :func:`keep_weights` (``{absolute path: WeightsFile}``).
_KEEP: contextvars.ContextVar[dict[str, WeightsFile] | None] = contextvars.ContextVar("vkit_weights_keep",
                                                                                      default=None)
#: Files already read that :func:`load_weights` takes instead of reading them again (:func:`reuse_weights`).
_REUSE: contextvars.ContextVar[dict[str, WeightsFile] | None] = contextvars.ContextVar("vkit_weights_reuse",
                                                                                       default=None)


def use_store(store: Any) -> None:
    """Resolve ``run:ID`` references in ``store`` from now on in this context (a run sets its own store)."""
    _STORE.set(store)


@contextlib.contextmanager
def keep_weights() -> Iterator[dict[str, WeightsFile]]:
    """Inside the block, every file :func:`load_weights` reads is also kept in the yielded ``{path: WeightsFile}``
    (what a run's weights check read, for :func:`reuse_weights`)."""
    kept: dict[str, WeightsFile] = {}
    token = _KEEP.set(kept)
    try:
        yield kept
    finally:
        _KEEP.reset(token)


@contextlib.contextmanager
def reuse_weights(files: dict[str, WeightsFile]) -> Iterator[None]:
    """Inside the block, :func:`load_weights` of a file in ``files`` takes that read instead of reading the file
    again, once (it is removed then); ``files`` is emptied when the block ends.

    The model is then built from exactly the bytes the check hashed (and, for ``run:ID``, compared with the digest
    its run recorded: :func:`load_weights` compares again), and a file replaced in between is not mixed in.
    """
    token = _REUSE.set(files)
    try:
        yield
    finally:
        _REUSE.reset(token)
        files.clear()


def _already_read(source: Path | str, owner: str, take: bool) -> WeightsFile | None:
    files = _REUSE.get()
    if not files:
        return None
    key = os.path.abspath(weights_path(source, owner))
    return files.pop(key, None) if take else files.get(key)


@dataclass
class LoadReport:
    """What loading a ``pretrained`` file did (JSON-able through :meth:`to_dict`)."""

    path: str
    sha256: str
    format: str
    strip: str
    add: str
    matched: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: int = 0
    adapted: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ref: str = ""
    size: int = 0  # bytes read (the sha256 is of those bytes); 0: not known

    def counts(self) -> dict[str, int]:
        """The numbers a run records: matched, missing, unexpected, ignored, adapted, skipped."""
        return dict(matched=self.matched, missing=len(self.missing), unexpected=len(self.unexpected),
                    ignored=self.ignored, adapted=len(self.adapted), skipped=len(self.skipped))

    def line(self) -> str:
        """One line for the run summary."""
        c = self.counts()
        extra = "".join(f", {c[k]} {k}" for k in ("adapted", "skipped") if c[k])
        return (f"{Path(self.path).name} ({self.format}, sha256 {self.sha256[:12]}, prefix {self.strip!r}): "
                f"{c['matched']} matched, {c['missing']} missing, {c['unexpected']} unexpected, "
                f"{c['ignored']} ignored{extra}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(pretrained: str | Path, store: Any = None, owner: str = "pretrained") -> tuple[Path | str, str | None]:
    """``(what to read, expected sha256 or None)``: a path as given, or ``run:ID`` through ``run_ref``.

    ``run:ID`` imports :func:`vkit.core.weights.run_ref.resolve_run_weights` lazily (it belongs to
    ``vkit pretrain``); without that module it is a clear :class:`ConfigError`. ``store`` defaults to
    the default store (``VKIT_DB_URL`` or the local SQLite file).
    """
    text = str(pretrained)
    if not text.startswith(RUN_PREFIX):
        return pretrained, None
    try:
        from vkit.core.weights.run_ref import resolve_run_weights
    except ImportError as err:
        raise ConfigError(f"{owner}: pretrained={text!r} names a run's weights, but this vkit cannot resolve run "
                          f"references ({err}); give the weights file itself (.safetensors or .pth)") from None
    store = store if store is not None else _STORE.get()
    if store is None:
        from vkit.core.store import open_store

        store = open_store(create=False)
    path, digest = resolve_run_weights(text, store)
    return Path(path), str(digest)


def pretrained_sha256(pretrained: str | Path, store: Any = None, owner: str = "pretrained") -> str:
    """The sha256 of the weights ``pretrained`` names (streamed; ``run:ID``: the digest its run recorded).

    What an identity built from a backbone config adds, so that a file replaced at the same path is a
    different model (e.g. :class:`vkit.core.embedding.FrozenEmbedder`'s feature cache).
    """
    source, expected = resolve(pretrained, store, owner)
    if expected is not None:
        return expected
    read = _already_read(source, owner, take=False)
    if read is not None:
        return read.sha256
    from vkit.core.store.provenance import sha256_file
    from vkit.core.weights.formats import weights_path

    return sha256_file(weights_path(source, owner))[0]


def load_weights(module: nn.Module, pretrained: str | Path, *, prefix: str | None = None, strict: bool = True,
                 ignore: tuple[str, ...] = (), model_prefixes: tuple[str, ...] = ("",), store: Any = None,
                 owner: str = "pretrained") -> LoadReport:
    """Load ``pretrained`` into ``module``; raise :class:`CheckpointError` on a mismatch (``strict``).

    Args:
        module: the backbone (or any module).
        pretrained: a file, a MONAI bundle folder or ``run:ID``.
        prefix: ``pretrained_prefix`` (strip exactly this from the file's keys); ``None``: automatic.
        strict: a partial match (missing or unexpected keys, a shape that cannot be adapted) is an error.
        ignore: model-key prefixes the module drops on purpose (an upstream classifier).
        model_prefixes: prefixes the module puts before the upstream network's keys (``'net.'``).
        store: for ``run:ID`` (default: the default store).
        owner: names the backbone in messages.
    """
    if not isinstance(strict, bool):
        raise ConfigError(f"{owner}: pretrained_strict={strict!r}; expected true or false")
    source, expected = resolve(pretrained, store, owner)
    weights = _already_read(source, owner, take=True) or read_weights(source, owner)
    kept = _KEEP.get()
    if kept is not None:
        kept[os.path.abspath(weights.path)] = weights
    if expected is not None and weights.sha256 != expected:
        raise CheckpointError(f"{owner}: {str(weights.path)!r} has sha256 {weights.sha256[:16]}…, but "
                              f"{pretrained} recorded {expected[:16]}…: the file changed since the run wrote it")
    own = module.state_dict()
    try:
        mapping = match_keys(list(weights.state), list(own), prefix=prefix, model_prefixes=model_prefixes,
                             ignore=ignore, owner=f"{owner}: {weights.path.name}")
    except CheckpointError as err:
        other = _other_run_backbone(pretrained, weights.path, module)
        if other:
            raise CheckpointError(f"{owner}: {other}") from err
        raise
    report = LoadReport(str(weights.path), weights.sha256, weights.format, mapping.strip, mapping.add,
                        0, list(mapping.missing), list(mapping.unexpected), len(mapping.ignored),
                        ref=str(pretrained), size=weights.size)
    if strict and (mapping.missing or mapping.unexpected):
        other = _other_run_backbone(pretrained, weights.path, module)
        if other:
            raise CheckpointError(f"{owner}: {other}")
        hint = _run_backbone_hint(pretrained, weights.path) or _layout_hint(mapping)
        raise CheckpointError(
            f"{owner}: {weights.path.name} matches the model only partly ({mapping.describe()}): "
            f"{len(mapping.matched)} keys matched, missing {mapping.missing[:5]} ({len(mapping.missing)}), "
            f"unexpected {mapping.unexpected[:5]} ({len(mapping.unexpected)}); {hint} "
            f"load what matches with pretrained_strict=False")
    state: dict[str, torch.Tensor] = {}
    for target, key in mapping.matched.items():
        try:
            tensor, how = adapt(target, weights.state[key], own[target].shape, owner=f"{owner}: {weights.path.name}")
        except CheckpointError as err:
            if strict:
                hint = _run_backbone_hint(pretrained, weights.path)
                if hint:
                    raise CheckpointError(f"{err}; {hint.removesuffix(', or')}") from None
                raise
            report.skipped[target] = str(err).split(": ", 2)[-1][:200]
            continue
        if how:
            report.adapted[target] = how
        state[target] = tensor.to(own[target].dtype)
    result = module.load_state_dict(state, strict=False)
    report.matched = len(state)
    leftover = sorted(set(result.missing_keys) - set(report.missing) - set(report.skipped))
    leftover = [k for k in leftover if not k.endswith("num_batches_tracked")]
    if leftover or result.unexpected_keys:  # a consistency check of the mapping itself
        raise VkitError(f"{owner}: internal key mapping error: {leftover[:3]} {result.unexpected_keys[:3]}")
    return report


def _layout_hint(mapping: Any) -> str:
    """What to do about a partial match: name a prefix where a leftover file key and a missing model key differ
    only by one, else say the layouts differ (another architecture or configuration: no prefix can fix that)."""
    tails = [m[len(mapping.add):] for m in mapping.missing]
    if any(u != t and (u.endswith(f".{t}") or t.endswith(f".{u}")) for u in mapping.unexpected for t in tails):
        return "name the prefix with pretrained_prefix=..., or"
    shown = (f" (the file's {mapping.unexpected[0]!r} is no key of the model" if mapping.unexpected else " (")
    shown += (f"{', ' if mapping.unexpected else ''}the model's {mapping.missing[0]!r} is not in the file)"
              if mapping.missing else ")")
    return (f"no key prefix makes it fit: {len(mapping.matched)} keys match by name, the rest differ in layout"
            f"{shown}, so the file holds another architecture or configuration; build the backbone the file was "
            "saved from (its arch, depth, widths), or")


def _run_backbone_args(path: Path) -> dict[str, Any]:
    """The backbone config a pretraining run's weights sidecar (``backbone.json`` next to them) records."""
    import json

    try:
        return dict(json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("backbone") or {})
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _other_run_backbone(pretrained: str | Path, path: Path, module: nn.Module) -> str:
    """For ``run:ID`` whose run pretrained another backbone type than ``module``:
    ``"run 7 pretrained TinyC3D(widths=[4, 8]), this config builds X3D ..."``; else ``''``."""
    if not str(pretrained).startswith(RUN_PREFIX):
        return ""
    args = _run_backbone_args(path)
    built = module.registry_name() if callable(getattr(module, "registry_name", None)) else type(module).__name__
    kind = args.get("type")
    if not kind or kind == built:
        return ""
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "type")
    run = str(pretrained)[len(RUN_PREFIX):]
    return (f"run {run} pretrained {kind}({shown}), this config builds {built}: its weights load only into a {kind} "
            f"built with the same arguments (set type: {kind} and them), or pretrain a {built} "
            f"(`vkit pretrain {built} ARCHIVE...`)")


def _run_backbone_hint(pretrained: str | Path, path: Path) -> str:
    """For ``run:ID``: which backbone arguments the pretraining run used (its verified sidecar), else ``''``.

    A ``vkit pretrain`` run's weights fit only a backbone built with the same arguments; a prefix hint
    would mislead there.
    """
    if not str(pretrained).startswith(RUN_PREFIX):
        return ""
    import json

    try:
        args = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("backbone") or {}
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "type")
    except (OSError, ValueError, AttributeError):
        shown = ""
    return (f"{pretrained} was pretrained with backbone arguments {shown or '(see vkit runs show)'}; build this "
            "backbone with the same ones, or")


def record_reports(reports: dict[str, LoadReport], ctx: Any) -> None:
    """Record each ``{config key: report}`` on the run: a ``pretrained`` artifact (path + sha256), metric
    rows of split ``pretrained`` (``<key>/matched`` ...), and one summary line per key."""
    for key, report in reports.items():
        ctx.store.add_artifact(ctx.run_id, "pretrained", report.path,  # the digest of the bytes loaded: not re-read
                               digest=(report.sha256, report.size) if report.size else None)
        ctx.store.log_metrics(ctx.run_id, {f"{key}/{k}": v for k, v in report.counts().items()}, step=0,
                              split="pretrained")
        ctx.summary[f"pretrained {key}"] = report.line()


__all__ = ["RUN_PREFIX", "LoadReport", "keep_weights", "load_weights", "pretrained_sha256", "record_reports", "resolve",
           "reuse_weights", "use_store"]
