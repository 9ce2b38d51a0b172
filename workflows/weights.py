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
    if str(file).startswith("run:"):  # a `vkit pretrain` run's weights, as pretrained='run:ID' names them (verified)
        from vkit.core.store import open_store
        from vkit.core.weights.load import resolve

        file = Path(resolve(str(file), open_store((ctx.find_root().obj or {}).get("db_url"), create=False))[0])
    info = inspect_weights(file, backbones=list(backbones) or None, prefix=prefix)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    out = console()
    out.print(f"{info['path']}")
    out.print(f"format {info['format']}" + (f" (state dict under {info['container']!r})" if info["container"] else "")
              + f", {info['tensors']} tensors, {info['parameters']:,} values, {info['bytes']:,} bytes")
    out.print(f"sha256 {info['sha256']}")
    if info["meta"]:
        out.print(f"meta {json.dumps(info['meta'], default=str)[:300]}")
    shapes = list(info["tensor_shapes"].items())
    shown = shapes if limit <= 0 else shapes[:limit]
    print_table(f"tensors ({len(shown)} of {len(shapes)})", ["key", "shape", "dtype"],
                [[k, "x".join(map(str, s)) or "scalar", d] for k, (s, d) in shown])
    good = [f for f in info["fits"] if f["status"] != "partial"]
    shown_fits = good or info["fits"][:5]  # the partial matches only when nothing fits (closest five)
    rows = [[f["backbone"], ", ".join(f"{k}={v}" for k, v in f["variant"].items()), f["status"], repr(f["prefix"]),
             f["matched"], f["missing"], f["unexpected"], f["ignored"], "; ".join(f["adapted"][:1] + f["refused"][:1])]
            for f in shown_fits]
    if not rows:
        out.print("no registered backbone matches any key of this file")
        return
    print_table("backbones", ["backbone", "variant", "status", "prefix", "matched", "missing", "unexpected",
                              "ignored", "note"], rows)
    best = info["fits"][0]
    if best["status"] != "partial":
        options = "".join(f", {k}={v!r}" for k, v in best["variant"].items())
        out.print(f"use: dict(type={best['backbone']!r}{options}, pretrained={str(file)!r})")


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
    """Load FILE into a backbone and write its weights as safetensors (pretrained=OUT then needs nothing else)."""
    from vkit.registry.errors import ConfigError, did_you_mean
    from vkit.registry.registries import BACKBONES
    from vkit.workflows.config import parse_overrides

    _register_plugins(ctx)
    BACKBONES.import_from_location()
    if backbone_type not in BACKBONES.module_dict:
        raise ConfigError(f"--backbone {backbone_type!r}: not a registered backbone"
                          f"{did_you_mean(backbone_type, BACKBONES.module_dict)}; see `vkit components BACKBONES`")
    cfg = dict(parse_overrides(options), type=backbone_type)
    result = convert_weights(file, cfg, out, prefix=prefix, strict=strict, force=force)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    c = result["counts"]
    click.echo(f"{result['out']}: {c['matched']} tensors from {Path(result['path']).name} ({result['format']}, "
               f"prefix {result['strip']!r}; {c['missing']} missing, {c['unexpected']} unexpected, "
               f"{c['ignored']} ignored, {c['adapted']} adapted)")
    click.echo(f"sha256 {result['out_sha256']}")
