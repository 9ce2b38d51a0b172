"""vkit's plugin manager: discover, load, validate and call plugins, one plugin's faults never hiding another's.

Plugins come from the ``vkit.plugins`` entry-point group (the built-in
verticals too), from ``--plugin module.path`` (``extra=``) and from the
``VKIT_PLUGINS`` environment variable (comma-separated module paths).
``VKIT_DISABLE_PLUGINS`` (comma-separated names), ``disabled=`` or the
user config (``vkit plugins disable NAME`` writes ``plugins.disabled`` in
:func:`user_config_path`) switch plugins off without importing them;
``VKIT_NO_AUTOLOAD=1`` (or
``autoload=False``) skips entry points.

A plugin that fails to import, does not match the hookspecs, raises in a hook,
returns the wrong type or clashes with another plugin is recorded in
:attr:`PluginManager.errors` (one line naming the plugin, plus the formatted
traceback) and left out; every other plugin keeps working.

Building the manager, listing plugins and calling ``vkit_tasks`` import
neither torch nor mmengine; :meth:`PluginManager.register_components` does.

Example::

    from vkit.hooks.manager import get_plugin_manager

    manager = get_plugin_manager(extra=["myplugin"])
    task_cls = manager.get_task("demo-classify")
    manager.register_components()
    for failure in manager.errors:
        print(failure)            # Error importing plugin "x": ModuleNotFoundError: ...
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from vkit.hooks import hookspecs
from vkit.registry.errors import ConfigError, PluginError, RegistryError, did_you_mean
from vkit.hooks.hookdocs import signature_text

if TYPE_CHECKING:  # pragma: no cover
    import click
    from mmengine.registry import Registry

    from vkit.core.task import Task

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "reset_plugin_manager",
    "user_config_path",
    "user_disabled_plugins",
    "user_disabled_tasks",
]

#: The entry-point group a package declares its plugin in.
ENTRY_POINT_GROUP = "vkit.plugins"
ENV_PLUGINS = "VKIT_PLUGINS"
ENV_DISABLE = "VKIT_DISABLE_PLUGINS"
ENV_NO_AUTOLOAD = "VKIT_NO_AUTOLOAD"
ENV_CONFIG_DIR = "VKIT_CONFIG_DIR"

_TASK_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_ALREADY_REGISTERED = re.compile(r"^(?P<name>.+) is already registered in (?P<registry>.+) at (?P<module>\S+)$")
_HOOK_NAMES = tuple(name for name in vars(hookspecs) if name.startswith("vkit_"))
#: Hooks whose results claim names (tasks, commands, components): taken in load order, so a plugin loaded later
#: never displaces one loaded earlier; ``tryfirst``/``trylast`` on them are refused, as wrappers are. The other
#: hooks are called in pluggy's own order (:meth:`PluginManager._impls`).
_CLAIM_HOOKS = ("vkit_register_components", "vkit_tasks", "vkit_cli_commands", "vkit_store_schema")

log = logging.getLogger("vkit.plugins")
#: Top-level packages whose frames never locate a plugin's fault (with the standard library and vkit's layers).
_TEXT_FRAME = re.compile(r'File "([^"]+)", line (\d+), in ([\w.<>]+)')
_LIBRARIES = frozenset({"pluggy", "click", "mmengine", "mmaction", "mmcv", "torch", "monai", "numpy", "importlib_metadata"})


@dataclass(frozen=True)
class PluginFailure:
    """One plugin fault: ``message`` is the one line the CLI prints, ``traceback`` what ``--debug`` adds.

    Attributes:
        plugin: the plugin's name.
        stage: ``"import"``, ``"validate"`` or the hook that failed (``"vkit_tasks"``...).
        message: one line naming the plugin, what went wrong and the bad value.
        traceback: the formatted original traceback (empty when there is none).
    """

    plugin: str
    stage: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return self.message

    def as_error(self) -> PluginError:
        """This failure as a raisable :class:`PluginError`."""
        return PluginError(self.message)


@dataclass(frozen=True)
class PluginInfo:
    """What ``vkit plugins list`` shows for one plugin.

    Attributes:
        name: the entry-point name, or the module path for ``--plugin``/``VKIT_PLUGINS``.
        version: the distribution's version, else the module's ``__version__``, else ``"unknown"``.
        source: ``"entry point <dist>"``, ``"--plugin"`` or ``"VKIT_PLUGINS"``.
        module: the module (``module:attr``) the plugin was loaded from.
        hooks: the ``vkit_*`` hooks it implements.
        status: ``"ok"``, ``"failed"`` (see ``error``) or ``"disabled"``.
        error: the first failure's one-line message (``"(+N more)"`` when there are more).
        traceback: that failure's formatted traceback.
        components: ``{registry: [names]}`` once :meth:`PluginManager.register_components` ran.
    """

    name: str
    version: str
    source: str
    module: str
    hooks: tuple[str, ...]
    status: str
    error: str = ""
    traceback: str = ""
    components: Mapping[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json``)."""
        return dict(name=self.name, version=self.version, source=self.source, module=self.module,
                    hooks=list(self.hooks), status=self.status, error=self.error,
                    traceback=self.traceback, components={k: list(v) for k, v in self.components.items()})


