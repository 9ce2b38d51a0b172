"""CLI start-up: median wall time of `vkit --help` and `vkit plugins list` next to a bare interpreter.

Targets: `--help` within 0.3 s of `python -c pass` (issue 2); `plugins list` within 0.5 s of `--help`
(issue 25: it imports no torch; `plugins list --components` does, and is not timed here).

    python benchmarks/cli_startup.py [--runs 10]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    subprocess.run(cmd, check=True, capture_output=True, env=env)  # warm the OS file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    vkit = shutil.which("vkit") or os.path.join(os.path.dirname(sys.executable), "vkit")
    env = dict(os.environ, COLUMNS="200")
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ("vkit --help", [vkit, "--help"], 0.3),
        ("vkit plugins list", [vkit, "plugins", "list"], 0.5),
    ]
    base = help_time = None
    print(f"{'command':<22} {'median s':>9} {'vs python':>10} {'target':>22} {'ok':>4}")
    for name, cmd, target in cases:
        t = median_seconds(cmd, args.runs, env)
        base = t if base is None else base
        if name == "vkit --help":
            goal, ok = f"<= python + {target:.1f} s", t - base <= target
            help_time = t
        elif target is not None:
            goal, ok = f"<= --help + {target:.1f} s", t - help_time <= target
        else:
            goal, ok = "-", True
        print(f"{name:<22} {t:>9.3f} {t - base:>+10.3f} {goal:>22} {'yes' if ok else 'NO':>4}")


if __name__ == "__main__":
    main()
