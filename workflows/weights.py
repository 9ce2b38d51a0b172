"""``vkit weights inspect FILE`` and ``vkit weights convert FILE --backbone TYPE --out W.safetensors``.

``inspect`` reads a weights file the way ``pretrained=`` does (safetensors, or
``torch.load(weights_only=True)``: nothing in the file runs) and prints its format,
sha256, tensors and shapes, and which registered backbones it fits with which key
prefix. ``convert`` loads it into one backbone (prefix found or given, stem adapted)
and writes that backbone's weights as safetensors with the source's sha256 in the
header, loadable with ``pretrained=W.safetensors`` without any prefix or adaptation.

Example::

    vkit weights inspect x3d_s_mmaction.pth
    vkit weights convert x3d_s_mmaction.pth --backbone X3D --out x3d_s.safetensors
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import click

__all__ = ["convert_weights", "inspect_weights", "weights_group"]


def inspect_weights(file: str | Path, *, backbones: list[str] | None = None, prefix: str | None = None) -> dict[str, Any]:
    """What ``vkit weights inspect`` prints, as data: the file's summary, its tensors and the backbones it fits."""
    from vkit.core.weights.fit import backbone_fits
    from vkit.core.weights.formats import read_weights

    weights = read_weights(file, "weights inspect")
    fits = backbone_fits(weights, backbones, prefix=prefix)
    return dict(**weights.describe(),
                tensor_shapes={k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in weights.state.items()},
                fits=[dict(backbone=f.backbone, variant=f.variant, status=f.status, prefix=f.strip, adds=f.add,
                           matched=f.matched, missing=f.missing, unexpected=f.unexpected, ignored=f.ignored,
                           adapted=f.adapted[:5], refused=f.refused[:5]) for f in fits])


def convert_weights(file: str | Path, backbone: dict[str, Any], out: str | Path, *, prefix: str | None = None,
                    strict: bool = True, force: bool = False) -> dict[str, Any]:
    """Load ``file`` into the backbone ``backbone`` (a config) and save its weights to ``out`` (safetensors).

    Returns the load report as a dict plus ``out`` and its sha256. ``out`` is never overwritten unless ``force``.
    """
    from safetensors.torch import save_file

    from vkit.core.store.provenance import sha256_file
    from vkit.registry.errors import ConfigError
    from vkit.registry.registries import BACKBONES

    target = Path(out).expanduser()
    if target.suffix != ".safetensors":
        raise ConfigError(f"--out {str(out)!r}: expected a file ending in .safetensors")
    if target.exists() and not force:
        raise ConfigError(f"--out {str(target)!r} exists; choose another name or pass --force")
    try:
        net = BACKBONES.build(dict(backbone, pretrained=str(file), pretrained_prefix=prefix, pretrained_strict=strict))
    except (TypeError, ValueError) as err:  # a --set ARG value the backbone cannot take (widths=x)
        args = {k: v for k, v in backbone.items() if k != "type"}
        raise ConfigError(f"--backbone {backbone.get('type')}: cannot build it from --set {args!r}: "
                          f"{type(err).__name__}: {err}") from err
    report = net.pretrained_report
    state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    meta = dict(source=Path(report.path).name, source_sha256=report.sha256, source_format=report.format,
                backbone=json.dumps(backbone, sort_keys=True, default=str), converted_by="vkit weights convert")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:  # a FIFO or file where the folder goes
        raise ConfigError(f"--out {str(out)!r}: {str(target.parent)!r} is not a folder ({err.strerror})") from None
    tmp = target.with_name(f".{target.name}.partial")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(target)
    digest, size = sha256_file(target)
    return dict(report.to_dict(), out=str(target), out_sha256=digest, out_bytes=size, counts=report.counts())


def run_backbone_fit(ref: str, path: str | Path, *, prefix: str | None = None) -> dict[str, Any] | None:
    """How ``vkit pretrain`` run ``ref``'s weights (at ``path``, already verified) load into the backbone config the
    run recorded in its sidecar (``backbone.json``): ``{'backbone': config, 'input': mode, 'fit': row}``, the row as
    :func:`inspect_weights` lists fits. ``None`` when the sidecar names no backbone (an older run).

    The defaults :func:`inspect_weights` tries rarely fit such weights (``vkit pretrain --set backbone.widths=...``),
    so the run's own config is what tells whether ``pretrained=run:ID`` loads.
    """
    from vkit.registry.registries import BACKBONES

    sidecar = Path(path).with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = meta.get("backbone") if isinstance(meta, dict) else None
    if not isinstance(config, dict) or "type" not in config:
        return None
    config = {k: v for k, v in config.items() if not str(k).startswith("pretrained")}
    variant = {k: v for k, v in config.items() if k != "type"}
    row = dict(backbone=str(config["type"]), variant=variant, prefix=None, adds="", matched=0, missing=0,
               unexpected=0, ignored=0, adapted=[], refused=[])
    try:
        net = BACKBONES.build(dict(config, pretrained=str(path), pretrained_prefix=prefix))
    except Exception as err:  # noqa: BLE001 - shown as the row's note: the run's config no longer builds or loads
        row.update(status="partial", refused=[f"{type(err).__name__}: {err}"[:300]])
    else:
        report = net.pretrained_report
        row.update(status="fits (adapted)" if report.adapted else "fits", prefix=report.strip, adds=report.add,
                   matched=report.matched, missing=len(report.missing), unexpected=len(report.unexpected),
                   ignored=report.ignored, adapted=[f"{k}: {v}" for k, v in list(report.adapted.items())[:5]])
    mode = (meta.get("input") or {}).get("mode") if isinstance(meta.get("input"), dict) else None
    if not mode:  # a scan run records no input mode (as `vkit pretrain` says: 'volume'); older video runs were RGB
        mode = "volume" if (meta.get("backbone_info") or {}).get("modality") == "volume" else "rgb"
    return dict(ref=ref, backbone=config, input=mode, fit=row)