@dataclass
class _Entry:
    """The manager's mutable record of one plugin."""

    name: str
    source: str
    module: str
    version: str | None = None
    obj: Any = None
    disabled: bool = False
    hooks: tuple[str, ...] = ()
    failures: list[PluginFailure] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)

    def info(self) -> PluginInfo:
        first = self.failures[0] if self.failures else None
        error = first.message if first else ""
        if len(self.failures) > 1:
            error += f" (+{len(self.failures) - 1} more)"
        status = "disabled" if self.disabled else "failed" if first else "ok"
        return PluginInfo(self.name, self.version or "unknown", self.source, self.module, self.hooks, status,
                          error, first.traceback if first else "", dict(self.components))


@dataclass(frozen=True)
class _Candidate:
    """A plugin found by discovery, not imported yet."""

    name: str
    source: str
    module: str
    load: Callable[[], Any]
    version: str | None = None


class PluginManager:
    """Discovers and loads vkit plugins and calls their hooks one implementation at a time.

    Args:
        extra: module paths to load as plugins (the CLI's ``--plugin``), ``module`` or ``module:attr``.
        disabled: plugin names (or module paths) not to load, added to ``VKIT_DISABLE_PLUGINS``.
        autoload: load the ``vkit.plugins`` entry points; ``None`` reads ``VKIT_NO_AUTOLOAD``.

    Example::

        manager = PluginManager(extra=["myplugin"], autoload=False)
        print([info.name for info in manager.plugins()], manager.errors)
    """

    def __init__(self, *, extra: Sequence[str] = (), disabled: Sequence[str] | None = None,
                 autoload: bool | None = None) -> None:
        if isinstance(extra, str) or (isinstance(disabled, str)):
            raise ConfigError(f"plugin manager: extra/disabled must be sequences of names, got {extra!r}/{disabled!r}")
        self.pm = pluggy.PluginManager("vkit")
        self.pm.add_hookspecs(hookspecs)
        self._entries: list[_Entry] = []
        self._failures: list[PluginFailure] = []
        self._tasks: dict[str, type[Task]] | None = None
        self._commands: list[tuple[_Entry, click.Command]] | None = None
        off = set(_env_list(ENV_DISABLE)) | set(user_disabled_plugins()) | set(disabled or ())
        autoload = _autoload_from_env() if autoload is None else autoload
        for candidate in _discover(extra, autoload):
            if candidate.name in off or candidate.module in off:
                self.pm.set_blocked(candidate.name)
                self._entries.append(_Entry(candidate.name, candidate.source, candidate.module,
                                            candidate.version, disabled=True))
            else:
                self._load(candidate)

    # ------------------------------------------------------------------ loading
    def register(self, plugin: object, name: str, *, source: str = "api", module: str = "") -> bool:
        """Register an already-imported plugin object; return ``False`` (and record why) if it is rejected.

        Args:
            plugin: a module, class or object with ``@hookimpl`` functions.
            name: its plugin name (unique in this manager).
            source: shown in ``plugins list``.
            module: shown in ``plugins list`` (defaults to the object's ``__name__``).
        """
        entry = _Entry(name, source, module or getattr(plugin, "__name__", repr(plugin)))
        self._entries.append(entry)
        return self._add(entry, plugin)

    def _load(self, candidate: _Candidate) -> None:
        if any(e.name == candidate.name for e in self._entries):
            return  # the same module given twice (e.g. --plugin and VKIT_PLUGINS)
        entry = _Entry(candidate.name, candidate.source, candidate.module, candidate.version)
        self._entries.append(entry)
        try:
            plugin = candidate.load()
        except Exception as err:
            self._fail(entry, "import", f'Error importing plugin "{entry.name}": {_one_line(err)}{_where(err)}', err)
            return
        if self.pm.is_registered(plugin):
            self._entries.remove(entry)  # already loaded under another name (entry point and --plugin)
            return
        self._add(entry, plugin)

    def _add(self, entry: _Entry, plugin: object) -> bool:
        entry.obj = plugin
        entry.hooks = tuple(sorted(a for a in dir(plugin) if self.pm.parse_hookimpl_opts(plugin, a)))
        entry.version = entry.version or getattr(plugin, "__version__", None)
        try:
            self.pm.register(plugin, name=entry.name)
        except pluggy.PluginValidationError as err:
            return self._reject(entry, _signature_problem(str(err)), err)
        except ValueError as err:  # name taken by another plugin
            return self._reject(entry, _one_line(err), err)
        problem = self._hook_problem(plugin)
        if problem:
            self.pm.unregister(plugin)
            return self._reject(entry, problem, None)
        return True

    def _hook_problem(self, plugin: object) -> str | None:
        """What :meth:`pluggy.PluginManager.check_pending` would reject for ``plugin``, as one line."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            impl = next(i for i in caller.get_hookimpls() if i.plugin is plugin)
            if not caller.has_spec() and not impl.optionalhook:
                return (f"unknown hook {caller.name!r}{did_you_mean(caller.name, _HOOK_NAMES)}; "
                        f"vkit hooks: {', '.join(_HOOK_NAMES)}")
            if impl.wrapper or impl.hookwrapper:
                return f"hook {caller.name!r} is a wrapper; vkit hooks are plain functions"
            if caller.name in _CLAIM_HOOKS and (impl.tryfirst or impl.trylast):
                return (f"hook {caller.name!r} is marked {'tryfirst' if impl.tryfirst else 'trylast'}; vkit takes "
                        f"tasks, commands and components in load order (a plugin loaded later never displaces an "
                        f"earlier one's names), so drop the mark")
        self.pm.check_pending()  # every other plugin passed this already: a failure here is a vkit bug
        return None

    def _reject(self, entry: _Entry, problem: str, err: BaseException | None) -> bool:
        self._fail(entry, "validate", f'plugin "{entry.name}" does not match the vkit hookspecs: {problem}', err)
        return False

    def _fail(self, entry: _Entry, stage: str, message: str, err: BaseException | None) -> None:
        if any(f.message == message for f in entry.failures):
            return
        tb = "".join(traceback.format_exception(err)) if err is not None else ""
        self._record(entry, PluginFailure(entry.name, stage, message, tb))

    def _record(self, entry: _Entry, failure: PluginFailure) -> None:
        if failure in entry.failures:
            return
        entry.failures.append(failure)
        self._failures.append(failure)
        log.warning("%s", failure.message)
        if failure.traceback:
            log.debug("%s", failure.traceback)

    def _entry(self, name: str) -> _Entry:
        return next(e for e in self._entries if e.name == name and not e.disabled)

    # ------------------------------------------------------------------ calling
    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        """``hook``'s implementations in the order vkit calls them, one by one.

        A claim hook (:data:`_CLAIM_HOOKS`, never ``tryfirst``/``trylast``) in load
        order; any other in the order ``pm.hook.<hook>(...)`` would call it:
        pluggy's ``_multicall`` walks ``get_hookimpls()`` from the end, so
        ``tryfirst`` ones come first, then plain ones from the latest registered,
        then ``trylast`` ones.
        """
        impls = getattr(self.pm.hook, hook).get_hookimpls()  # plain ones in registration (= load) order
        return impls if hook in _CLAIM_HOOKS else impls[::-1]

    def _call(self, hook: str, **kwargs: Any) -> list[tuple[_Entry, Any]]:
        """Call every implementation of ``hook`` (in :meth:`_impls` order); a raising one is recorded and skipped."""
        return list(self._each(hook, **kwargs))

    def _each(self, hook: str, **kwargs: Any) -> Iterator[tuple[_Entry, Any]]:
        """:meth:`_call`, one implementation at a time (a caller may stop at the first answer)."""
        for impl in self._impls(hook):
            entry = self._entry(impl.plugin_name)
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception as err:
                self._fail(entry, hook, f'plugin "{entry.name}" raised in {hook}: {_one_line(err)}{_where(err)}', err)
                continue
            yield entry, result

    def _items(self, entry: _Entry, hook: str, result: Any, problem: Callable[[Any], str | None]) -> list[Any]:
        """The items of a list-returning hook's ``result`` that pass ``problem``; each bad one is recorded."""
        if result is None:
            return []
        if not isinstance(result, list | tuple):
            result, bad = [], f"returned {_short(result)}, expected a list or None"
            self._fail(entry, hook, f'plugin "{entry.name}" returned a bad value from {hook}: {bad}', None)
        good = []
        for item in result:
            why = problem(item)
            if why:
                self._fail(entry, hook, f'plugin "{entry.name}" returned a bad value from {hook}: {why}', None)
            else:
                good.append(item)
        return good

    def _clash(self, owners: dict[str, str], kind: str, name: str, entry: _Entry, hook: str) -> bool:
        """Claim ``name`` for ``entry``; on a clash record it (naming both plugins) and return ``True``."""
        owner = owners.setdefault(name, entry.name)
        if owner == entry.name:
            return False
        self._fail(entry, hook, f'plugin "{entry.name}" declares {kind} {name!r}, already declared by {owner}; '
                                f"rename it or disable one plugin ({ENV_DISABLE}={entry.name})", None)
        return True

    # ------------------------------------------------------------------ public API
    @property
    def errors(self) -> list[PluginFailure]:
        """Every plugin fault recorded so far, in order."""
        return list(self._failures)

    def raise_for_errors(self) -> None:
        """Raise one :class:`PluginError` listing every recorded fault (for ``vkit plugins check``)."""
        if self._failures:
            lines = "; ".join(f.message for f in self._failures)
            raise PluginError(f"{len(self._failures)} plugin error(s): {lines}")

    def plugins(self) -> list[PluginInfo]:
        """Every discovered plugin (loaded, failed or disabled), in load order."""
        return [entry.info() for entry in self._entries]

    def versions(self) -> dict[str, str]:
        """``{plugin: version}`` of the loaded plugins (stored with each run)."""
        return {e.name: e.version or "unknown" for e in self._entries
                if e.obj is not None and self.pm.is_registered(e.obj)}

    def tasks(self) -> dict[str, type[Task]]:
        """``{name: Task subclass}`` over all plugins; each class's ``plugin`` is set to its plugin's name."""
        if self._tasks is None:
            from vkit.core.task import Task  # light: only vkit.registry.errors

            self._tasks, owners = {}, {}
            for entry, result in self._call("vkit_tasks"):
                for cls in self._items(entry, "vkit_tasks", result, lambda obj: _task_problem(obj, Task)):
                    if not self._clash(owners, "task", cls.name, entry, "vkit_tasks"):
                        cls.plugin = entry.name
                        self._tasks[cls.name] = cls
        return dict(self._tasks)

    def get_task(self, name: str) -> type[Task]:
        """The task class called ``name``; a :class:`ConfigError` with a did-you-mean if there is none."""
        tasks = self.tasks()
        if name in tasks:
            return tasks[name]
        disabled = [e.name for e in self._entries if e.disabled]
        for plugin in disabled:
            if name in user_disabled_tasks().get(plugin, ()):
                raise ConfigError(f"task {name!r} belongs to plugin {plugin!r}, which is disabled "
                                  f"({_how_to_enable(plugin)})")
        failed = sorted({f.plugin for f in self._failures})
        hint = f"; plugins that failed to load: {', '.join(failed)} (see `vkit plugins list`)" if failed else ""
        if disabled:
            hint += (f"; disabled plugins (their tasks are not loaded): "
                     f"{', '.join(f'{p} ({_how_to_enable(p)})' for p in disabled)}")
        raise ConfigError(f"unknown task {name!r}{did_you_mean(name, tasks)}; "
                          f"available: {', '.join(sorted(tasks)) or 'none'}{hint}")

    def cli_commands(self, reserved: Iterable[str] = ()) -> list[click.Command]:
        """The plugins' ``click`` commands; one whose name clashes (with another plugin's or ``reserved``) is left out.

        Args:
            reserved: command names already taken (the CLI's built-ins).
        """
        if self._commands is None:
            import click

            self._commands, owners = [], {}
            for entry, result in self._call("vkit_cli_commands"):
                for command in self._items(entry, "vkit_cli_commands", result, _command_problem(click.Command)):
                    if not self._clash(owners, "command", command.name, entry, "vkit_cli_commands"):
                        self._commands.append((entry, command))
        owners = {name: "vkit (a built-in command)" for name in reserved}
        return [cmd for entry, cmd in self._commands if not self._clash(owners, "command", cmd.name, entry,
                                                                          "vkit_cli_commands")]

    def register_components(self, registries: Mapping[str, Registry] | None = None, *,
                            require: str | None = None) -> dict[str, dict[str, list[str]]]:
        """Call every ``vkit_register_components`` once per process; ``{plugin: {registry: [names]}}``.

        A plugin that raises, or registers a name another plugin (or vkit core)
        already holds, has its registrations rolled back and is recorded.

        Args:
            registries: the registries to fill; vkit's :data:`~vkit.registry.registries.REGISTRIES` by default.
            require: a plugin whose components the caller needs (the task's plugin before a run):
                its registration failure is raised as a :class:`PluginError` instead of only recorded.

        Example::

            manager.register_components(require=task_cls.plugin)   # before building the task's model
        """
        if registries is None:
            from vkit.registry.registries import REGISTRIES as registries
        ledger = _ledger(registries)
        registered: dict[str, dict[str, list[str]]] = {}
        for impl in self._impls("vkit_register_components"):
            entry = self._entry(impl.plugin_name)
            outcome = ledger.run(entry.name, impl)
            if isinstance(outcome, PluginFailure):
                self._record(entry, outcome)
            else:
                entry.components = registered[entry.name] = outcome
        failed = [f for f in self._failures if f.plugin == require and f.stage == "vkit_register_components"]
        if failed:
            raise PluginError(f"{failed[0].message}; its tasks cannot run until this is fixed "
                              f"(`vkit plugins check {require}`)")
        return registered

    def blame(self, err: BaseException) -> str:
        """Where in a loaded plugin's code ``err`` was raised, as ``plugin "x" (Class.method at FILE:LINE)``; ``""`` if not.

        Looks at the traceback's innermost frame in a plugin's package, else (an
        error re-raised from a DataLoader worker carries its traceback as text)
        at the last ``File "...", line N, in f`` of the message inside one.

        Example::

            except Exception as err:
                print(f"Error: {type(err).__name__}: {err} in {manager.blame(err)}")
        """
        packages = {e.name: _package(e.obj) for e in self._entries if e.obj is not None}
        packages = {name: pkg for name, pkg in packages.items() if pkg[0]}
        found = ""
        tb = err.__traceback__
        while tb is not None:
            module = str(tb.tb_frame.f_globals.get("__name__", ""))
            for name, (pkg, _) in packages.items():
                if module == pkg or module.startswith(pkg + "."):
                    code = tb.tb_frame.f_code
                    found = f'plugin "{name}" ({code.co_qualname} at {code.co_filename}:{tb.tb_lineno})'
            tb = tb.tb_next
        if found:
            return found
        for path, line, func in reversed(_TEXT_FRAME.findall(str(err))):
            for name, (_, folder) in packages.items():
                if folder and (path == folder or path.startswith(folder + os.sep)):
                    return f'plugin "{name}" ({func} at {path}:{line})'
        return ""

    def notify_run_finished(self, run: dict[str, Any]) -> None:
        """Call ``vkit_run_finished(run)`` on every plugin; faults are recorded, never raised."""
        self._call("vkit_run_finished", run=run)

    def notify_video_scored(self, video: dict[str, Any]) -> None:
        """Call ``vkit_video_scored(video)`` on every plugin; faults are recorded, never raised."""
        self._call("vkit_video_scored", video=video)

    def report_sections(self, run: dict[str, Any], store: Any) -> list[Any]:
        """Every plugin's ``vkit_report_sections(run, store)``, concatenated; faults (and items without a
        ``title``) are recorded, never raised."""
        sections = []
        for entry, result in self._call("vkit_report_sections", run=run, store=store):
            sections += self._items(entry, "vkit_report_sections", result, _section_problem)
        return sections

    def store_schemas(self) -> list[Any]:
        """Every plugin's ``vkit_store_schema()`` (a :class:`~vkit.core.store.plugin_schema.PluginSchema`), in load
        order; a fault, a bad value or a name another plugin took is recorded, never raised."""
        from vkit.core.store.plugin_schema import PluginSchema

        schemas: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for entry, result in self._call("vkit_store_schema"):
            if result is None:
                continue
            if not isinstance(result, PluginSchema):
                self._fail(entry, "vkit_store_schema", f'plugin "{entry.name}" returned a bad value from '
                           f"vkit_store_schema: {_short(result)} is not a vkit.core.store.plugin_schema.PluginSchema", None)
            elif not self._clash(owners, "store schema", result.name, entry, "vkit_store_schema"):
                schemas[result.name] = result
        return list(schemas.values())

    def preview(self, path: Path) -> list[Any] | None:
        """The frames of the first plugin whose ``vkit_preview(path)`` gives some (in hook order), or ``None``.

        A plugin that raises or returns something other than a list of 2-D/3-D arrays is recorded and the next asked.
        """
        for entry, result in self._each("vkit_preview", path=Path(path)):
            frames = self._items(entry, "vkit_preview", result, _frame_problem)
            if frames:
                return frames
        return None


