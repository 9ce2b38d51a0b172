"""Support for the verticals' report tests and ``docs/images/make_screenshots.py`` (no tests here).

:func:`vertical_runs` fills one SQLite store with a training run of each built-in vertical and two scoring
runs (education lessons, a security archive), each report written by the run (``vkit run``) or by
``write_run_report`` (scoring runs). ``size="tiny"`` uses each task's ``smoke_overrides`` (seconds, numbers
meaningless: what the tests need); ``size="showcase"`` trains longer on more data for the screenshots.
:func:`browse` opens pages in ONE headless-Chromium session (``test_report_browser.DevTools``) and returns
what each page shows; :func:`screenshot` saves its top part.
"""
from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from test_report_browser import DevTools  # noqa: E402

#: Width of the browser window: the issue's 1280 px (tables must scroll inside it, the page must not).
WIDTH = 1280
#: The education lessons: two sessions holding the same learner names (titles must tell them apart).
LESSONS = ("data.synthetic.sessions=2", "data.synthetic.learners=2")
#: The tiny education run's lessons: 12 s, 6 segments, low stretches from 2 s.
TINY_EDUCATION = ("data.synthetic.lesson_seconds=12", "timeline.segments=6", "timeline.min_seconds=2")
#: Per task: the overrides of the showcase runs (a few minutes on 2 cores; the numbers still say little).
SHOWCASE = {
    "medical-diagnosis": ("train.epochs=4", "data.synthetic.n_train=48", "data.synthetic.n_val=16",
                          "data.synthetic.n_test=24", "compression.stages=[]"),
    "security-anomaly": ("train.epochs=10",),
    "education-engagement": ("train.epochs=8", "data.synthetic.n_train=160", "data.synthetic.n_val=40",
                             "data.synthetic.n_test=40", "data.synthetic.sessions=2", "data.synthetic.learners=3",
                             "data.synthetic.lesson_seconds=48"),
    "recommendation": ("train.epochs=5",),
}
TASKS = ("medical-diagnosis", "security-anomaly", "education-engagement", "recommendation")


def _overrides(task: Any, size: str) -> list[str]:
    if size == "showcase":
        return list(SHOWCASE[task.name])
    extra = list(LESSONS) + list(TINY_EDUCATION) if task.name == "education-engagement" else []
    keys = {e.split("=")[0] for e in extra}
    return [o for o in task.smoke_overrides if o.split("=")[0] not in keys] + extra


def vertical_runs(root: Path, size: str = "tiny", echo: Any = None) -> dict[str, Any]:
    """``{"db": url, "<task>": RunResult, "education-score": id, "security-score": id, "pages": {name: page}}``."""
    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.report import write_run_report
    from vkit.workflows.run import run_task
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    manager = get_plugin_manager()
    manager.register_components()
    db = f"sqlite:///{root / 'vkit.db'}"
    data = root / "data"
    echo = echo or (lambda *_: None)
    out: dict[str, Any] = dict(db=db, pages={})
    for name in TASKS:
        task = manager.get_task(name)
        result = run_task(name, overrides=_overrides(task, size), db_url=db, work_dir=root / f"work-{name}",
                          data_root=data, echo=echo)
        assert result.status == "finished", (name, result)
        out[name] = result
        out["pages"][name] = Path(result.summary["report"])
    options = ScoreOptions(workers=0, batch_size=4)
    lessons = data / "education-engagement" / "Lessons"
    scored = score_archive("education-engagement", [lessons], str(out["education-engagement"].run_id), db_url=db,
                           options=options)
    out["education-score"] = scored.run_id
    archive = data / "security-anomaly"  # its training videos are new to the model (the test split is a duplicate)
    scored = score_archive("security-anomaly", [archive], str(out["security-anomaly"].run_id), db_url=db, options=options)
    out["security-score"] = scored.run_id
    store = open_store(db)
    try:
        for name in ("education-score", "security-score"):
            out["pages"][name] = write_run_report(store, out[name], root / f"report-{name}", manager=manager)
    finally:
        store.close()
    return out


