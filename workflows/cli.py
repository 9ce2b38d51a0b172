"""The ``vkit`` command line (click, rich output).

Heavy libraries (torch, mmengine, MONAI, SQLAlchemy) are imported inside the
commands that need them, so ``vkit --help`` costs little more than Python.
A :class:`~vkit.registry.errors.VkitError` prints as one ``Error: …`` line and
exits 1; ``--debug`` shows the traceback. Plugins add commands through the
``vkit_cli_commands`` hook.
"""
from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import click

from vkit.registry.errors import VkitError


def _manager(ctx: click.Context) -> Any:
    from vkit.hooks.manager import get_plugin_manager

    obj = ctx.find_root().obj or {}
    return get_plugin_manager(extra=obj.get("plugins", ()))


def _console() -> Any:
    from vkit.core.console import console

    return console()  # names (paths, users, errors) print as text: no rich markup


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from vkit.core.console import print_table

    print_table(title, columns, rows)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


class VkitGroup(click.Group):
    """The root group: built-in commands plus those plugins add (loaded only when asked for)."""

    _plugin_cache: dict[str, click.Command] | None = None

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        if self._plugin_cache is None:
            self._plugin_cache = {}
            try:
                from vkit.hooks.manager import get_plugin_manager

                for command in get_plugin_manager(extra=_plugins_from_argv()).cli_commands(reserved=self.commands):
                    if command.name not in self.commands:
                        self._plugin_cache[command.name] = command
            except VkitError as err:  # a broken plugin never takes the CLI down
                click.echo(f"Warning: plugin commands unavailable: {err}", err=True)
        return self._plugin_cache

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._plugin_commands(ctx).get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        from vkit.core import progress

        progress.set_mode("off" if "--json" in args else None)  # --json: stdout carries the JSON alone
        ctx.call_on_close(progress.reset)  # bars closed (an error's before it is printed), the mode follows the terminal
        return super().resolve_command(ctx, args)


def _plugins_from_argv() -> list[str]:
    """``--plugin X`` values from the command line (needed before click has parsed it)."""
    args, found = sys.argv[1:], []
    for i, arg in enumerate(args):
        if arg == "--plugin" and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--plugin="):
            found.append(arg.split("=", 1)[1])
    return found


@click.group(cls=VkitGroup, context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="vkit", prog_name="vkit")
@click.option("--db", "db_url", envvar="VKIT_DB_URL", help="Store URL (default: sqlite:///./vkit.db; env VKIT_DB_URL).")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help="Load a local plugin module (repeatable; env VKIT_PLUGINS).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, plugins: tuple[str, ...], debug: bool) -> None:
    """vkit: plugin-based video-AI toolkit — run a vertical, score an archive, inspect runs."""
    ctx.obj = dict(db_url=db_url, plugins=plugins, debug=debug)