def _register_plugins(ctx: click.Context) -> None:
    """Plugins' backbones are candidates too (``vkit --plugin`` and the installed ones)."""
    from vkit.hooks.manager import get_plugin_manager

    obj = ctx.find_root().obj or {}
    manager = get_plugin_manager(extra=obj.get("plugins", ()))
    manager.register_components()
    for failure in manager.errors:
        if failure.stage == "vkit_register_components":
            click.echo(f"Warning: {failure.message} (its backbones are not tried)", err=True)


@click.group("weights")
def weights_group() -> None:
    """Inspect and convert pretrained weights (mmaction2, MONAI bundles, torchvision, safetensors)."""


@weights_group.command("inspect")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--backbone", "backbones", multiple=True, help="Only try this registered backbone (repeatable).")
@click.option("--prefix", default=None, help="Strip exactly this from the file's keys instead of finding it.")
@click.option("--tensors", "limit", default=20, show_default=True, help="List at most this many tensors (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (every tensor).")
@click.pass_context
def inspect_cmd(ctx: click.Context, file: Path, backbones: tuple[str, ...], prefix: str | None, limit: int,
                as_json: bool) -> None:
    """Format, sha256, tensors and shapes of FILE (or run:ID, a vkit pretrain run's weights), and which backbones it
    fits with which prefix."""
    from vkit.core.console import console, print_table

    _register_plugins(ctx)
    _check_backbone_names(backbones)
    ref, run = str(file), None
    if ref.startswith("run:"):  # a `vkit pretrain` run's weights, as pretrained='run:ID' names them (verified)
        file = _run_weights(ctx, ref)
        run = run_backbone_fit(ref, file, prefix=prefix)
    with warnings.catch_warnings():  # mmaction2's Swin3D, built for real when nothing else fits, warns in torch
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
        info = inspect_weights(file, backbones=list(backbones) or None, prefix=prefix)
    if run is not None:  # the backbone config the run pretrained comes first: it is what run:ID loads into
        info["run"] = {k: v for k, v in run.items() if k != "fit"}
        info["fits"].insert(0, run["fit"])
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    out = console()
    out.print(f"{info['path']}")
    out.print(f"format {info['format']}" + (f" (state dict under {info['container']!r})" if info["container"] else "")
              + f", {info['tensors']} tensors, {info['parameters']:,} values, {info['bytes']:,} bytes")
    out.print(f"sha256 {info['sha256']}")
    if run is not None:
        out.print(f"pretrained by {ref} for {run['backbone']!r} on input {run['input']!r}")
    if info["meta"]:
        out.print(f"meta {json.dumps(info['meta'], default=str)[:300]}")
    shapes = list(info["tensor_shapes"].items())
    shown = shapes if limit <= 0 else shapes[:limit]
    print_table(f"tensors ({len(shown)} of {len(shapes)})", ["key", "shape", "dtype"],
                [[k, "x".join(map(str, s)) or "scalar", d] for k, (s, d) in shown])
    good = [f for f in info["fits"] if f["status"] != "partial"]
    shown_fits = good or info["fits"][:5]  # the partial matches only when nothing fits (closest five)
    if run is not None and run["fit"] not in shown_fits:
        shown_fits.insert(0, run["fit"])
    rows = [[f["backbone"], ", ".join(f"{k}={v}" for k, v in f["variant"].items()), f["status"], repr(f["prefix"]),
             f["matched"], f["missing"], f["unexpected"], f["ignored"], "; ".join(f["adapted"][:1] + f["refused"][:1])]
            for f in shown_fits]
    if not rows:
        for name in backbones:  # the loader's own reason: no key matches, or several prefixes fit (ambiguous)
            out.print(f"--backbone {name}: {_load_refusal(name, file, prefix)}")
        if not backbones:
            out.print("no registered backbone takes this file under one key prefix"
                      + (f" (after stripping --prefix {prefix!r})" if prefix else "")
                      + ": no key matches, or several prefixes fit; `--backbone NAME` says which for one backbone")
        return
    print_table("backbones" if good else "closest backbones (none fits)", ["backbone", "variant", "status", "prefix",
                "matched", "missing", "unexpected", "ignored", "note"], rows)
    best = info["fits"][0]
    if best["status"] != "partial":
        options = "".join(f", {k}={v!r}" for k, v in best["variant"].items())
        source = ref if run is not None else str(file)  # run:ID keeps the run's sha256 and input checks
        out.print(f"use: dict(type={best['backbone']!r}{options}, pretrained={source!r})")
    elif run is not None:
        out.print(f"{ref}'s weights do not load into the backbone config the run recorded: "
                  f"{'; '.join(best['refused'][:1]) or 'see the row above'}")
    else:
        out.print("no registered backbone, built with its defaults or the variants listed, takes every key of this "
                  "file (note: the first key whose shape differs); build one to match with `vkit weights convert "
                  "FILE --backbone NAME --set ARG=VALUE`, or name the key prefix with --prefix")


