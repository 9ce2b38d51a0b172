"""Merge a task's defaults, a user config file and ``--set`` overrides into one mmengine ``Config``.

Unknown keys are errors with a did-you-mean, the way a typo should be::

    cfg = build_config(task, "my.yaml", ["train.epochs=20", "model.head.dropout=0.2"])
    # --set train.epoch=20  →  ConfigError: train.epoch: unknown key (did you mean 'train.epochs'?)

What a config file may do depends on its format:

- **YAML and JSON are data**: read with ``yaml.safe_load`` / ``json``; a YAML
  tag that would build a Python object (``!!python/object/apply:os.system``) is
  a ConfigError naming the file and line, and a ``_base_`` may only name other
  YAML/JSON files.
- **Python (``.py``) is code**, like a plugin: mmengine's ``Config`` runs it
  (and whatever it imports or inherits). It is read only from the path the
  user named with ``--config``, never pulled in by a data config's ``_base_``.

Setting a component's ``type`` (``--set model.backbones.volume.type=MonaiResNet``
or ``type`` in a config file) starts that component from the new class's own
defaults: the old component's other keys are dropped (mmengine's ``_delete_``).
Arguments of registered components are checked against the class signature.
Keys under a task's ``free_keys`` (e.g. ``model``) may hold anything else.
Override values are data, never run: parsed like mmengine's ``DictAction``
(``--cfg-options``): ints, floats, booleans, ``None``, lists ``[a,b]`` and tuples
``(a,b)``, plus mappings written as YAML flow (``[{type: Prune, amount: 0.5}]``
or ``{'type': 'X3D'}``). Python calls (``dict(...)``), unbalanced or too deeply
nested brackets, YAML tags and anchors, and values longer than
:data:`MAX_VALUE_CHARS` are ConfigErrors naming the key. A value whose default
is a number must be a number, and a section (``train``) takes keys, not a value.
"""
from __future__ import annotations

import copy
import inspect
import json
import re
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vkit.registry.errors import ConfigError, did_you_mean

