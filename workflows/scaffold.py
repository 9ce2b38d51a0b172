"""``vkit new-plugin NAME --kind KIND``: write an installable third-party plugin package that works right after ``pip install -e``.

The package mirrors the built-in verticals (``vkit/plugins/medical``): a
``plugin.py`` with the hooks, a task on vkit's lifecycle, a dataset that
generates its own clips from a seed, a default config, a README and tests
written with :mod:`vkit.testing`. The files come from
``workflows/templates/plugin`` (``*.tmpl``, with ``{{name}}``-style
placeholders; ``__module__`` in a path is the package). The ``--kind`` of
target (:data:`KINDS`) picks what the task learns: ``classification`` (the
base template, with its own head and metric), ``ordinal`` (core's
``OrdinalHead``/``OrdinalMetric``) or ``regression`` (core's
``RegressionHead``/``RegressionMetric``, float labels); a kind's files under
``workflows/templates/kinds/KIND`` replace the base files of the same path.

Example::

    path = new_plugin("acme", "plugins/", kind="regression", task="acme-count")   # plugins/vkit-acme/
    # pip install -e plugins/vkit-acme && vkit run acme-count
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import click

from vkit.registry.errors import ConfigError, did_you_mean

__all__ = ["KINDS", "Kind", "PluginNames", "TEMPLATE_DIR", "new_plugin", "new_plugin_cmd", "plugin_names"]

#: The template of a generated plugin package.
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "plugin"
#: Per kind of target, the files that replace the base template's (``KINDS_DIR/<kind>/...``).
KINDS_DIR = Path(__file__).resolve().parent / "templates" / "kinds"
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_TASK = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # the plugin manager's rule for task names
_MAX_LEN = 40
#: Names a new plugin may not take: vkit itself and its built-in verticals.
RESERVED = frozenset({"vkit", "medical", "education", "security", "recommendation", "core", "registry",
                      "plugins", "workflows", "testing"})


@dataclass(frozen=True)
class Kind:
    """One kind of target a new plugin's task can learn, and the words its files use for it.

    Attributes:
        goal: what the task does, after ``vkit run TASK:`` in its module docstring.
        description: the task's one-line description (``vkit tasks``).
        doc: the task class's docstring.
        drop: base template files (paths under ``TEMPLATE_DIR``) this kind does not write.
        layers: folders under ``KINDS_DIR`` whose files replace the base files of the same path, in order.
    """

    goal: str
    description: str
    doc: str
    drop: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()


#: Kinds on core's head and metric: no heads.py/metrics.py, a plugin.py that registers only the dataset.
_CORE_HEAD = dict(drop=("__module__/heads.py.tmpl", "__module__/metrics.py.tmpl"), layers=("core-head",))
#: The kinds ``vkit new-plugin --kind`` writes; ``classification`` is the base template.
KINDS: dict[str, Kind] = {
    "classification": Kind(goal="tell moving squares from static ones",
                           description="Classify clips as static or moving",
                           doc="Binary clip classification: static (0) or moving (1) square"),
    "ordinal": Kind(goal="grade how fast a square moves (still < slow < medium < fast)",
                    description="Grade how fast the square moves: 4 ordered levels",
                    doc="Ordinal levels: how fast the square moves, 0 (still) to 3 (fast)",
                    drop=_CORE_HEAD["drop"], layers=(*_CORE_HEAD["layers"], "ordinal")),
    "regression": Kind(goal="count how many times a square sweeps across the frame, a float target",
                       description="Count the square's sweeps across the frame (regression)",
                       doc="Regression: the number of sweeps across the frame in a clip, a float",
                       drop=_CORE_HEAD["drop"], layers=(*_CORE_HEAD["layers"], "regression")),
}


@dataclass(frozen=True)
class PluginNames:
    """Every spelling of one plugin name the templates use.

    Attributes:
        name: the plugin (entry-point) name, e.g. ``shop-floor``.
        module: the Python package, e.g. ``vkit_shop_floor``.
        camel: the class-name prefix, e.g. ``ShopFloor``.
        task: the task name, e.g. ``shop-floor-task`` (``--task``).
        dist: the distribution (pip) name, e.g. ``vkit-shop-floor``.
        kind: the kind of target (:data:`KINDS`), e.g. ``regression``.
    """

    name: str
    module: str
    camel: str
    task: str
    dist: str
    kind: str = "classification"

    def substitutions(self) -> dict[str, str]:
        """``{"{{name}}": ..., ...}``: what each placeholder becomes."""
        from vkit import __version__

        kind = KINDS[self.kind]
        values = dict(vars(self), vkit_version=__version__, goal=kind.goal, description=kind.description,
                      kind_doc=kind.doc)
        return {"{{" + key + "}}": value for key, value in values.items()}


def plugin_names(name: str, task: str | None = None, kind: str = "classification") -> PluginNames:
    """Validate ``name`` (and ``task``, ``kind``) and derive its spellings; a :class:`ConfigError` shows the bad value
    and the rule.

    Example::

        plugin_names("shop-floor").module                       # 'vkit_shop_floor'
        plugin_names("z", task="rep-count", kind="regression").task   # 'rep-count'
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}{did_you_mean(str(kind), KINDS)}")
    if task is not None and (not isinstance(task, str) or not _TASK.fullmatch(task) or len(task) > 2 * _MAX_LEN):
        raise ConfigError(f"--task {task!r}: expected lowercase letters and digits, words joined by single '-' "
                          f"(e.g. 'rep-count'), at most {2 * _MAX_LEN} characters")
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
                       task=task or f"{name}-task", dist=f"vkit-{name}", kind=kind)


