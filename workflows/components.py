"""``vkit components [REGISTRY]``: every registered component, who owns it and how to build it.

The catalogue covers vkit core's components and those every loaded plugin
registers (through ``vkit_register_components``). Each entry carries the
owner (``core`` or the plugin's name), the constructor's signature, the first
line of the class docstring and, per argument, its default and the text of
its ``Args:`` docstring entry. Arguments :class:`vkit.core.model.VideoModel`
fills in (a head's ``in_dim``, a fusion's ``in_dims``) are marked, so
``required`` lists what a config must give.

``docs/components.md`` is this catalogue for vkit and its built-in plugins;
a test fails when it is stale. Regenerate it with::

    python -m vkit.workflows.components --write docs/components.md

Example::

    from vkit.hooks.manager import get_plugin_manager
    for c in catalogue(get_plugin_manager(), "FUSIONS"):
        print(c.name, c.owner, c.signature)      # Concat core (in_dims, dim: int)
"""
from __future__ import annotations

import inspect
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

import click

from vkit.registry.errors import ConfigError, did_you_mean

__all__ = ["ComponentArg", "ComponentInfo", "catalogue", "catalogue_markdown", "components_cmd", "docs_markdown"]

#: Arguments ``VideoModel`` passes itself, per registry (a config never sets them).
FILLED_BY_MODEL = {"HEADS": ("in_dim",), "FUSIONS": ("in_dims",)}
_NOISE = re.compile(r"\b(?:collections\.abc|typing|pathlib|torch\.nn\.modules\.module|vkit\.core\.[\w.]+)\.")
_ROLE = re.compile(r":\w+:`(~?)([^`]+)`")  # :class:`X` -> `X` in Markdown
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)(?:\s*\([^)]*\))?:\s*(.*)$")
#: Printed for the arguments VideoModel fills in.
FILLED_NOTE = "filled in by VideoModel"


@dataclass(frozen=True)
class ComponentArg:
    """One constructor argument.

    Attributes:
        name: the argument name (``**overrides`` for a catch-all).
        annotation: its type as written (``""`` when unannotated).
        default: ``repr`` of the default; ``None`` when the argument is required.
        doc: its ``Args:`` entry in the class docstring (``""`` when undocumented).
    """

    name: str
    annotation: str = ""
    default: str | None = None
    doc: str = ""


@dataclass(frozen=True)
class ComponentInfo:
    """One catalogue entry.

    Attributes:
        registry: the registry key (``HEADS``, ``FUSIONS``...).
        name: what ``type=`` takes.
        owner: ``core`` or the plugin that registered it.
        module: where the class is defined.
        summary: the first line of its docstring.
        args: its constructor arguments.
        required: the arguments a config must give (no default, not filled in by the model).
    """

    registry: str
    name: str
    owner: str
    module: str
    summary: str
    args: tuple[ComponentArg, ...] = ()
    required: tuple[str, ...] = ()

    @property
    def signature(self) -> str:
        """``(in_dim: int, num_classes: int, dropout: float = 0.5)``."""
        parts = []
        for arg in self.args:
            text = arg.name + (f": {arg.annotation}" if arg.annotation else "")
            parts.append(text + (f" = {arg.default}" if arg.default is not None else ""))
        return f"({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json``)."""
        return dict(asdict(self), args=[asdict(a) for a in self.args], required=list(self.required),
                    signature=self.signature)


def _summary(obj: Any) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    doc = inspect.cleandoc(doc or inspect.getdoc(obj) or "")
    return doc.splitlines()[0].strip() if doc else ""


def _parse_args_section(doc: str) -> dict[str, str]:
    """``{argument: text}`` of one Google-style docstring's ``Args:`` section (continuation lines joined)."""
    found: dict[str, str] = {}
    inside, current, indent = False, None, 0
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            inside, current = True, None
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            inside = False  # the next section
            continue
        depth = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (current is None or depth <= indent):
            current, indent = match.group(1).lstrip("*"), depth
            found[current] = match.group(2).strip()
        elif current and stripped:
            found[current] = f"{found[current]} {stripped}".strip()
    return found


def _arg_docs(obj: Any) -> dict[str, str]:
    """``{argument: text}`` from the ``Args:`` sections of ``obj``'s docstring and its bases' (the class's own first)."""
    found: dict[str, str] = {}
    for cls in inspect.getmro(obj) if inspect.isclass(obj) else (obj,):
        doc = cls.__dict__.get("__doc__") if inspect.isclass(cls) else getattr(cls, "__doc__", None)
        for name, text in _parse_args_section(doc or "").items():
            found.setdefault(name, text)
    return found


