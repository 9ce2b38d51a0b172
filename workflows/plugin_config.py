"""``vkit plugins disable/enable NAME``: switch plugins off and on for this user, persistently.

The switch lives in the user config (:func:`vkit.hooks.manager.user_config_path`:
``$VKIT_CONFIG_DIR/config.json``, else ``~/.config/vkit/config.json``) as
``{"plugins": {"disabled": [names]}}``; the plugin manager reads it and does
not import a disabled plugin (``vkit plugins list`` shows it as ``disabled``).

Example::

    set_plugin_disabled("security", True)    # like `vkit plugins disable security`
    set_plugin_disabled("security", False)   # like `vkit plugins enable security`
"""
from __future__ import annotations

import json
import os
from typing import Any

import click

from vkit.registry.errors import ConfigError, did_you_mean

__all__ = ["plugins_disable_cmd", "plugins_enable_cmd", "set_plugin_disabled"]


def set_plugin_disabled(name: str, disabled: bool, tasks: list[str] | None = None) -> bool:
    """Add ``name`` to (or remove it from) ``plugins.disabled`` in the user config; ``False`` if nothing changed.

    ``tasks`` (the plugin's task names) go under ``plugins.disabled_tasks``, so
    ``vkit run TASK`` can name the disabled plugin without importing it.
    Other keys of the file are kept; the file is replaced atomically.
    """
    from vkit.hooks.manager import reset_plugin_manager, user_config_path, user_disabled_plugins

    path = user_config_path()
    names = user_disabled_plugins()  # validates the file
    if (name in names) == disabled:
        return False
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    names = [n for n in names if n != name] + ([name] if disabled else [])
    section = data.setdefault("plugins", {})
    section["disabled"] = names
    recorded = section.setdefault("disabled_tasks", {})
    recorded.pop(name, None)
    if disabled and tasks:
        recorded[name] = sorted(tasks)
    if not recorded:
        section.pop("disabled_tasks")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    reset_plugin_manager()
    return True


def _manager(ctx: click.Context) -> Any:
    from vkit.hooks.manager import get_plugin_manager

    obj = ctx.find_root().obj or {}
    return get_plugin_manager(extra=obj.get("plugins", ()))


@click.command("disable")
@click.argument("name")
@click.pass_context
def plugins_disable_cmd(ctx: click.Context, name: str) -> None:
    """Stop loading plugin NAME (kept in the user config until `vkit plugins enable NAME`)."""
    manager = _manager(ctx)
    known = [info.name for info in manager.plugins()]
    if name not in known:
        raise ConfigError(f"no plugin {name!r}{did_you_mean(name, known)}; discovered: {', '.join(known) or 'none'}")
    from vkit.hooks.manager import user_config_path

    tasks = [task.name for task in manager.tasks().values() if task.plugin == name]
    changed = set_plugin_disabled(name, True, tasks)
    click.echo(f"{'disabled' if changed else 'already disabled:'} {name} ({user_config_path()})")


@click.command("enable")
@click.argument("name")
def plugins_enable_cmd(name: str) -> None:
    """Load plugin NAME again after `vkit plugins disable NAME`."""
    from vkit.hooks.manager import user_config_path, user_disabled_plugins

    disabled = user_disabled_plugins()
    if name not in disabled:
        hint = did_you_mean(name, disabled)
        raise ConfigError(f"plugin {name!r} is not disabled in {user_config_path()}{hint}; "
                          f"disabled there: {', '.join(disabled) or 'none'}")
    set_plugin_disabled(name, False)
    click.echo(f"enabled {name} ({user_config_path()})")
