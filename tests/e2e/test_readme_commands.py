"""Every ``vkit …`` command shown in README.md and the docs/ pages exists as written, and the runnable ones run.

The commands follow the docs wherever they move: README.md and every
``docs/**/*.md`` page are read. Each line of a ```bash block that starts with ``vkit`` (``;`` separates two
commands, ``#`` starts a comment) is checked two ways:

- statically: the sub-command path resolves to a real click command and every
  ``--option`` it shows is one that command (or the root group) accepts;
- dynamically, for ``vkit run TASK …`` examples (no synopsis brackets): the
  line runs through the CLI on top of a ``--config`` file holding the task's
  smoke overrides, so a documented ``--set`` (e.g. switching a component's
  ``type``, which starts it from its own defaults) must work.
  Placeholders point at tiny data made here: ``my.json``/``my.csv`` (a medical
  datalist), ``/data/UCF_Crimes`` (a UCF-Crime-style folder).
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
SYNOPSIS = re.compile(r"\[|\||\.\.\.|…|\b[A-Z][A-Z_]{2,}\b")  # [--opt], a|b, ..., TASK/RUN placeholders


def readme_commands(pages: list[Path] = PAGES) -> list[str]:
    """The ``vkit …`` commands of the pages' bash blocks, comments stripped, ``;``-separated ones split."""
    blocks = [b for page in pages for b in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)]
    out: list[str] = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():  # a backslash continues the line, as in bash
            code = line.split(" #")[0].strip()
            out += [c.strip() for c in code.split(" ; ") if c.strip().startswith("vkit ")]
    return out


COMMANDS = list(dict.fromkeys(readme_commands()))


def _runnable(line: str) -> bool:
    """A ``vkit run`` example of a built-in task whose data arguments are placeholders this module provides."""
    words = shlex.split(line)
    if words[1] != "run" or SYNOPSIS.search(line.split(" --set ")[0]) or len(words) < 3:
        return False
    if "pretrained" in line:  # the user's own weights file or pretraining run: nothing the docs can ship
        return False
    data = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--data", "--datalist", "--config")]
    return words[2] in BUILT_IN_TASKS and all(d in PLACEHOLDERS for d in data)


BUILT_IN_TASKS = ("medical-diagnosis", "security-anomaly", "education-engagement", "recommendation")
PLACEHOLDERS = ("my.json", "my.csv", "/data/UCF_Crimes")
RUNNABLE = [c for c in COMMANDS if _runnable(c)]


def _resolve(words: list[str]) -> tuple[click.Command, list[click.Command], list[str]]:
    """The deepest command the leading words name, the groups on the way, and the remaining words."""
    from vkit.workflows.cli import cli

    ctx = click.Context(cli)
    command, chain, rest = cli, [cli], list(words)
    flags = {o for p in cli.params if isinstance(p, click.Option) and p.is_flag for o in p.opts}
    while rest and rest[0].startswith("--"):  # the root group's own options (--db URL, --debug)
        rest = rest[1:] if rest[0] in flags or "=" in rest[0] else rest[2:]
    while rest and isinstance(command, click.Group):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        command, rest = sub, rest[1:]
        chain.append(command)
    return command, chain, rest


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in [*p.opts, *p.secondary_opts] if o.startswith("-")}


def test_the_readme_shows_commands() -> None:
    assert len(COMMANDS) > 20 and RUNNABLE  # a parser that finds nothing would make the tests below vacuous
    shown = readme_commands([README])
    # the README's three examples: run a vertical, write a plugin, score an archive
    assert any(c.startswith("vkit run medical-diagnosis") for c in shown)
    assert any(c.startswith("vkit new-plugin ") for c in shown) and any(c.startswith("vkit score ") for c in shown)


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_exists_with_its_options(line: str) -> None:
    words = [w for w in shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))][1:]
    words = [w for w in words if w not in ("...", "…")]
    command, chain, rest = _resolve(words)
    assert len(chain) > 1 or not rest, f"{line!r}: {rest[0]!r} is not a vkit command"
    if isinstance(command, click.Group):
        assert not rest or rest[0].startswith("-"), f"{line!r}: {chain[-1].name} has no sub-command {rest[0]!r}"
    known = set().union(*(_options(c) for c in chain))
    shown = {w.split("=")[0] for w in rest if w.startswith("--")}
    assert shown <= known, f"{line!r}: options {sorted(shown - known)} are not accepted by `{' '.join(c.name for c in chain[1:])}`"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from vkit.plugins.medical.synthetic import generate_dataset
    from vkit.plugins.security.synthetic import generate

    tmp = tmp_path_factory.mktemp("readme")
    datalist = generate_dataset(tmp / "medical", seed=0, n_train=8, n_val=4, n_test=4, size=24)
    listing = json.loads(datalist.read_text())
    rows = [f"{e['image']},{e['label']},{split}" for split in ("training", "validation", "test") for e in listing[split]]
    csv = tmp / "medical" / "my.csv"  # a split column: without one, 16 cases would be hashed 70/15/15 (issue 21, item 4)
    csv.write_text("image,label,split\n" + "\n".join(rows) + "\nimagesTr/missing.nii.gz,1,training\n")
    generate(tmp / "ucf", seed=0, num_normal=4, num_anomalous=4, test_fraction=0.5)
    return {"my.json": str(datalist), "my.csv": str(csv), "/data/UCF_Crimes": str(tmp / "ucf"), "tmp": str(tmp)}


@pytest.mark.parametrize("line", RUNNABLE)
def test_readme_run_example_runs(line: str, data: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.cli import cli
    from vkit.workflows.config import parse_overrides

    args = shlex.split(line)[1:]
    task = get_plugin_manager().get_task(args[1])
    args = [data.get(a, a) for a in args]
    work = Path(data["tmp"]) / f"run-{abs(hash(line))}"
    smoke = work.with_suffix(".json")
    overrides = list(task.smoke_overrides)
    if ".type=" in line:  # another network: keep the data at its default size, which every documented one accepts
        overrides = [o for o in overrides if not o.startswith("data.transforms.size")]
    smoke.write_text(json.dumps(_nest(parse_overrides(overrides))))
    if "train.epochs=" in line:  # the documented key is checked; the run stays one epoch long
        args += ["--set", "train.epochs=1"]
    monkeypatch.chdir(data["tmp"])
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{work}.db", "run", args[1], "--config", str(smoke), *args[2:],
                                      "--work-dir", str(work), "--data-root", str(Path(data["tmp"]) / "cache")],
                                catch_exceptions=True)
    assert result.exit_code == 0, f"{line!r} failed:\n{result.output}\n{_tb(result)}"
    assert "finished" in result.output


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return out


def _tb(result: Any) -> str:
    import traceback

    return "".join(traceback.format_exception(result.exc_info[1])) if result.exc_info else ""
