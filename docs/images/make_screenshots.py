"""Write the report screenshots of docs/reports.md: each vertical's training report, an education and a security
scoring report, taken by headless Chromium at 1280 px (the helpers of tests/workflows/test_report_support.py).

The runs are small "showcase" runs on the embedded data (a few minutes on 2 cores; their numbers say little about
the verticals' quality). Needs Debian's chromium (``make chromium``).

Usage::

    .venv/bin/python docs/images/make_screenshots.py            # writes docs/images/report-*.png
    .venv/bin/python docs/images/make_screenshots.py --keep /tmp/shots --size tiny   # the test's tiny runs, kept
    .venv/bin/python docs/images/make_screenshots.py --keep /tmp/shots --reuse       # the kept runs, pages rewritten

Learners show as salted hashes: ``$VKIT_LEARNER_SALT`` if set, else a random salt for this call.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "workflows"))

#: page name -> screenshot file in docs/images
FILES = {
    "medical-diagnosis": "report-medical-diagnosis.png",
    "security-anomaly": "report-security-anomaly.png",
    "education-engagement": "report-education-engagement.png",
    "recommendation": "report-recommendation.png",
    "education-score": "report-education-engagement-score.png",
    "security-score": "report-security-anomaly-score.png",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "showcase"), default="showcase")
    parser.add_argument("--keep", type=Path, help="Folder for the runs and reports (default: a temporary one).")
    parser.add_argument("--out", type=Path, default=HERE, help="Where the PNGs go (default: docs/images).")
    parser.add_argument("--height", type=int, default=1500, help="Pixels of each page's top shown.")
    parser.add_argument("--reuse", action="store_true", help="Rewrite the pages of the runs kept in --keep.")
    args = parser.parse_args()
    os.environ.setdefault("VKIT_LEARNER_SALT", secrets.token_hex(16))
    import test_report_support as support
    from test_report_verticals import MUST_SHOW

    root = args.keep or Path(tempfile.mkdtemp(prefix="vkit-shots-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        runs = json.loads((root / "runs.json").read_text(encoding="utf-8"))
        runs["pages"] = rewrite(runs)
    else:
        start = time.perf_counter()
        runs = support.vertical_runs(root, size=args.size, echo=print)
        print(f"runs: {time.perf_counter() - start:.0f} s in {root}")
        ids = {k: (v if isinstance(v, int) else v.run_id) for k, v in runs.items() if k not in ("db", "pages")}
        (root / "runs.json").write_text(json.dumps(dict(db=runs["db"], ids=ids, pages={
            k: str(v) for k, v in runs["pages"].items()})), encoding="utf-8")
    seen = support.browse(runs["pages"], MUST_SHOW, root / "profile", shots=root / "shots", shot_height=args.height)
    for name, file in FILES.items():
        wrong = support.failures(seen[name], MUST_SHOW[name])
        if wrong:
            raise SystemExit(f"{name}: {wrong}")
        small_png(seen[name]["screenshot"], args.out / file)
        print(f"{args.out / file}  ({runs['pages'][name]})")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


def small_png(source: Path, target: Path) -> None:
    """``source`` saved as a 256-colour PNG (a third of the size; text and plots look the same)."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                      dither=Image.Dither.NONE).save(target, optimize=True)


def rewrite(runs: dict) -> dict[str, Path]:
    """Each kept run's page written again (same folder) from the store."""
    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.report import write_run_report

    manager = get_plugin_manager()
    with open_store(runs["db"]) as store:
        return {name: write_run_report(store, runs["ids"][name], Path(page).parent, manager=manager)
                for name, page in runs["pages"].items()}


if __name__ == "__main__":
    main()