def _render(text: str, substitutions: dict[str, str]) -> str:
    for placeholder, value in substitutions.items():
        text = text.replace(placeholder, value)
    left = re.search(r"\{\{\s*\w+\s*\}\}", text)
    if left:
        raise ConfigError(f"plugin template: unknown placeholder {left.group(0)!r}; known: {sorted(substitutions)}")
    return text


def template_files(kind: str = "classification", template: Path = TEMPLATE_DIR,
                   kinds: Path = KINDS_DIR) -> dict[str, Path]:
    """``{template path: source file}`` of one kind: the base files less the kind's ``drop``, its layers' files over them."""
    if not template.is_dir():
        raise ConfigError(f"plugin template folder {str(template)!r} is missing; reinstall vkit")
    dropped = set(KINDS[kind].drop)
    files = {p.relative_to(template).as_posix(): p for p in sorted(template.rglob("*.tmpl"))}
    files = {k: v for k, v in files.items() if k not in dropped}
    for layer in KINDS[kind].layers:
        folder = kinds / layer
        if not folder.is_dir():
            raise ConfigError(f"plugin template folder {str(folder)!r} (kind {kind!r}) is missing; reinstall vkit")
        files.update({p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.tmpl"))})
    return files


def render_files(names: PluginNames, template: Path = TEMPLATE_DIR) -> dict[str, str]:
    """``{relative path: text}`` of the package for ``names`` (nothing written)."""
    subs = names.substitutions()
    files = {}
    for relative, source in sorted(template_files(names.kind, template).items()):
        relative = relative[: -len(".tmpl")].replace("__module__", names.module)
        files[relative] = _render(source.read_text(encoding="utf-8"), subs)
    return files


def new_plugin(name: str, directory: str | Path = ".", *, kind: str = "classification", task: str | None = None) -> Path:
    """Write the plugin package ``vkit-NAME`` into ``directory`` and return its folder.

    Args:
        name: the plugin name (see :func:`plugin_names`).
        directory: the parent folder; ``directory/vkit-NAME`` must not exist or be empty.
        kind: the kind of target its task learns: ``classification``, ``ordinal`` or ``regression`` (:data:`KINDS`).
        task: the task's name (default ``NAME-task``).
    """
    names = plugin_names(name, task, kind)
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
@click.option("--kind", default="classification", show_default=True, type=click.Choice(list(KINDS)),
              help="What the task learns: classes, ordered levels, or a float value (core's RegressionHead).")
@click.option("--task", "task", default=None, metavar="TASKNAME", help="The task's name (default: NAME-task).")
def new_plugin_cmd(name: str, directory: str, kind: str, task: str | None) -> None:
    """Write a new plugin package NAME (task NAME-task, or --task) into DIR/vkit-NAME/; it runs right after `pip install -e`.

    Its tests need pytest: `pip install -e 'DIR/vkit-NAME[test]'` installs it.
    """
    target = new_plugin(name, directory, kind=kind, task=task)
    names = plugin_names(name, task, kind)
    click.echo(f"wrote {target}/ (plugin {names.name!r}, package {names.module}, task {names.task!r}), kind {kind}")
    click.echo("next:")
    for line in (f"pip install -e '{target}[test]'   # [test] adds pytest", f"python -m pytest {target}/tests -q",
                 f"vkit plugins check {names.name}", f"vkit run {names.task}"):
        click.echo(f"  {line}")