# ----------------------------------------------------------------------------- tasks and runs
@cli.command("tasks")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def tasks_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the tasks the loaded plugins declare."""
    manager = _manager(ctx)
    rows = [dict(name=t.name, plugin=t.plugin, description=t.description) for t in manager.tasks().values()]
    if as_json:
        return _echo_json(rows)
    _table("tasks", ["task", "plugin", "description"], [[r["name"], r["plugin"], r["description"]] for r in rows])


@cli.command("run")
@click.argument("task")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Config file (.py, .yaml or .json).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.epochs=20.")
@click.option("--data", "--datalist", "data", type=click.Path(exists=True),
              help="Your own data: a datalist JSON/CSV or a data folder (sets the task's data key).")
@click.option("--work-dir", type=click.Path(file_okay=False), help="Folder for checkpoints and the report.")
@click.option("--data-root", type=click.Path(file_okay=False), envvar="VKIT_DATA", help="Cache of embedded data sets.")
@click.option("--regenerate", is_flag=True, help="Remake the embedded data set.")
@click.option("--skip-bad", is_flag=True, help="Record unreadable inputs in the store and go on.")
@click.option("--engine", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="Engine of the videos a task scores or embeds (as `vkit score`: resumable, local workers or Ray).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0),
              help="Decoding processes (--engine ray: actors) for those videos.")
@click.option("--resume", type=click.IntRange(1), metavar="RUN",
              help="Continue interrupted run RUN (its config, data and folder) from its last finished epoch.")
@click.pass_context
def run_cmd(ctx: click.Context, task: str, config_file: str | None, overrides: tuple[str, ...], data: str | None,
            work_dir: str | None, data_root: str | None, regenerate: bool, skip_bad: bool, engine: str,
            workers: int, resume: int | None) -> None:
    """Train, evaluate, compress, log and report TASK (see `vkit tasks`)."""
    from vkit.workflows.run import run_task
    from vkit.workflows.scoring.score import ScoreOptions

    obj = ctx.find_root().obj
    console = _console()
    result = run_task(task, config_file=config_file, overrides=overrides, data=data, db_url=obj["db_url"], work_dir=work_dir,
                      data_root=data_root, regenerate=regenerate, skip_bad=skip_bad, plugins=obj["plugins"],
                      echo=lambda line: console.print(line, soft_wrap=True),
                      score_options=ScoreOptions(engine=engine, workers=workers), resume=resume)
    rows = [[k, f"{v:.4f}" if isinstance(v, float) else v] for k, v in sorted(result.metrics.items())]
    rows += [["run id", result.run_id], ["status", result.status], ["database", result.db_url],
             ["work dir", result.work_dir]]
    rows += [[k, v] for k, v in result.summary.items()]
    _table(f"{result.task}: summary", ["", "value"], rows)


@cli.command("predict")
@click.argument("task")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--checkpoint", required=True, metavar="RUN_OR_PATH", help="A run id or a .safetensors file.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--precision", type=click.Choice(("auto", "fp32", "bf16", "int8")), default="fp32", show_default=True,
              help="Model precision; auto: bf16 where the CPU has it natively and it passes the gate on the first cases.")
@click.option("--skip-bad", is_flag=True, help="Leave out inputs that cannot be read (each named with its reason).")
@click.option("--compressed", is_flag=True, help="Run the run's compressed model (the chain's final one) instead.")
@click.option("--stage", default=None, metavar="NAME",
              help="Run this saved compression stage (e.g. ChannelPrune, OnnxExport); implies --compressed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def predict_cmd(ctx: click.Context, task: str, inputs: tuple[str, ...], checkpoint: str, batch_size: int,
                precision: str, skip_bad: bool, compressed: bool, stage: str | None, as_json: bool) -> None:
    """Per-case probabilities of INPUTS (files or one datalist) with a trained TASK model, each labelled with its
    class, and the run's decision rule (e.g. the validation threshold) that picked the class."""
    from vkit.workflows.compressed import compressed_option
    from vkit.workflows.predict import predict_task

    obj = ctx.find_root().obj
    run_id, rows = predict_task(task, checkpoint, inputs, db_url=obj["db_url"], plugins=obj["plugins"],
                                batch_size=batch_size, precision=precision, skip_bad=skip_bad,
                                compressed=compressed_option(compressed, stage))
    if as_json:
        return _echo_json(dict(run_id=run_id, predictions=rows))
    if rows and "value" in rows[0]["values"]:  # a regression model: the predicted value(s)
        return _table(f"{task}: predictions (run {run_id})", ["case", "predicted value"],
                      [[r["item_id"], " ".join(f"{v:.4f}" for v in r["values"]["value"])] for r in rows])
    _table(f"{task}: predictions (run {run_id})", ["case", "decision", "probabilities" if "labelled" in rows[0] else "value"],
           [[r["item_id"], r.get("decided", r["class"]), _outputs(r)] for r in rows])
    _console().print(f"decision: {rows[0]['decision']}", soft_wrap=True)


def _outputs(row: dict[str, Any]) -> str:
    """A predict row's outputs: each probability labelled with its class, or a regression's value(s)."""
    if "labelled" in row:
        return "  ".join(f"{name} {p:.4f}" for name, p in row["labelled"].items())
    return " ".join(f"{v:.4f}" for v in row["values"].get("value", []))


