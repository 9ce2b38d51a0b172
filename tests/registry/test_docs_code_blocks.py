"""Every code block of docs/plugins.md runs: Python is executed, TOML parsed, each `vkit ...` shell line parsed by the CLI.

The shell blocks of the tutorial are also run for real, in order, by
``tests/e2e/test_new_plugin.py``; here each ``vkit`` line must name existing
commands with valid options and arguments (click parses it without running it).
"""
from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks(language: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ``language`` block of docs/plugins.md."""
    text = DOC.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(2)) for m in BLOCK.finditer(text) if m.group(1) == language]


def test_the_doc_has_the_blocks_this_test_knows():
    text = DOC.read_text(encoding="utf-8")
    languages = {m.group(1) for m in BLOCK.finditer(text)}
    assert languages <= {"python", "bash", "toml", "text"}, f"add a runner for {languages - {'python', 'bash', 'toml', 'text'}}"
    assert len(blocks("python")) >= 10 and blocks("bash") and "## Score and predict" in text


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory and user config; the built-in plugins' components registered."""
    from vkit.hooks.manager import get_plugin_manager, reset_plugin_manager

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VKIT_CONFIG_DIR", str(tmp_path / "config"))
    for var in ("VKIT_PLUGINS", "VKIT_DISABLE_PLUGINS", "VKIT_NO_AUTOLOAD"):
        monkeypatch.delenv(var, raising=False)
    reset_plugin_manager()
    get_plugin_manager().register_components()
    yield tmp_path
    reset_plugin_manager()


@pytest.mark.parametrize(("line", "code"), blocks("python"), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_python_block_runs(sandbox, line, code):
    namespace = {"__name__": f"docs_plugins_md_line{line}"}
    if re.fullmatch(r"def \w+\(.*\) -> .*\n", code):  # a hook's signature in the reference: must be valid Python
        code = f"from __future__ import annotations\n{code.rstrip()}: ...\n"
    exec(compile(code, f"docs/plugins.md:{line}", "exec"), namespace)  # noqa: S102 - the doc's own examples


@pytest.mark.parametrize(("line", "code"), blocks("toml"), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_toml_block_parses(line, code):
    assert tomllib.loads(code)


def _parse(args: list[str]) -> click.Context:
    """Parse ``vkit ARGS`` down to the leaf command without invoking anything (usage errors raise)."""
    from vkit.workflows.cli import cli

    ctx = cli.make_context("vkit", list(args), resilient_parsing=False)
    while isinstance(ctx.command, click.Group):
        rest = [*ctx.protected_args, *ctx.args]
        assert rest, f"vkit {' '.join(args)}: names a group, not a command"
        name, command, rest = ctx.command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def vkit_lines() -> list[tuple[str, list[str]]]:
    found = []
    for line, code in blocks("bash"):
        for number, text in enumerate(code.splitlines()):
            words = shlex.split(text, comments=True)
            if words and words[0] == "vkit":
                found.append((f"docs/plugins.md:{line + 1 + number}", [os.path.expandvars(w) for w in words[1:]]))
    return found


@pytest.mark.parametrize(("where", "args"), vkit_lines(), ids=[w for w, _ in vkit_lines()])
def test_vkit_shell_line_parses(monkeypatch, tmp_path, where, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.py").write_text("")  # the generated plugin's example config
    try:
        ctx = _parse(args)
    except click.ClickException as err:
        pytest.fail(f"{where}: vkit {' '.join(args)}: {err.format_message()}")
    assert ctx.command.callback is not None, where