# ---------------------------------------------------------------------- components
class _ComponentLedger:
    """Process-wide record of which plugin registered which name into one set of registries."""

    def __init__(self, registries: Mapping[str, Registry]) -> None:
        self.registries = dict(registries)
        self.by_registry_name = {reg.name: key for key, reg in self.registries.items()}
        self.owner: dict[tuple[str, str], str] = {}
        self.done: dict[int, tuple[Any, dict[str, list[str]] | PluginFailure]] = {}

    def matches(self, registries: Mapping[str, Registry]) -> bool:
        return registries.keys() == self.registries.keys() and all(
            registries[k] is self.registries[k] for k in registries)

    def run(self, plugin: str, impl: pluggy.HookImpl) -> dict[str, list[str]] | PluginFailure:
        """The outcome of ``impl`` (calling it the first time this process sees that plugin object)."""
        if id(impl.plugin) not in self.done:
            self._import_core()
            self.done[id(impl.plugin)] = (impl.plugin, self._register(plugin, impl))
        return self.done[id(impl.plugin)][1]

    def _import_core(self) -> None:
        """Import vkit core's own components first, so a plugin clashing with one is the one reported."""
        for key, registry in self.registries.items():
            try:
                registry.import_from_location()
            except ModuleNotFoundError as err:
                if err.name not in getattr(registry, "_locations", ()):
                    raise RegistryError(f"{key}: importing {registry.name!r} components failed: {err}") from err
                log.debug("%s: location %s does not exist yet", key, err.name)

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        return {key: dict(reg.module_dict) for key, reg in self.registries.items()}

    def _register(self, plugin: str, impl: pluggy.HookImpl) -> dict[str, list[str]] | PluginFailure:
        before, error = self._snapshot(), None
        try:
            impl.function(*(_RegistryMap(self.registries) for _ in impl.argnames))
        except Exception as err:
            error = err
        after = self._snapshot()
        added = {k: sorted(set(after[k]) - set(before[k])) for k in after}
        overridden = [(k, n) for k in after for n in before[k] if after[k][n] is not before[k][n]]
        problem = (self._override_problem(plugin, overridden, before)
                   or (error is not None and self._error_problem(plugin, error, before)))
        if problem:
            for key, registry in self.registries.items():
                registry.module_dict.clear()
                registry.module_dict.update(before[key])
            tb = "".join(traceback.format_exception(error)) if error is not None else ""
            return PluginFailure(plugin, "vkit_register_components", problem, tb)
        for key, names in added.items():
            self.owner.update({(key, name): plugin for name in names})
        return {key: names for key, names in added.items() if names}

    def _holder(self, key: str, name: str, module: str) -> str:
        """Who held ``name`` before: a plugin (from this ledger), vkit core, or the module that registered it."""
        owner = self.owner.get((key, name))
        if owner:
            return f'plugin "{owner}"'
        return f"vkit core ({module})" if module.startswith("vkit.") else f"module {module} (not through a plugin hook)"

    def _override_problem(self, plugin: str, overridden: list[tuple[str, str]],
                          before: dict[str, dict[str, Any]]) -> str | None:
        if not overridden:
            return None
        key, name = overridden[0]
        holder = self._holder(key, name, getattr(before[key][name], "__module__", "?"))
        return (f'plugin "{plugin}" overrode {name!r} in {key} (force=True), registered by {holder}; '
                f"rename the component or disable one plugin ({ENV_DISABLE}={plugin})")

    def _error_problem(self, plugin: str, error: Exception, before: dict[str, dict[str, Any]]) -> str:
        match = isinstance(error, KeyError) and _ALREADY_REGISTERED.match(str(error.args[0]) if error.args else "")
        if not match or match["registry"] not in self.by_registry_name:
            return f'plugin "{plugin}" raised in vkit_register_components: {_one_line(error)}{_where(error)}'
        key, name = self.by_registry_name[match["registry"]], match["name"]
        if name not in before[key]:  # the plugin's own earlier registration in this same call
            return (f'plugin "{plugin}" registers {name!r} in {key} twice (module {match["module"]}){_where(error)}; '
                    f"register each component once, under a unique name")
        return (f'plugin "{plugin}" cannot register {name!r} in {key}: already registered by '
                f'{self._holder(key, name, match["module"])}; '
                f"rename the component or disable one plugin ({ENV_DISABLE}={plugin})")