# ----------------------------------------------------------------------------- plugins
@cli.group("plugins")
def plugins_group() -> None:
    """Inspect the loaded plugins."""


@plugins_group.command("list")
@click.option("--components", is_flag=True,
              help="Also register every plugin's components (imports torch) and show them; a failed registration "
                   "shows the plugin as failed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def plugins_list(ctx: click.Context, components: bool, as_json: bool) -> None:
    """Name, version, source, hooks, tasks and status of every plugin.

    Fast: it loads the plugin modules (entry points) and asks for their tasks,
    which imports no torch. ``--components`` also registers every plugin's
    components (importing torch, MONAI, mmaction2), so a plugin whose
    registration fails shows as failed here, not at `vkit run`.
    """
    manager = _manager(ctx)
    registered = manager.register_components() if components else {}
    tasks_by_plugin: dict[str, list[str]] = {}
    for task in manager.tasks().values():
        tasks_by_plugin.setdefault(task.plugin, []).append(task.name)
    rows = []
    for info in manager.plugins():
        row = dict(name=info.name, version=info.version, source=info.source, hooks=list(info.hooks),
                   status=info.status, error=info.error, tasks=tasks_by_plugin.get(info.name, []))
        if components:
            row["components"] = registered.get(info.name, {})
        rows.append(row)
    if as_json:
        return _echo_json(rows)
    columns = ["plugin", "version", "source", "hooks", "tasks", "status"] + (["components"] if components else [])
    table_rows = []
    for r in rows:
        status = r["status"] if not r["error"] else f"{r['status']}: {r['error']}"
        line = [r["name"], r["version"], r["source"], ", ".join(r["hooks"]), ", ".join(r["tasks"]), status]
        if components:
            line.append("; ".join(f"{reg}: {', '.join(names)}" for reg, names in r["components"].items()))
        table_rows.append(line)
    _table("plugins", columns, table_rows)


# ----------------------------------------------------------------------------- database
@cli.group("db")
def db_group() -> None:
    """Create and migrate the SQL store."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Migrate the store to the newest schema: core's tables, then each plugin's own (``vkit_store_schema``)."""
    from vkit.core.store import mask_url, upgrade
    from vkit.core.store.plugin_schema import upgrade_plugin_schema

    url = ctx.find_root().obj["db_url"]
    before, after = upgrade(url)
    where = mask_url(url) if url else "the default store"
    click.echo(f"{where}: revision {before or '(empty)'} -> {after}" if before != after else f"{where}: already at {after}")
    for schema in _manager(ctx).store_schemas():
        before, after = upgrade_plugin_schema(url, schema)
        click.echo(f"{where}: {schema.name} tables: revision {before or '(empty)'} -> {after}" if before != after
                   else f"{where}: {schema.name} tables already at {after}")


@db_group.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the store's URL (password hidden) and schema revision: core's, then each plugin's own tables'
    (``vkit_store_schema``)."""
    from vkit.core.store import current, default_url, mask_url
    from vkit.core.store.migrate import describe_revision
    from vkit.core.store.plugin_schema import describe_plugin_revision, plugin_currents

    url = ctx.find_root().obj["db_url"] or default_url()
    revision = current(url)
    state = describe_revision(revision)
    click.echo(f"{mask_url(url)}  revision {revision or '(no store)'}  ({state})")
    schemas = list(_manager(ctx).store_schemas())
    revisions = plugin_currents(url, schemas) if revision is not None else {s.name: None for s in schemas}
    for schema in schemas:
        found = revisions[schema.name]
        click.echo(f"  {schema.name} tables  revision {found or '(none)'}  ({describe_plugin_revision(schema, found)})")


# ----------------------------------------------------------------------------- scoring and plugin authors
def _attach_commands() -> None:
    """``score``, ``export``, ``runs``, ``report``, ``new-plugin``, ``components``, ``config``, ``plugins check|enable|disable`` (modules importing only click)."""
    from vkit.workflows.components import components_cmd
    from vkit.workflows.config_cmd import config_cmd
    from vkit.workflows.plugin_check import plugins_check_cmd
    from vkit.workflows.plugin_config import plugins_disable_cmd, plugins_enable_cmd
    from vkit.workflows.export import export_cmd
    from vkit.workflows.report import report_cmd
    from vkit.workflows.runs import runs_group
    from vkit.workflows.scaffold import new_plugin_cmd
    from vkit.workflows.scoring.score import score_cmd

    for command in (new_plugin_cmd, score_cmd, export_cmd, runs_group, components_cmd, report_cmd, config_cmd):
        cli.add_command(command)
    cli.add_command(__import__("vkit.workflows.pretrain", fromlist=["pretrain_cmd"]).pretrain_cmd)
    cli.add_command(__import__("vkit.workflows.weights", fromlist=["weights_group"]).weights_group)
    cli.add_command(__import__("vkit.workflows.explain", fromlist=["explain_cmd"]).explain_cmd)
    cli.add_command(__import__("vkit.workflows.serve.cli", fromlist=["serve_cmd"]).serve_cmd)
    cli.add_command(__import__("vkit.workflows.watch.cli", fromlist=["watch_cmd"]).watch_cmd)
    for command in (plugins_check_cmd, plugins_enable_cmd, plugins_disable_cmd):
        plugins_group.add_command(command)


_attach_commands()


# ----------------------------------------------------------------------------- entry point
def _show_plugin_tracebacks() -> None:
    """Under ``--debug`` the plugin manager's DEBUG records (each plugin failure's traceback) and Ray's own
    logging (``vkit.ray``: :mod:`vkit.core.raylog`) reach stderr."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    for name in ("vkit.plugins", "vkit.ray"):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def _blame(err: BaseException) -> str:
    """``plugin "x" (Class.method at FILE:LINE)`` when a loaded plugin's code raised ``err``."""
    try:
        from vkit.hooks.manager import get_plugin_manager

        return get_plugin_manager(extra=_plugins_from_argv()).blame(err)
    except Exception:  # noqa: BLE001 - attribution must never hide the error itself
        return ""