#: What the browser reports of a page: requests, failed requests, images, overflow, and ``checks``' results.
_PAGE_JS = """
(() => {
  const visible = el => { if (!el) return false; const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const h2 = Array.from(document.querySelectorAll('h2'));
  const section = prefix => { const h = h2.find(x => x.textContent.startsWith(prefix)); if (!h) return null;
    const parts = []; for (let n = h.nextElementSibling; n && n.tagName !== 'H2'; n = n.nextElementSibling) parts.push(n);
    return {h, parts}; };
  const found = {};
  for (const prefix of PREFIXES) {
    const s = section(prefix);
    const img = s ? s.parts.flatMap(p => p.tagName === 'FIGURE' ? [p.querySelector('img')] :
                                     Array.from(p.querySelectorAll ? p.querySelectorAll('img') : [])).find(Boolean) : null;
    const text = s ? s.parts.filter(p => p.tagName === 'P').map(p => p.textContent).join(' ') : '';
    found[prefix] = {present: !!s, visible: !!s && visible(s.h), text,
                     image: img ? [visible(img), img.complete, img.naturalWidth, img.naturalHeight] : null};
  }
  const tables = Array.from(document.querySelectorAll('table')).map(t => [visible(t), t.parentElement.className,
    t.parentElement.getBoundingClientRect().right <= window.innerWidth + 1]);
  const status = Array.from(document.querySelectorAll('tr')).find(r => r.firstChild && r.firstChild.textContent === 'status');
  return JSON.stringify({found, tables, headings: h2.map(h => h.textContent),
    images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    status: status ? status.lastChild.textContent : null});
})()
"""


def browse(pages: Mapping[str, Path], prefixes: Mapping[str, Sequence[str]], profile: Path,
           shots: Path | None = None, shot_height: int = 2400) -> dict[str, dict[str, Any]]:
    """Open each page in one Chromium session at :data:`WIDTH` px; per page what it shows (see ``_PAGE_JS``) and
    its ``requests``/``failed`` URLs; with ``shots``, a PNG of the page's top ``shot_height`` px there."""
    tools = DevTools(profile)
    seen: dict[str, dict[str, Any]] = {}
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            tools.send(f"{domain}.enable", session=session)
        tools.send("Emulation.setDeviceMetricsOverride",
                   {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        for name, page in pages.items():
            tools.events.clear()
            tools.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            tools.wait_for("Page.loadEventFired")
            script = _PAGE_JS.replace("PREFIXES", json.dumps(list(prefixes.get(name, ()))))
            value = tools.send("Runtime.evaluate", {"expression": script, "returnByValue": True},
                               session=session)["result"]["value"]
            info = json.loads(value)
            info["requests"] = [e["params"]["request"]["url"] for e in tools.events
                                if e.get("method") == "Network.requestWillBeSent"]
            info["failed"] = [e["params"] for e in tools.events if e.get("method") == "Network.loadingFailed"]
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                clip = dict(x=0, y=0, width=WIDTH, height=shot_height, scale=1)
                shot = tools.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip}, session=session)
                info["screenshot"] = shots / f"report-{name}.png"
                info["screenshot"].write_bytes(base64.b64decode(shot["data"]))
            seen[name] = info
    finally:
        tools.close()
    return seen


def failures(seen: dict[str, Any], prefixes: Iterable[str]) -> list[str]:
    """What is wrong with one page as :func:`browse` saw it (empty: all well)."""
    wrong = []
    if seen["failed"]:
        wrong.append(f"failed requests {seen['failed']}")
    if not seen["requests"] or not all(u.startswith("file://") for u in seen["requests"]):
        wrong.append(f"requests beyond file:// {seen['requests']}")
    wrong += [f"image {src} not drawn" for src, complete, width in seen["images"] if not (complete and width > 0)]
    if seen["scrollWidth"] > seen["innerWidth"]:
        wrong.append(f"the page is {seen['scrollWidth']} px wide in a {seen['innerWidth']} px window")
    wrong += [f"a table outside a scrolling wrapper ({cls!r})" for _, cls, _ in seen["tables"] if cls != "scroll"]
    for prefix in prefixes:
        part = seen["found"][prefix]
        if not (part["present"] and part["visible"]):
            wrong.append(f"section {prefix!r} missing or hidden (headings: {seen['headings']})")
        elif part["image"] is not None and not (part["image"][0] and part["image"][2] > 0):
            wrong.append(f"the image of {prefix!r} is not visible: {part['image']}")
    return wrong