class _RegistryMap(dict):
    """The ``registries`` argument of ``vkit_register_components``: a miss names the closest registry."""

    def __missing__(self, key: str) -> Any:
        raise RegistryError(f"no registry {key!r}{did_you_mean(str(key), self)}; registries: {', '.join(self)}")


_LEDGERS: list[_ComponentLedger] = []


def _ledger(registries: Mapping[str, Registry]) -> _ComponentLedger:
    for ledger in _LEDGERS:
        if ledger.matches(registries):
            return ledger
    _LEDGERS.append(_ComponentLedger(registries))
    return _LEDGERS[-1]


# ---------------------------------------------------------------------- discovery
def _env_list(var: str) -> list[str]:
    return [item.strip() for item in os.environ.get(var, "").split(",") if item.strip()]


def user_config_path() -> Path:
    """The user config file: ``$VKIT_CONFIG_DIR/config.json``, else ``~/.config/vkit/config.json``."""
    folder = os.environ.get(ENV_CONFIG_DIR, "").strip()
    return (Path(folder) if folder else Path.home() / ".config" / "vkit") / "config.json"


def user_disabled_plugins() -> list[str]:
    """The names under ``plugins.disabled`` in :func:`user_config_path` (``[]`` when the file is absent).

    Example::

        # ~/.config/vkit/config.json: {"plugins": {"disabled": ["security"]}}
        user_disabled_plugins()   # ['security']
    """
    path = user_config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise ConfigError(f"user config {str(path)!r} cannot be read: {err}; fix or delete it") from err
    section = data.get("plugins", {}) if isinstance(data, dict) else None
    names = section.get("disabled", []) if isinstance(section, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"user config {str(path)!r}: plugins.disabled must be a list of plugin names, got {names!r}")
    return names