def _masked(text: str) -> str:
    """``text`` with every credential masked (a store URL's password inside any error)."""
    from vkit.core.store.engine import mask_secrets

    return mask_secrets(text)


def _error_line(err: BaseException) -> str:
    """The error as one line; a worker's re-raised error keeps only its original last line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith("Traceback") or "Original Traceback" in line for line in lines):
        return lines[-1].removeprefix(f"{type(err).__name__}: ")
    return " ".join(lines)


def _interrupt_notes(err: BaseException) -> None:
    """The notes an interrupt gathered on its way out (``run 3 interrupted: `vkit run ... --resume 3` continues it``,
    added by :meth:`~vkit.core.store.runs.RunRows.track_run`), shown before ``Aborted.``; click wraps Ctrl-C and
    SIGTERM's interrupt into its ``Abort``, so the interrupt is the abort's cause."""
    seen = err if isinstance(err, KeyboardInterrupt) else (err.__cause__ or err.__context__)
    for note in getattr(seen, "__notes__", ()):
        click.echo(note, err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line per error, traceback only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if debug:
        _show_plugin_tracebacks()
    try:
        code = cli.main(args=args, prog_name="vkit", standalone_mode=False)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort as err:
        _interrupt_notes(err)
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt as err:
        _interrupt_notes(err)
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except VkitError as err:
        if debug:
            click.echo(_masked(traceback.format_exc()), err=True, nl=False)
        click.echo(_masked(f"Error: {err}"), err=True)
        sys.exit(1)
    except Exception as err:  # an unexpected bug: still one line naming the plugin it came from, traceback behind --debug
        if debug:
            click.echo(_masked(traceback.format_exc()), err=True, nl=False)
        where = _blame(err)
        click.echo(_masked(f"Error: {type(err).__name__}: {_error_line(err)}{f' in {where}' if where else ''} "
                           "(run with --debug for the traceback)"), err=True)
        sys.exit(2)
    # Without standalone mode click returns ``ctx.exit(code)``'s code instead of exiting.
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)
