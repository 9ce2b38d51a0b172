"""``vkit new-plugin NAME``: write an installable third-party plugin package that works right after ``pip install -e``.

The package mirrors the built-in verticals (``vkit/plugins/medical``): a
``plugin.py`` with the hooks, a task on :func:`vkit.core.pipeline.run_classification`,
a dataset that generates its own clips from a seed, a head, a metric, a
default config, a README and tests written with :mod:`vkit.testing`. The
files come from ``workflows/templates/plugin`` (``*.tmpl``, with
``{{name}}``-style placeholders; ``__module__`` in a path is the package).

Example::

    path = new_plugin("acme", "plugins/")      # plugins/vkit-acme/
    # pip install -e plugins/vkit-acme && vkit run acme-task
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import click

from vkit.registry.errors import ConfigError

__all__ = ["PluginNames", "TEMPLATE_DIR", "new_plugin", "new_plugin_cmd", "plugin_names"]

#: The template of a generated plugin package.
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "plugin"
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_MAX_LEN = 40
#: Names a new plugin may not take: vkit itself and its built-in verticals.
RESERVED = frozenset({"vkit", "medical", "education", "security", "recommendation", "core", "registry",
                      "plugins", "workflows", "testing"})


@dataclass(frozen=True)
class PluginNames:
    """Every spelling of one plugin name the templates use.

    Attributes:
        name: the plugin (entry-point) name, e.g. ``shop-floor``.
        module: the Python package, e.g. ``vkit_shop_floor``.
        camel: the class-name prefix, e.g. ``ShopFloor``.
        task: the task name, e.g. ``shop-floor-task``.
        dist: the distribution (pip) name, e.g. ``vkit-shop-floor``.
    """

    name: str
    module: str
    camel: str
    task: str
    dist: str

    def substitutions(self) -> dict[str, str]:
        """``{"{{name}}": ..., ...}``: what each placeholder becomes."""
        from vkit import __version__

        values = dict(vars(self), vkit_version=__version__)
        return {"{{" + key + "}}": value for key, value in values.items()}


def plugin_names(name: str) -> PluginNames:
    """Validate ``name`` and derive its spellings; a :class:`ConfigError` shows the bad name and the rule.

    Example::

        plugin_names("shop-floor").module   # 'vkit_shop_floor'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > _MAX_LEN:
        raise ConfigError(
            f"plugin name {name!r}: expected lowercase letters and digits, words joined by single '-', "
            f"starting with a letter, at most {_MAX_LEN} characters (e.g. 'acme' or 'shop-floor')")
    if name in RESERVED:
        raise ConfigError(f"plugin name {name!r} is taken by vkit itself; reserved: {', '.join(sorted(RESERVED))}")
    words = name.split("-")
    module = "vkit_" + "_".join(words)
    if not module.isidentifier() or keyword.iskeyword(module):  # pragma: no cover - the regex already ensures it
        raise ConfigError(f"plugin name {name!r} gives the invalid module name {module!r}")
    return PluginNames(name=name, module=module, camel="".join(w.capitalize() for w in words),
                       task=f"{name}-task", dist=f"vkit-{name}")


def _render(text: str, substitutions: dict[str, str]) -> str:
    for placeholder, value in substitutions.items():
        text = text.replace(placeholder, value)
    left = re.search(r"\{\{\s*\w+\s*\}\}", text)
    if left:
        raise ConfigError(f"plugin template: unknown placeholder {left.group(0)!r}; known: {sorted(substitutions)}")
    return text


def render_files(names: PluginNames, template: Path = TEMPLATE_DIR) -> dict[str, str]:
    """``{relative path: text}`` of the package for ``names`` (nothing written)."""
    if not template.is_dir():
        raise ConfigError(f"plugin template folder {str(template)!r} is missing; reinstall vkit")
    subs = names.substitutions()
    files = {}
    for source in sorted(template.rglob("*.tmpl")):
        relative = source.relative_to(template).as_posix()[: -len(".tmpl")]
        relative = relative.replace("__module__", names.module)
        files[relative] = _render(source.read_text(encoding="utf-8"), subs)
    return files


def new_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the plugin package ``vkit-NAME`` into ``directory`` and return its folder.

    Args:
        name: the plugin name (see :func:`plugin_names`); its task is ``NAME-task``.
        directory: the parent folder; ``directory/vkit-NAME`` must not exist or be empty.
    """
    names = plugin_names(name)
    target = Path(directory) / names.dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"new-plugin: {str(target)!r} already exists and is not empty; "
                          "pick another --dir or remove it")
    files = render_files(names)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Parent folder; the package goes into DIR/vkit-NAME.")
def new_plugin_cmd(name: str, directory: str) -> None:
    """Write a new plugin package NAME (task NAME-task) into DIR/vkit-NAME/; it runs right after `pip install -e`.

    Its tests need pytest: `pip install -e 'DIR/vkit-NAME[test]'` installs it.
    """
    target = new_plugin(name, directory)
    names = plugin_names(name)
    click.echo(f"wrote {target}/ (plugin {names.name!r}, package {names.module}, task {names.task!r})")
    click.echo("next:")
    for line in (f"pip install -e '{target}[test]'   # [test] adds pytest", f"python -m pytest {target}/tests -q",
                 f"vkit plugins check {names.name}", f"vkit run {names.task}"):
        click.echo(f"  {line}")
