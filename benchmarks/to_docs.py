"""Run the benchmarks and write what each prints into docs/benchmarks.md (``make bench``).

docs/benchmarks.md names the commands itself: each section ends with one
block per command,

    <!-- make bench: python benchmarks/store.py -->
    ...the command's latest output...
    <!-- end make bench: python benchmarks/store.py -->

and this script runs every such command from the repository root with this
interpreter, then replaces the text between its two markers with the machine
it ran on (CPU model, cores, flags, load average, torch version, the date) and
the command's standard output (its tables and the CPU line it prints) as a
``text`` block. Text outside the markers (the recorded figures and what they
mean) is never touched. A benchmark script that no block names gets a section
of its own at the end, run with no arguments. A command that fails keeps its
previous block; the others are still written and the exit status is 1.

    python benchmarks/to_docs.py                 # every command of the page (what `make bench` runs)
    python benchmarks/to_docs.py store scoring   # only the commands of benchmarks/store.py and scoring.py
    python benchmarks/to_docs.py --list          # the commands, nothing run
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BLOCK = re.compile(r"<!-- make bench: (?P<cmd>.+?) -->\n(?P<body>.*?)<!-- end make bench: (?P=cmd) -->", re.S)
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def commands(text: str) -> list[str]:
    """The commands named by the page's ``make bench`` blocks, in page order."""
    return [m.group("cmd") for m in BLOCK.finditer(text)]


def script_of(command: str) -> str:
    """``store`` for ``python benchmarks/store.py --rows 10``."""
    return next((Path(w).stem for w in shlex.split(command) if w.endswith(".py")), "")


def add_missing(text: str, scripts: Sequence[Path]) -> str:
    """The page with a section appended for each script that no block runs."""
    named = {script_of(c) for c in commands(text)}
    for script in scripts:
        if script.stem not in named:
            cmd = f"python benchmarks/{script.name}"
            text = text.rstrip("\n") + (f"\n\n## {script.stem}\n\n<!-- make bench: {cmd} -->\n"
                                        f"<!-- end make bench: {cmd} -->\n")
    return text


def machine() -> str:
    """One line naming the machine: CPU model, cores, the flags that decide precision, load, torch."""
    model, flags = platform.processor() or platform.machine(), ""
    info = Path("/proc/cpuinfo")
    if info.exists():
        lines = info.read_text(errors="replace").splitlines()
        model = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")), model)
        present = set(next((l.split(":", 1)[1].split() for l in lines if l.startswith("flags")), []))
        flags = " ".join(f for f in FLAGS if f in present)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return (f"CPU: {model}; {os.cpu_count()} cores; flags: {flags or 'none of ' + '/'.join(FLAGS)}; "
            f"load average {load}; torch {torch_version}")


def run_command(command: str) -> tuple[int, str]:
    """Run ``command`` from the repository root (``python`` is this interpreter); its exit code and stdout."""
    words = shlex.split(command)
    if words and words[0] == "python":
        words[0] = sys.executable
    done = subprocess.run(words, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return done.returncode, done.stdout


def block(command: str, output: str, header: str, when: dt.datetime) -> str:
    """The text that goes between a command's markers."""
    fence = "````" if "```" in output else "```"
    return (f"Latest output of `{command}` ({when:%Y-%m-%d %H:%M} UTC, `make bench`); {header}.\n\n"
            f"{fence}text\n{output.rstrip()}\n{fence}\n")


def replace_block(text: str, command: str, body: str) -> str:
    """``text`` with the block of ``command`` holding ``body``."""
    start, end = f"<!-- make bench: {command} -->\n", f"<!-- end make bench: {command} -->"
    head, rest = text.split(start, 1)
    return head + start + body + end + rest.split(end, 1)[1]


def update(doc: Path, only: Sequence[str] = (), run: Callable[[str], tuple[int, str]] = run_command,
           scripts: Sequence[Path] | None = None) -> list[str]:
    """Run the page's commands (those of the ``only`` scripts, if given) and write their output; the failures."""
    scripts = sorted((ROOT / "benchmarks").glob("*.py")) if scripts is None else scripts
    text = add_missing(doc.read_text(encoding="utf-8"), [s for s in scripts if s.name != Path(__file__).name])
    doc.write_text(text, encoding="utf-8")
    failed, header = [], machine()
    for command in commands(text):
        if only and script_of(command) not in only:
            continue
        print(f"== {command}", file=sys.stderr, flush=True)
        code, output = run(command)
        if code != 0:
            failed.append(f"{command}: exit code {code}")
            continue
        text = replace_block(doc.read_text(encoding="utf-8"), command, block(command, output, header, dt.datetime.now(dt.UTC)))
        doc.write_text(text, encoding="utf-8")  # after each command, so a later failure keeps what was measured
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="benchmark scripts to run, by stem (default: all)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the page to update (default docs/benchmarks.md)")
    parser.add_argument("--list", action="store_true", help="print the commands and run nothing")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(commands(args.doc.read_text(encoding="utf-8"))))
        return 0
    known = {script_of(c) for c in commands(args.doc.read_text(encoding="utf-8"))} | {
        p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    unknown = sorted(set(args.names) - known)
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; expected some of {sorted(known - {Path(__file__).stem})}")
    failed = update(args.doc, args.names)
    for line in failed:
        print(f"failed: {line} (its block in {args.doc} is unchanged)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
