"""The installed ``vkit`` command in a subprocess: one helper for the tests that need a real process.

A subprocess costs a fresh interpreter (and torch, when the command builds a
model): use it where the process is what is tested (exit codes, signals, what
reaches stdout/stderr, an interpreter without the test's imports). Otherwise
call click's ``CliRunner`` or ``vkit.workflows.cli.main`` in-process.

``tests/conftest.py`` puts this folder (``tests/helpers``) on ``sys.path``, so any test imports it::

    from vkit_cli import vkit

    proc = vkit("--db", url, "runs", "list", "--json", cwd=tmp_path)          # AssertionError with the output unless 0
    proc = vkit("run", "nosuch", cwd=tmp_path, check=False)                  # look at returncode / stderr yourself
    proc = vkit("plugins", "list", cwd=tmp_path, env=dict(VKIT_NO_AUTOLOAD="1"), drop=("VKIT_*",))
    code, out, err = vkit_main(capsys, "--db", url, "runs", "show", "7")     # the same, in this process
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The ``vkit`` console script next to this interpreter (the venv under test), else the one on ``PATH``.
VKIT = str(Path(sys.executable).with_name("vkit")) if Path(sys.executable).with_name("vkit").exists() \
    else (shutil.which("vkit") or "vkit")


def vkit_env(env: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without the variables matching ``drop`` (names or globs such as ``VKIT_*``),
    plus ``COLUMNS=250`` (tables unwrapped) and ``env``."""
    kept = {k: v for k, v in os.environ.items() if not any(fnmatch.fnmatchcase(k, pattern) for pattern in drop)}
    return {**kept, "COLUMNS": "250", **(env or {})}


def vkit(*args: str, cwd: str | Path | None = None, env: Mapping[str, str] | None = None, drop: Sequence[str] = (),
         check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``vkit ARGS`` in ``cwd`` with :func:`vkit_env` (``env`` added, ``drop`` removed), text output captured.

    With ``check`` (the default) a non-zero exit raises an ``AssertionError`` showing the command, stdout and stderr.
    """
    proc = subprocess.run([VKIT, *args], cwd=cwd, env=vkit_env(env, drop), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"vkit {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def vkit_main(capsys: Any, *args: str) -> tuple[int, str, str]:
    """``vkit ARGS`` through the console entry point (:func:`vkit.workflows.cli.main`) in this process:
    ``(exit code, stdout, stderr)`` as the installed command would give them, without an interpreter start.

    ``capsys`` is pytest's fixture; set environment variables with ``monkeypatch`` first.
    """
    from vkit.workflows.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


__all__ = ["VKIT", "vkit", "vkit_env", "vkit_main"]
