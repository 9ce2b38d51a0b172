"""``vkit config TASK``: print the config ``vkit run TASK`` would use — defaults ← ``--config`` ← ``--set``.

Like mmaction2's and anomalib's ``print_config``: the merge is
:func:`vkit.workflows.config.build_config`, the one ``vkit run`` calls, so the
same unknown keys, did-you-mean hints and component-argument checks apply.
The output is YAML (keys in the task's own order) and can be saved and passed
back as ``--config``; ``--json`` prints JSON for scripts.

Example::

    vkit config medical-diagnosis --set train.epochs=2
    vkit config security-anomaly --config my.yaml --json > merged.json
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click


def merged_config(task_name: str, *, config_file: str | Path | None = None, overrides: Sequence[str] = (),
                  data: str | Path | None = None, plugins: Sequence[str] = ()) -> dict[str, Any]:
    """The merged config of ``task_name`` as plain data (tuples become lists); raises ConfigError on a bad key.

    Key typos are found before any plugin registers components (no torch import);
    a component's arguments are then checked against its registered class, as in ``vkit run``.
    """
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.config import CODE_SUFFIXES, build_config, parse_overrides

    manager = get_plugin_manager(extra=plugins)
    task_cls = manager.get_task(task_name)
    values = parse_overrides(overrides)
    if data is not None:
        values[task_cls.data_key] = os.path.abspath(data)  # as `vkit run --data`: a path, never parsed
    code = config_file is not None and Path(config_file).suffix.lower() in CODE_SUFFIXES
    if not code:  # a data config is cheap to read twice; a Python config (code) runs once only
        build_config(task_cls.default_config, config_file, values, free_keys=task_cls.free_keys, check_args=False)
    manager.register_components(require=task_cls.plugin)
    cfg = build_config(task_cls.default_config, config_file, values, free_keys=task_cls.free_keys)
    return _plain(cfg.to_dict())


def _plain(node: Any) -> Any:
    """``node`` with tuples as lists and every mapping a ``dict``, ready for YAML or JSON."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    if isinstance(node, Path):
        return str(node)
    return node


def to_yaml(config: Mapping[str, Any]) -> str:
    """``config`` as block YAML in its own key order (read back by ``--config``, a data config)."""
    import yaml

    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)


def _sources(task: str, config_file: str | None, overrides: Sequence[str], data: str | None) -> str:
    parts = [f"{task} defaults"]
    if config_file:
        parts.append(str(config_file))
    if data:
        parts.append(f"--data {data}")
    parts += [f"--set {pair}" for pair in overrides]
    return " <- ".join(parts)


@click.command("config")
@click.argument("task")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Config file (.py, .yaml or .json).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.epochs=20.")
@click.option("--data", "--datalist", "data", type=click.Path(exists=True),
              help="Your own data, as `vkit run --data` (sets the task's data key).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def config_cmd(ctx: click.Context, task: str, config_file: str | None, overrides: tuple[str, ...], data: str | None,
               as_json: bool) -> None:
    """Print TASK's merged config (defaults <- --config <- --set), checked as `vkit run` checks it."""
    obj = ctx.find_root().obj or {}
    merged = merged_config(task, config_file=config_file, overrides=overrides, data=data, plugins=obj.get("plugins", ()))
    if as_json:
        click.echo(json.dumps(merged, indent=2, default=str))
        return
    click.echo("# " + _sources(task, config_file, overrides, data).replace("\r", "\\r").replace("\n", "\\n"))
    click.echo(to_yaml(merged), nl=False)


__all__ = ["config_cmd", "merged_config", "to_yaml"]
