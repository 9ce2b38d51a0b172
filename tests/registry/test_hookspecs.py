"""Hookspec conformance: docstring-only bodies with a summary, one :param: per argument, a return, an example."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from vkit.hooks import hookspecs
from vkit.hooks.hookdocs import hook_specs, parse_docstring

SOURCE = ast.parse(Path(hookspecs.__file__).read_text())
FUNCS = {node.name: node for node in SOURCE.body if isinstance(node, ast.FunctionDef)}
HOOKS = [spec.__name__ for spec in hook_specs()]


def test_every_vkit_function_is_a_hookspec():
    assert HOOKS == [name for name in FUNCS if name.startswith("vkit_")]
    assert set(HOOKS) >= {"vkit_register_components", "vkit_tasks", "vkit_cli_commands",
                          "vkit_run_finished", "vkit_video_scored"}


@pytest.mark.parametrize("hook", HOOKS)
def test_body_is_only_a_docstring(hook):
    body = FUNCS[hook].body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    assert isinstance(body[0].value.value, str)


@pytest.mark.parametrize("hook", HOOKS)
def test_docstring_documents_every_argument_the_return_and_an_example(hook):
    func = getattr(hookspecs, hook)
    doc = parse_docstring(func)
    args = list(inspect.signature(func).parameters)
    assert list(doc.params) == args, f"{hook}: :param: fields {list(doc.params)} != arguments {args}"
    assert all(doc.params.values()), f"{hook}: empty :param: description"
    assert doc.summary.endswith(".") and doc.returns and doc.version
    assert "@hookimpl" in doc.example and f"def {hook}(" in doc.example
    assert "from vkit import hookimpl" in doc.example, f"{hook}: the example must run as written"
    compile(doc.example, hook, "exec")


def test_parse_docstring_splits_fields():
    def spec(run):
        """Do a thing.

        More about it,
        on two lines.

        :param run: the run,
            continued.
        :return: nothing.

        Example::

            x = 1

            y = 2

        .. versionadded:: 0.2
        """

    doc = parse_docstring(spec)
    assert (doc.summary, doc.prose, doc.params) == ("Do a thing.", ["More about it, on two lines."],
                                                    {"run": "the run, continued."})
    assert (doc.returns, doc.example, doc.version) == ("nothing.", "x = 1\n\ny = 2", "0.2")
    assert re.fullmatch(r"\w+", doc.summary.split()[0])
