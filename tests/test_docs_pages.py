"""README.md stays a newcomer's page, every link of README.md and docs/ resolves, and `make bench` writes docs/benchmarks.md."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```+|~~~+).*?^\1\s*$", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
TASKS = {"medical-diagnosis": "medical", "security-anomaly": "security",
         "education-engagement": "education", "recommendation": "recommendation"}


def _load_to_docs():
    spec = importlib.util.spec_from_file_location("bench_to_docs", ROOT / "benchmarks" / "to_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


to_docs = _load_to_docs()


def prose(page: Path) -> str:
    """The page without its fenced code blocks (a ``# comment`` there is no heading, a link there no link)."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", prose(page), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return out


def test_readme_is_at_most_300_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move detail to a docs/ page and link it"


def test_the_pages_have_links_to_check() -> None:
    links = [t for p in PAGES for t in LINK.findall(prose(p))]
    assert len(PAGES) >= 12 and len(links) > 40 and anchors(README) >= {"tasks", "architecture", "docs"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    bad = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: {dest.relative_to(ROOT)} has no heading with anchor #{anchor}")
    assert not bad, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(bad)


def test_readme_keeps_the_two_commands_and_what_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text
    assert "CI (`.ci/run`) calls `make test`" in text and "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_names_every_extra_and_what_it_enables() -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]) - {"dev"}
    rows = dict(re.findall(r"^\| `vkit\[(\w+)\]` \| (.+) \|$", README.read_text(encoding="utf-8"), re.M))
    assert {"ray", "parquet", "onnx", "postgres"} <= extras == set(rows), f"extras {extras}, README rows {set(rows)}"
    assert all(len(what) > 20 for what in rows.values())


@pytest.mark.parametrize(("task", "plugin"), TASKS.items())
def test_readme_names_each_tasks_generator_and_links_its_page(task: str, plugin: str) -> None:
    text = README.read_text(encoding="utf-8")
    module = f"vkit.plugins.{plugin}.synthetic"
    line = next((l for l in text.split("\n- ") if l.startswith(f"**{task}**")), "")
    assert f"`{module}`" in line and importlib.util.find_spec(module), f"README: no generator line for {task}"
    assert f"(docs/tasks/{task}.md)" in text and (ROOT / "docs" / "tasks" / f"{task}.md").is_file()


def test_every_benchmark_script_has_a_make_bench_block() -> None:
    ran = {to_docs.script_of(c) for c in to_docs.commands(to_docs.DOC.read_text(encoding="utf-8"))}
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {"to_docs"}
    assert scripts and scripts <= ran, f"docs/benchmarks.md runs no command of {sorted(scripts - ran)}"
    assert "benchmarks/to_docs.py" in (ROOT / "Makefile").read_text().split("\nbench:")[1].split("\n\n")[0]


PAGE = """# Benchmarks

## Store writes

| database | rows/s |
|---|---|
| SQLite | 120,947 |

<!-- make bench: python benchmarks/store.py -->
recorded by hand
<!-- end make bench: python benchmarks/store.py -->

## Scoring

<!-- make bench: python benchmarks/scoring.py --sizes 30 150 -->
old scoring output
<!-- end make bench: python benchmarks/scoring.py --sizes 30 150 -->
"""


def test_update_writes_each_commands_output_between_its_markers_only(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(PAGE)
    calls = []

    def fake(command: str) -> tuple[int, str]:
        calls.append(command)
        return (0, "| database | rows/s |\nCPU: Test CPU 9000\n") if "store" in command else (1, "half a table")

    scripts = [Path("benchmarks/store.py"), Path("benchmarks/scoring.py"), Path("benchmarks/cli_startup.py")]
    failed = to_docs.update(doc, run=fake, scripts=scripts)
    text = doc.read_text()
    assert calls == ["python benchmarks/store.py", "python benchmarks/scoring.py --sizes 30 150",
                     "python benchmarks/cli_startup.py"]  # the missing script got a section and ran
    assert failed == ["python benchmarks/scoring.py --sizes 30 150: exit code 1",
                      "python benchmarks/cli_startup.py: exit code 1"]
    assert text.startswith(PAGE.split("<!-- make bench")[0])  # the recorded figures are untouched
    store = text.split("<!-- make bench: python benchmarks/store.py -->\n")[1].split("<!-- end make bench")[0]
    assert "recorded by hand" not in store and "```text\n| database | rows/s |\nCPU: Test CPU 9000\n```" in store
    assert "Latest output of `python benchmarks/store.py`" in store and " cores; flags: " in store
    assert "old scoring output" in text and "half a table" not in text  # a failed command keeps its block
    assert "## cli_startup\n\n<!-- make bench: python benchmarks/cli_startup.py -->\n" in text

    assert to_docs.update(doc, only=["store"], run=fake, scripts=scripts) == []  # a rerun replaces, never appends
    assert doc.read_text().count("CPU: Test CPU 9000") == 1 and calls[-1] == "python benchmarks/store.py"


def test_run_command_runs_a_script_with_this_interpreter_from_the_root(tmp_path: Path) -> None:
    script = tmp_path / "tiny.py"
    script.write_text("import os, sys\nprint(os.getcwd())\nprint(sys.executable)\n")
    code, out = to_docs.run_command(f"python {script}")
    assert code == 0 and out.split("\n")[:2] == [str(ROOT), sys.executable]


def test_to_docs_lists_the_pages_commands_and_refuses_an_unknown_name() -> None:
    listed = subprocess.run([sys.executable, "benchmarks/to_docs.py", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0 and "python benchmarks/store.py" in listed.stdout.splitlines()
    bad = subprocess.run([sys.executable, "benchmarks/to_docs.py", "nosuch"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown benchmark(s) ['nosuch']" in bad.stderr