def user_disabled_tasks() -> dict[str, list[str]]:
    """``{plugin: [task names]}`` that ``vkit plugins disable`` recorded under ``plugins.disabled_tasks``.

    Lets ``vkit run TASK`` say which disabled plugin declares TASK without importing it.
    """
    try:
        data = json.loads(user_config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    section = data.get("plugins", {}) if isinstance(data, dict) else {}
    tasks = section.get("disabled_tasks", {}) if isinstance(section, dict) else {}
    return {k: [t for t in v if isinstance(t, str)] for k, v in tasks.items() if isinstance(v, list)} \
        if isinstance(tasks, dict) else {}


def _how_to_enable(plugin: str) -> str:
    if plugin in _env_list(ENV_DISABLE):
        return f"remove it from {ENV_DISABLE}"
    return f"`vkit plugins enable {plugin}`"


def _autoload_from_env() -> bool:
    raw = os.environ.get(ENV_NO_AUTOLOAD, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return True
    if raw in ("1", "true", "yes", "on"):
        return False
    raise ConfigError(f"{ENV_NO_AUTOLOAD}={raw!r}: expected 1/true/yes/on (autoload off) or 0/false/no/off/empty")


def _discover(extra: Sequence[str], autoload: bool) -> list[_Candidate]:
    found = _entry_point_candidates() if autoload else []
    found += [_module_candidate(path, "--plugin") for path in extra]
    found += [_module_candidate(path, ENV_PLUGINS) for path in _env_list(ENV_PLUGINS)]
    return found


def _entry_point_candidates() -> list[_Candidate]:
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    found = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        first = seen.setdefault(ep.name, ep)
        if first is not ep and first.value == ep.value:
            continue  # one distribution seen twice on sys.path
        dist = ep.dist
        source = f"entry point {dist.name}" if dist is not None else "entry point"
        load = ep.load if first is ep else _duplicate_loader(ep, first)
        found.append(_Candidate(ep.name, source, ep.value, load, dist.version if dist is not None else None))
    return found


def _duplicate_loader(ep: importlib.metadata.EntryPoint, first: importlib.metadata.EntryPoint) -> Callable[[], Any]:
    def load() -> Any:
        raise PluginError(f"entry point {ep.name!r} = {ep.value!r} clashes with {ep.name!r} = {first.value!r} "
                          f"in group {ENTRY_POINT_GROUP!r}; only the first is loaded")
    return load


def _module_candidate(path: str, source: str) -> _Candidate:
    def load() -> Any:
        module_name, _, attr = path.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr) if attr else module
    return _Candidate(path, source, path, load)


# ---------------------------------------------------------------------- checks and messages
def _task_problem(obj: Any, base: type) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, base)):
        return f"{_short(obj)} is not a subclass of vkit.core.task.Task"
    where = f"task class {obj.__module__}.{obj.__qualname__}"
    if not isinstance(obj.name, str) or not _TASK_NAME.fullmatch(obj.name):
        return f"{where} has name {obj.name!r}; expected lowercase words joined by '-', e.g. 'demo-classify'"
    if not isinstance(obj.description, str) or not obj.description.strip():
        return f"{where} ({obj.name!r}) has description {obj.description!r}; expected a non-empty line"
    if not isinstance(obj.default_config, dict):
        return f"{where} ({obj.name!r}) has default_config {_short(obj.default_config)}; expected a dict"
    from vkit.core.capabilities import task_problem

    why = task_problem(obj, base)  # a declared capability must be backed by its method
    return f"{where} ({obj.name!r}) {why}" if why else None