def _run_weights(ctx: click.Context, ref: str) -> Path:
    """The verified weights file of ``vkit pretrain`` run ``ref`` (``run:ID``) in ``vkit --db``'s store."""
    from vkit.core.store import open_store
    from vkit.core.weights.load import resolve

    return Path(resolve(ref, open_store((ctx.find_root().obj or {}).get("db_url"), create=False))[0])


def _load_refusal(name: str, file: Path, prefix: str | None) -> str:
    """Why backbone ``name`` (built with its defaults) does not take ``file``: the loader's message."""
    from vkit.registry.errors import VkitError
    from vkit.registry.registries import BACKBONES

    try:
        BACKBONES.build(dict(type=name, pretrained=str(file), pretrained_prefix=prefix))
    except VkitError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - a backbone that cannot be built with its defaults
        return f"cannot be built with its defaults: {type(err).__name__}: {err}"
    return "loads it (built with its defaults)"


def _check_backbone_names(names: tuple[str, ...] | list[str]) -> None:
    """Each ``--backbone`` names a registered backbone (a typo was silently 'no backbone matches')."""
    from vkit.registry.errors import ConfigError, did_you_mean
    from vkit.registry.registries import BACKBONES

    BACKBONES.import_from_location()
    for name in names:
        if name not in BACKBONES.module_dict:
            raise ConfigError(f"--backbone {name!r}: not a registered backbone"
                              f"{did_you_mean(name, BACKBONES.module_dict)}; see `vkit components BACKBONES`")


@weights_group.command("convert")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--backbone", "backbone_type", required=True, help="Registered backbone to load into (e.g. X3D).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .safetensors file.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="A backbone argument (repeatable), e.g. --set depth=10 --set in_channels=1.")
@click.option("--prefix", default=None, help="Strip exactly this from the file's keys instead of finding it.")
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="A partial match is an error (--no-strict writes what matched; the rest keeps its initialisation).")
@click.option("--force", is_flag=True, help="Overwrite --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def convert_cmd(ctx: click.Context, file: Path, backbone_type: str, out: Path, options: tuple[str, ...],
                prefix: str | None, strict: bool, force: bool, as_json: bool) -> None:
    """Load FILE (or run:ID, a vkit pretrain run's weights) into a backbone and write its weights as safetensors
    (pretrained=OUT then needs nothing else)."""
    from vkit.registry.errors import ConfigError
    from vkit.workflows.config import parse_overrides

    _register_plugins(ctx)
    _check_backbone_names([backbone_type])
    for option in options:  # parse_overrides' own message shows a run's key (train.epochs=20), not a backbone's
        if "=" not in option:
            raise ConfigError(f"--set {option!r}: expected ARG=VALUE, an argument of {backbone_type} such as "
                              "depth=10 or in_channels=1 (`vkit components BACKBONES` lists them)")
    cfg = dict(parse_overrides(options), type=backbone_type)
    if str(file).startswith("run:"):  # read from --db's store (the backbone's own lookup would use the default one)
        file = _run_weights(ctx, str(file))
    result = convert_weights(file, cfg, out, prefix=prefix, strict=strict, force=force)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    c = result["counts"]
    click.echo(f"{result['out']}: {c['matched']} tensors from {Path(result['path']).name} ({result['format']}, "
               f"prefix {result['strip']!r}; {c['missing']} missing, {c['unexpected']} unexpected, "
               f"{c['ignored']} ignored, {c['adapted']} adapted, {c['skipped']} skipped)")
    if c["missing"] or c["skipped"]:  # --no-strict: say which weights the output holds at their initialisation
        first = (list(result["skipped"]) + list(result["missing"]))[0]
        click.echo(f"{c['missing'] + c['skipped']} tensors of --out keep {backbone_type}'s "
                   f"initialisation, not the file's (missing, or shape differs: first {first})")
    click.echo(f"sha256 {result['out_sha256']}")
