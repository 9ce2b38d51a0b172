"""The ``vkit run TASK ... --set ...`` commands of docs/pretrained.md and docs/pretrain.md name keys and values the task
takes: each one's ``--set`` values go through ``vkit config TASK`` (the merge a run does, before any data or weights).

A command that names a key the task does not have (``train.freez``) or, for the education task, feeds a model-zoo RGB
checkpoint or a plain ``vkit pretrain`` run frame differences (the task's default ``data.channels='diff'``) fails here.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from vkit_cli import vkit_main

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _run_commands(page: str) -> list[tuple[str, list[str], bool]]:
    """``(task, --set values, after --for-task)`` of every ``vkit run TASK`` line in ``page``'s bash blocks
    (continuations joined); the flag: the block pretrains with ``--for-task`` (the task's own input)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("   #")[0].strip()
            if not line.startswith("vkit run "):
                continue
            words = shlex.split(line)
            sets = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
            commands.append((words[2], sets, "--for-task" in block))
    return commands


COMMANDS = [(page, task, sets, for_task) for page in ("pretrained.md", "pretrain.md")
            for task, sets, for_task in _run_commands(page)]


def test_the_pages_have_run_commands():
    pages = {page for page, *_ in COMMANDS}
    assert pages == {"pretrained.md", "pretrain.md"} and len(COMMANDS) >= 8


@pytest.mark.parametrize(("page", "task", "sets", "for_task"), COMMANDS,
                         ids=[f"{p}:{t}:{i}" for i, (p, t, *_) in enumerate(COMMANDS)])
def test_run_command_merges(page, task, sets, for_task, capsys):
    args = [arg for value in sets for arg in ("--set", value)]
    code, out, err = vkit_main(capsys, "config", task, *args, "--json")
    assert code == 0, f"{page}: vkit run {task} {' '.join(args)}: {err}"
    cfg = json.loads(out)
    if task == "education-engagement":
        video = cfg["model"]["backbones"]["video"]
        if video.get("pretrained") and not for_task:
            # RGB weights (a model zoo's, a plain `vkit pretrain` run's) are fed RGB clips
            assert cfg["data"]["channels"] == "rgb", f"{page}: {sets} feeds {video['pretrained']} frame differences"


def test_no_doc_line_runs_a_command_after_vkit_serve():
    """`vkit serve` runs until stopped: `vkit serve ... && curl ...` never reaches curl (the README once said so)."""
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                code = line.split("#")[0]
                if re.search(r"(^|[;&|]\s*)vkit serve\b", code):
                    assert not re.search(r"vkit serve\b[^&;|]*(&&|;|\|\|)", code), f"{page.name}: {line.strip()}"