def _command_problem(command_type: type) -> Callable[[Any], str | None]:
    def problem(obj: Any) -> str | None:
        if not isinstance(obj, command_type):
            return f"{_short(obj)} is not a click.Command (decorate it with @click.command())"
        return None if obj.name else f"command {obj!r} has no name"
    return problem


def _section_problem(obj: Any) -> str | None:
    """Why ``obj`` is not a report section (``ReportSection``: a ``title`` and any of table/image/text), or ``None``."""
    if not isinstance(getattr(obj, "title", None), str) or not obj.title:
        return f"{_short(obj)} is not a ReportSection (from vkit.core.evaluation import ReportSection)"
    return None


def _frame_problem(obj: Any) -> str | None:
    """Why ``obj`` is not a preview frame (a 2-D image or an ``(H, W, 3)`` array), or ``None``."""
    shape = getattr(obj, "shape", None)
    if not hasattr(obj, "dtype") or shape is None or not (len(shape) == 2 or (len(shape) == 3 and shape[-1] == 3)):
        return f"{_short(obj)} is not a frame (a 2-D numpy array, or (H, W, 3) uint8 RGB)"
    return None


def _signature_problem(message: str) -> str:
    """pluggy's multi-line validation message as one line, with the signature the spec expects."""
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    hook = re.search(r"for hook '(\w+)'", message)
    spec = getattr(hookspecs, hook.group(1), None) if hook else None
    return f"{line}; expected {spec.__name__}{signature_text(spec)}" if spec else line