def _args(key: str, obj: Any) -> tuple[tuple[ComponentArg, ...], tuple[str, ...]]:
    try:
        params = list(inspect.signature(obj, eval_str=True).parameters.values())
    except (TypeError, ValueError, NameError):
        try:
            params = list(inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            return (), ()
    docs = _arg_docs(obj)
    filled = FILLED_BY_MODEL.get(key, ())
    args, required = [], []
    for p in params:
        star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        annotation = "" if p.annotation is p.empty else _type_text(p.annotation)
        doc = docs.get(p.name, "")
        if p.name in filled:
            doc = f"({FILLED_NOTE}) {doc}".strip()
        default = None if p.default is p.empty else repr(p.default)
        args.append(ComponentArg(star + p.name, annotation, default, doc))
        if default is None and not star and p.name not in filled:
            required.append(p.name)
    return tuple(args), tuple(required)


def _type_text(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return _NOISE.sub("", text)


def _owner(module: str, plugin_of: dict[tuple[str, str], str], key: str, name: str) -> str:
    if (key, name) in plugin_of:
        return plugin_of[(key, name)]
    return "core" if module.startswith("vkit.") else f"unknown ({module})"


def catalogue(manager: Any, registry: str | None = None) -> list[ComponentInfo]:
    """Every component of vkit's registries (or of ``registry``), core's and the loaded plugins'.

    Calls ``manager.register_components()`` first (imports torch and every
    plugin's components); a plugin whose registration failed contributes
    nothing and shows as ``failed`` in ``vkit plugins list``.

    Args:
        manager: the :class:`vkit.hooks.manager.PluginManager`.
        registry: one registry key, case-insensitive (``heads``); all when ``None``.
    """
    from vkit.registry.registries import REGISTRIES

    keys = list(REGISTRIES)
    if registry is not None:
        wanted = registry.upper()
        if wanted not in REGISTRIES:
            raise ConfigError(f"no registry {registry!r}{did_you_mean(wanted, keys)}; registries: {', '.join(keys)}")
        keys = [wanted]
    manager.register_components()
    plugin_of = {(key, name): info.name for info in manager.plugins()
                 for key, names in info.components.items() for name in names}
    entries = []
    for key in keys:
        for name, obj in sorted(REGISTRIES[key].module_dict.items()):
            module = getattr(obj, "__module__", "") or ""
            args, required = _args(key, obj)
            entries.append(ComponentInfo(key, name, _owner(module, plugin_of, key, name), module, _summary(obj),
                                         args, required))
    return entries


def catalogue_markdown(entries: list[ComponentInfo]) -> str:
    """The catalogue as the Markdown page ``docs/components.md`` (one section per registry)."""
    out = ["# Component catalogue", "",
           "Every component vkit and its built-in plugins register, by registry: what `type=` takes in a config,",
           "who owns it, its constructor arguments and what they mean. Generated by",
           "`python -m vkit.workflows.components --write docs/components.md` (a test fails when this page is",
           "stale); `vkit components [REGISTRY] [--json]` lists the same, plus the components of any",
           "third-party plugin you have installed. Arguments marked *{FILLED_NOTE}*".replace("{FILLED_NOTE}", FILLED_NOTE),
           "are passed by the model assembly; **required** ones must be in your config.", ""]
    by_registry: dict[str, list[ComponentInfo]] = {}
    for entry in entries:
        by_registry.setdefault(entry.registry, []).append(entry)
    for key, items in by_registry.items():
        out += [f"## {key}", ""]
        for c in items:
            out += [f"### `{c.name}` ({c.owner})", "", c.summary or "(no docstring)", "",
                    f"`{c.module}`; required: {', '.join(f'`{r}`' for r in c.required) or 'nothing'}", ""]
            if c.args:
                out += ["| argument | type | default | description |", "|---|---|---|---|"]
                out += [f"| `{a.name}` | {_cell(a.annotation)} | {_default_cell(a, c)} | {_cell(a.doc)} |"
                        for a in c.args]
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def _default_cell(arg: ComponentArg, component: ComponentInfo) -> str:
    if arg.default is not None:
        return f"`{_cell(arg.default)}`"
    return "**required**" if arg.name in component.required else ""


def _cell(text: str | None) -> str:
    text = _ROLE.sub(lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`", text or "")
    return text.replace("|", "\\|").replace("\n", " ")


@click.command("components")
@click.argument("registry", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--markdown", is_flag=True, help="Print the Markdown catalogue (docs/components.md).")
@click.pass_context
def components_cmd(ctx: click.Context, registry: str | None, as_json: bool, markdown: bool) -> None:
    """Every registered component (core and plugins): owner, constructor arguments, summary.

    REGISTRY limits the list to one registry (BACKBONES, FUSIONS, HEADS, MODELS,
    DATASETS, METRICS, TRANSFORMS, COMPRESSORS; any case).
    """
    from vkit.hooks.manager import get_plugin_manager

    obj = ctx.find_root().obj or {}
    manager = get_plugin_manager(extra=obj.get("plugins", ()))
    entries = catalogue(manager, registry)
    for failure in manager.errors:
        if failure.stage == "vkit_register_components":
            click.echo(f"Warning: {failure.message} (its components are not listed)", err=True)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
    elif markdown:
        click.echo(catalogue_markdown(entries), nl=False)
    else:
        from rich.table import Table
        from rich.text import Text

        from vkit.core.console import console

        table = Table(title="components", title_justify="left", show_lines=False)
        for column in ("registry", "name", "owner", "arguments", "description"):
            table.add_column(column, overflow="fold")
        for e in entries:
            table.add_row(*(Text(v) for v in (e.registry, e.name, e.owner, e.signature, e.summary)))  # no markup
        console().print(table)


def _vkit_only(entries: list[ComponentInfo]) -> list[ComponentInfo]:
    """The entries of vkit core and its built-in plugins (what ``docs/components.md`` documents)."""
    return [e for e in entries if e.module.startswith("vkit.")]


def docs_markdown() -> str:
    """``docs/components.md`` as it should read: the catalogue of vkit and its built-in plugins."""
    from vkit.hooks.manager import PluginManager

    return catalogue_markdown(_vkit_only(catalogue(PluginManager(autoload=True))))


if __name__ == "__main__":  # python -m vkit.workflows.components --write docs/components.md
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Print or write docs/components.md.")
    parser.add_argument("--write", metavar="PATH", help="write the page to PATH instead of printing it")
    options = parser.parse_args()
    page = docs_markdown()
    if options.write:
        Path(options.write).write_text(page, encoding="utf-8")
    else:
        print(page, end="")