#: File endings read as data (never executed) and as code.
DATA_SUFFIXES = (".yaml", ".yml", ".json")
CODE_SUFFIXES = (".py",)
_DELETE = "_delete_"
#: The longest ``--set`` value read (longer ones belong in a ``--config`` file) and the deepest bracket nesting.
MAX_VALUE_CHARS = 10_000
MAX_DEPTH = 32
_LITERALS = "--set takes literal values: a number, a word, a list [1,2], a tuple (1,2) or a mapping {type: X, k: v}"
_PY_CALL = re.compile(r"\b(dict|list|tuple|set|frozenset)\s*\(")
_CLOSES = {")": "(", "]": "[", "}": "{"}
_SHORT = reprlib.Repr()
_SHORT.maxstring = 60


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` → ``{"a.b": 1, "c": [1, 2]}``; a pair without ``=`` is a ConfigError."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {_SHORT.repr(pair)}: expected KEY=VALUE, e.g. train.epochs=20")
        out[key.strip()] = parse_value(key.strip(), value.strip())
    return out


def parse_value(key: str, text: str) -> Any:
    """One ``--set`` value read as data (never run); a value that is not a literal is a ConfigError naming ``key``.

    Example::

        parse_value("data.size", "[112,112]")                          # [112, 112]
        parse_value("compression.stages", "[{type: CastBF16}]")        # [{'type': 'CastBF16'}]
        parse_value("compression.stages", "[dict(type='CastBF16')]")   # ConfigError: ... is Python code ...
    """
    from mmengine.config import DictAction

    if len(text) > MAX_VALUE_CHARS:
        raise _bad_value(key, text, f"is {len(text)} characters long; a --set value holds at most {MAX_VALUE_CHARS} "
                                    f"(put long values in a --config file)")
    call = _PY_CALL.search(text)
    if call:
        raise _bad_value(key, text, f"{call.group(1)}(...) is Python code; {_LITERALS}, "
                                    f"e.g. [{{type: X}}] or [{{'type': 'X'}}]")
    problem = _bracket_problem(text)
    if problem:
        raise _bad_value(key, text, f"{problem}; {_LITERALS}")
    if text.startswith(("{", "[")) and "{" in text:
        return _parse_flow(key, text)
    try:
        return DictAction._parse_iterable(text)
    except (AssertionError, ValueError, RecursionError) as err:
        raise _bad_value(key, text, f"cannot be read ({err}); {_LITERALS}") from None


def _bad_value(key: str, text: str, problem: str) -> ConfigError:
    return ConfigError(f"--set {key}={_SHORT.repr(text)}: {problem}")


def _bracket_problem(text: str) -> str | None:
    """Why the brackets of ``text`` (outside quotes) do not pair up or nest too deep, or ``None``."""
    stack: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            stack.append(char)
            if len(stack) > MAX_DEPTH:
                return f"brackets nest deeper than {MAX_DEPTH} levels"
        elif char in _CLOSES:
            if not stack:
                return f"{char!r} closes no bracket"
            if stack.pop() != _CLOSES[char]:
                return f"{char!r} does not close the bracket before it"
    return f"{stack[-1]!r} is never closed" if stack else None


def _parse_flow(key: str, text: str) -> Any:
    """A value holding mappings, read as YAML flow (data only: no tags, anchors or aliases)."""
    import yaml

    try:
        if any(isinstance(t, (yaml.TagToken, yaml.AnchorToken, yaml.AliasToken)) for t in yaml.scan(text)):
            raise _bad_value(key, text, "YAML tags, anchors and aliases are not allowed: --set values are data")
        node = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as err:
        raise _bad_value(key, text, f"not a valid mapping ({getattr(err, 'problem', None) or err}); {_LITERALS}") from None
    return _node_value(key, text, node)


def _node_value(key: str, text: str, node: Any) -> Any:
    """A composed YAML node as data: plain scalars typed like ``DictAction``'s, quoted ones kept as text."""
    import yaml
    from mmengine.config import DictAction

    if isinstance(node, yaml.SequenceNode):
        return [_node_value(key, text, item) for item in node.value]
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for name_node, value_node in node.value:
            if not isinstance(name_node, yaml.ScalarNode):
                raise _bad_value(key, text, "a mapping key must be a word or a number")
            if isinstance(value_node, yaml.ScalarNode) and not value_node.value and not value_node.style:
                raise _bad_value(key, text, f"{name_node.value!r} has no value; write {{key: value}} with a space "
                                            f"after the colon")
            out[_node_value(key, text, name_node)] = _node_value(key, text, value_node)
        return out
    return node.value if node.style else DictAction._parse_int_float_bool(node.value)


# ----------------------------------------------------------------------------- reading files
def _read_data_file(path: Path) -> Any:
    """A YAML or JSON file as plain data; a Python tag or a syntax error names the file and line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config file {str(path)!r}, line {err.lineno}: not valid JSON: {err.msg}") from None
        except RecursionError:
            raise ConfigError(f"config file {str(path)!r}: nested too deeply to read as data") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r}: nested too deeply to read as data") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        if isinstance(err, yaml.constructor.ConstructorError) and "tag" in problem:
            problem = (f"{problem.replace('could not determine a constructor for the tag', 'the tag')} is not allowed: "
                       f"YAML configs are data only (use a .py config, which is code, to build objects)")
        raise ConfigError(f"config file {str(path)!r}{line}: {problem}") from None


def load_data_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML/JSON config as a dict, its ``_base_`` files (YAML/JSON only, relative to it) merged under it.

    Example::

        load_data_config("cfg.yaml")   # {'train': {'epochs': 2}}
    """
    from mmengine.config import Config

    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"config file {str(path)!r}: _base_ inherits from itself ({' -> '.join(map(str, _seen))})")
    data = _read_data_file(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping of keys at the top, got {type(data).__name__}")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        base_path = (path.parent / str(base)) if not Path(str(base)).is_absolute() else Path(str(base))
        if base_path.suffix.lower() not in DATA_SUFFIXES:
            raise ConfigError(f"config file {str(path)!r}: _base_ {str(base)!r} is not YAML/JSON; a data config may "
                              f"only inherit data (a .py config is code: name it yourself with --config)")
        if not base_path.is_file():
            raise ConfigError(f"config file {str(path)!r}: _base_ {str(base_path)!r} does not exist")
        merged = Config._merge_a_into_b(load_data_config(base_path, (*_seen, path.resolve())), merged)
    return Config._merge_a_into_b(data, merged)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The user's config file as a dict: YAML/JSON parsed as data, a ``.py`` file run by mmengine (code)."""
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        from vkit.core.files import file_kind

        what = f"is not a regular file ({file_kind(path.stat().st_mode)})" if path.exists() else "does not exist"
        raise ConfigError(f"config file {str(path)!r} {what}")
    suffix = path.suffix.lower()
    if suffix in DATA_SUFFIXES:
        return load_data_config(path)
    if suffix not in CODE_SUFFIXES:
        raise ConfigError(f"config file {str(path)!r}: unknown format {suffix or '(no ending)'!r}; expected one of "
                          f"{list(DATA_SUFFIXES + CODE_SUFFIXES)}")
    _check_data_bases(path)
    try:
        return Config.fromfile(str(path), import_custom_modules=False).to_dict()
    except Exception as err:  # the file is code: anything can go wrong in it
        raise ConfigError(f"config file {str(path)!r} cannot be read: {_describe_code_error(err, path)}") from err


def _check_data_bases(path: Path) -> None:
    """YAML/JSON files a .py config inherits (``_base_``) are checked as data first: mmengine reads them with
    PyYAML's full loader, which would run a ``!!python`` tag."""
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError):
        return  # mmengine reports it with its reason
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                continue
            for base in [bases] if isinstance(bases, str) else list(bases):
                base_path = path.parent / str(base)
                if base_path.suffix.lower() in DATA_SUFFIXES and base_path.is_file():
                    load_data_config(base_path)


def _describe_code_error(err: BaseException, path: Path) -> str:
    """``TypeName: message`` of an error raised while running a .py config, with the config's line; never empty."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    lines = [f.lineno for f in frames if Path(f.filename).resolve() == path.resolve()]
    where = f"line {lines[-1]}: " if lines else ""
    reason = str(err).strip()
    if not reason and frames and frames[-1].filename.endswith(("mmengine/config/lazy.py", "mmengine\\config\\lazy.py")):
        reason = ("the config called something it imported; with a top-level import mmengine reads the file as a "
                  "lazy-import config, where imported names cannot be called while it loads")
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in reason:
        reason += f" ({type(cause).__name__}: {cause})"
    return f"{where}{type(err).__name__}: {reason or repr(err)}"


# ----------------------------------------------------------------------------- checking keys
def _check_keys(given: Mapping[str, Any], defaults: Mapping[str, Any], free: Sequence[str], where: str, prefix: str = "") -> None:
    for key, value in given.items():
        path = f"{prefix}{key}"
        if key == _DELETE:
            continue
        if key not in defaults:
            choices = [f"{prefix}{k}" for k in defaults]
            raise ConfigError(f"{where}: unknown key {path!r}{did_you_mean(path, choices)}; known keys here: {sorted(choices)}")
        if path in free:
            continue
        problem = _value_problem(path, defaults[key], value)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        if isinstance(defaults[key], Mapping):
            _check_keys(value, defaults[key], free, where, prefix=f"{path}.")


def _value_problem(path: str, default: Any, value: Any) -> str | None:
    """Why ``value`` cannot replace ``default`` at ``path``: a section given a value, a number given text; or ``None``.

    Example::

        _value_problem("train.epochs", 12, "[1")   # "train.epochs='[1': expected a number (the default is 12)"
    """
    if isinstance(default, Mapping) and not isinstance(value, Mapping):
        keys = list(default)
        example = f", e.g. {path}.{keys[0]}=..." if keys else ""
        return f"{path} is a section (keys: {', '.join(map(str, keys))}), not a value: set one of its keys{example}"
    number = isinstance(default, (int, float)) and not isinstance(default, bool)
    if number and isinstance(value, Mapping):
        return f"{path} is a value (the default is {default!r}), not a section"
    if number and isinstance(value, str) and not _is_number(value):
        return f"{path}={_SHORT.repr(value)}: expected a number (the default is {default!r})"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {part!r} is set to a value and also used as a section")
        node[leaf] = value
    return nested


def _mark_type_switches(update: dict[str, Any], current: Any) -> None:
    """Add ``_delete_=True`` wherever ``update`` gives a component a new ``type``: it starts from that class's defaults."""
    for key, value in update.items():
        if not isinstance(value, dict):
            continue
        if isinstance(current, Mapping):
            old = current.get(key)
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            old = current[int(key)]
        else:
            continue
        if isinstance(old, Mapping) and "type" in value and "type" in old and value["type"] != old["type"]:
            value[_DELETE] = True
        elif not value.get(_DELETE):
            _mark_type_switches(value, old)


def _merge(base: dict[str, Any], update: dict[str, Any], where: str) -> dict[str, Any]:
    """``update`` merged over ``base`` (a new dict); a component whose ``type`` changes starts afresh."""
    from mmengine.config import Config

    _mark_type_switches(update, base)
    try:
        return Config._merge_a_into_b(update, base, allow_list_keys=True)
    except (KeyError, TypeError) as err:
        raise ConfigError(f"{where}: cannot merge into the defaults: {err}") from None


# ----------------------------------------------------------------------------- component arguments
def _component_class(name: str) -> tuple[Any, str] | None:
    """The class registered as ``name`` in one of vkit's registries (and that registry's name), or ``None``."""
    from vkit.registry import registries

    for attr in ("BACKBONES", "FUSIONS", "HEADS", "COMPRESSORS", "METRICS", "DATASETS", "TRANSFORMS"):
        registry = getattr(registries, attr, None)
        if registry is None:
            continue
        try:
            registry.import_from_location()
        except Exception:  # a broken location is reported when the component is built
            continue
        if name in registry.module_dict:
            return registry.module_dict[name], registry.name
    return None


def accepted_arguments(obj: Any) -> list[str] | None:
    """The keys a config of ``obj`` (a class or function) may hold, or ``None`` when it takes ``**kwargs``.

    Those are its keyword arguments plus the class's ``config_keys`` (keys its
    owner consumes before building it, e.g. a compression stage's ``recover``).
    """
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    return names + [k for k in getattr(obj, "config_keys", ()) if k not in names]


def check_components(cfg: Any, where: str = "config") -> None:
    """Raise a ConfigError for an argument a registered component does not take (lists those it does).

    Every ``dict(type=NAME, ...)`` in ``cfg`` whose ``NAME`` is registered in a
    vkit registry is checked against the class signature; classes taking
    ``**kwargs`` and unregistered or scoped names (``mmaction.X3D``) are left
    to the build.

    Example::

        check_components({"model": {"head": {"type": "ClsHead", "dropot": 0.2}}})
        # ConfigError: model.head: ClsHead takes no argument 'dropot' (did you mean 'dropout'?); it takes: ...
    """
    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            kind = node.get("type")
            if isinstance(kind, str) and "." not in kind:
                found = _component_class(kind)
                accepted = accepted_arguments(found[0]) if found else None
                if accepted is not None:
                    for key in node:
                        if key not in ("type", "_scope_") and key not in accepted:
                            raise ConfigError(
                                f"{where}: {path or 'config'}: {kind} ({found[1]}) takes no argument {key!r}"
                                f"{did_you_mean(key, accepted)}; it takes: {', '.join(accepted)}")
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f"{path}.{index}")

    walk(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg, "")


# ----------------------------------------------------------------------------- the merge
def build_config(
    defaults: Mapping[str, Any],
    config_file: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    free_keys: Sequence[str] = (),
    check_args: bool = True,
) -> Any:
    """Return the merged ``mmengine.Config``: defaults ← file ← overrides, every key checked.

    Args:
        defaults: the task's ``default_config``.
        config_file: the user's ``--config`` (YAML/JSON: data; ``.py``: code, see the module docstring).
        overrides: ``--set`` pairs (``["a.b=1"]``) or an already parsed ``{"a.b": 1}``.
        free_keys: sections whose sub-keys are not checked against ``defaults``.
        check_args: check registered components' arguments (:func:`check_components`).
    """
    from mmengine.config import Config

    merged = Config(copy.deepcopy(dict(defaults))).to_dict()
    if config_file is not None:
        user = read_config_file(config_file)
        _check_keys(user, defaults, free_keys, where=str(config_file))
        merged = _merge(merged, user, str(config_file))
        if check_args:
            check_components(merged, where=str(config_file))
    flat = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    nested = _nest(flat)
    _check_keys(nested, defaults, free_keys, where="--set")
    merged = _merge(merged, nested, "--set")
    if check_args:
        check_components(merged, where="--set" if flat else "config")
    return Config(merged)


__all__ = ["CODE_SUFFIXES", "DATA_SUFFIXES", "MAX_DEPTH", "MAX_VALUE_CHARS", "accepted_arguments", "build_config",
           "check_components", "load_data_config", "parse_overrides", "parse_value", "read_config_file"]