def _where(err: BaseException) -> str:
    """`` (at FILE:LINE)``: where ``err`` was raised, outside vkit, pluggy, mmengine and importlib ('' if unknown)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f" (at {err.filename}:{err.lineno})"
    found = ""
    tb = err.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if not _library_module(module):
            found = f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return found


def _library_module(module: str) -> bool:
    """``True`` for code that is not a plugin's: vkit's own layers, the standard library, the frameworks."""
    top = module.partition(".")[0]
    if top == "vkit":
        return not module.startswith("vkit.plugins.")
    return top in _LIBRARIES or top in sys.stdlib_module_names or top.startswith("_frozen_importlib")


def _package(plugin: Any) -> tuple[str, str]:
    """``(package, folder)`` of a plugin object: ``vkit_retail`` for ``vkit_retail.plugin``, a lone module for itself."""
    module = plugin if isinstance(plugin, type(sys)) else sys.modules.get(getattr(plugin, "__module__", "") or "")
    if module is None:
        return "", ""
    package = module.__package__ or module.__name__
    top = sys.modules.get(package)
    file = getattr(top, "__file__", None) or getattr(module, "__file__", None) or ""
    folder = str(Path(file).parent) if file.endswith("__init__.py") else file
    return package, folder


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _short(obj: Any, limit: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------- per-process manager
_MANAGERS: dict[tuple[Any, ...], PluginManager] = {}


def get_plugin_manager(*, extra: Sequence[str] = (), disabled: Sequence[str] | None = None,
                       autoload: bool | None = None) -> PluginManager:
    """The process's :class:`PluginManager` for these inputs (and the ``VKIT_*`` variables), built on first use.

    Args:
        extra: module paths to load as plugins (``--plugin``).
        disabled: plugin names not to load, on top of ``VKIT_DISABLE_PLUGINS``.
        autoload: load entry points; ``None`` reads ``VKIT_NO_AUTOLOAD``.

    Example::

        manager = get_plugin_manager(extra=["myplugin"])
        assert manager is get_plugin_manager(extra=["myplugin"])
    """
    key = (tuple(extra), tuple(disabled) if disabled is not None else None, autoload, tuple(user_disabled_plugins()),
           *(os.environ.get(var, "") for var in (ENV_PLUGINS, ENV_DISABLE, ENV_NO_AUTOLOAD)))
    if key not in _MANAGERS:
        _MANAGERS[key] = PluginManager(extra=extra, disabled=disabled, autoload=autoload)
    return _MANAGERS[key]


def reset_plugin_manager() -> None:
    """Forget the cached managers (components registered into the registries stay registered)."""
    _MANAGERS.clear()
