"""Each vertical's report answers its question, seen in headless Chromium at 1280 px (one browser session).

Tiny runs of every built-in vertical (each task's ``smoke_overrides``; ~30 s in all) and two scoring runs
(education lessons, a security archive) go into one SQLite store; the training reports are the pages ``vkit
run`` wrote itself. The test asserts what each must show, present and visible: the education session summary
(lowest engagement first, the sentence of ``vkit engagement-report``), the security events' keyframes, the
recommendation comparison chart right after the run; every page loads only its own files, no table makes the
page wider than the window, and a training report shows the run's final status. The committed screenshots in
``docs/images/`` come from ``docs/images/make_screenshots.py`` (the same helpers, longer runs).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_report_support as support  # noqa: E402
from test_report_browser import CHROMIUM  # noqa: E402

#: Per page: the sections that must be present and visible (headings start so), in the order they come.
MUST_SHOW = {
    "medical-diagnosis": ("Classifier", "Worst-classified cases"),
    "security-anomaly": ("Event 1:", "False alarms on normal videos", "Timeline per camera"),
    "education-engagement": ("Engagement levels on the test split", "Classifier"),
    "recommendation": ("Model comparison", "Sample recommendations with their reasons", "Cold-start slice"),
    "education-score": ("Sessions, lowest engagement first", "Session "),
    "security-score": ("Event 1:", "False alarms on normal videos", "Timeline per camera"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return support.vertical_runs(tmp_path_factory.mktemp("verticals"))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed: run `make chromium`")
def test_each_verticals_report_shows_its_answer_in_chromium(runs, tmp_path):
    import shutil

    broken = tmp_path / "broken"  # the checks can fail: the session plot gone, a wide table outside its wrapper
    shutil.copytree(runs["pages"]["education-score"].parent, broken)
    (broken / "education_session_0.png").unlink()
    page = (broken / "report.html").read_text(encoding="utf-8")
    wide = "<table><tr>" + "<td>wide-cell-of-text</td>" * 120 + "</tr></table>"
    (broken / "report.html").write_text(page.replace("</body>", wide + "</body>"), encoding="utf-8")
    pages = dict(runs["pages"], broken=broken / "report.html")
    seen = support.browse(pages, dict(MUST_SHOW, broken=("Session ",)), tmp_path / "profile", shots=tmp_path / "shots",
                          shot_height=1200)
    wrong = " | ".join(support.failures(seen["broken"], ("Session ",)))
    assert "ERR_FILE_NOT_FOUND" in wrong and "education_session_0.png not drawn" in wrong, wrong
    assert "a table outside a scrolling wrapper" in wrong and "px wide in a 1280 px window" in wrong, wrong
    for name, prefixes in MUST_SHOW.items():
        assert support.failures(seen[name], prefixes) == [], name
        assert seen[name]["screenshot"].stat().st_size > 10_000
    for name in support.TASKS:  # written by `vkit run` after its row is closed
        assert seen[name]["status"] == "finished", (name, seen[name]["status"])
    # education: teacher-first, the summary sentence of `vkit engagement-report` right after the run
    edu = seen["education-score"]
    assert edu["headings"][1] == "Sessions, lowest engagement first"
    assert re.search(r"attention (fell|held)", edu["found"]["Session "]["text"]), edu["found"]["Session "]
    assert edu["found"]["Session "]["image"][0], "the session's timeline is not visible"
    assert "Top-scoring videos" not in edu["headings"] and "Scores over time" not in edu["headings"]
    train = seen["education-engagement"]
    assert train["headings"][1].startswith("Engagement levels"), train["headings"]  # level names, before the metrics
    assert "recognised per level: very low" in train["found"]["Engagement levels on the test split"]["text"]
    # security: every event section shows its keyframes, above the generic tables
    for name in ("security-anomaly", "security-score"):
        events = [h for h in seen[name]["headings"] if h.startswith("Event ")]
        assert events and seen[name]["headings"].index(events[0]) == 1, seen[name]["headings"]
        assert "keyframes at" in seen[name]["found"]["Event 1:"]["text"], seen[name]["found"]["Event 1:"]
    # recommendation: the comparison chart first, before the long metrics table
    rec = seen["recommendation"]["headings"]
    assert rec[1].startswith("Model comparison") and rec.index("Metrics") > rec.index("Cold-start slice")


def test_education_sections_order_sessions_and_learners_lowest_first(runs, tmp_path, monkeypatch):
    from vkit.core.store import open_store
    from vkit.plugins.education.privacy import learner_hash
    from vkit.plugins.education.report import session_mean, session_summary, session_timelines
    from vkit.plugins.education.report_sections import report_sections

    store = open_store(runs["db"], read_only=True)
    run = dict(store.get_run(runs["education-score"]), report_dir=str(tmp_path))
    anonymous = report_sections(run, store)
    assert "VKIT_LEARNER_SALT is not set" in anonymous[0].text
    assert {r["learner"] for s in anonymous[1:] for r in s.table} == {"learner #1", "learner #2"}
    monkeypatch.setenv("VKIT_LEARNER_SALT", "pepper")
    sections = report_sections(run, store)
    sessions = session_timelines(store, runs["education-score"], "pepper")
    means = [session_mean(sessions[row["session"]]) for row in sections[0].table]
    assert means == sorted(means) and len(means) == 2 and all(s.top for s in sections)
    for section in sections[1:]:
        name = section.title.removeprefix("Session ")
        assert section.text.startswith(f"{name}: {session_summary(sessions[name])}.")  # engagement-report's sentence
        levels = [row["mean level"] for row in section.table]
        assert levels == sorted(levels)
        assert {row["learner (salted hash)"] for row in section.table} == {
            learner_hash(n, "pepper") for n in ("learner01", "learner02")}
    assert sections[0].replaces == ("top videos", "scores over time", "top events")
    store.close()


def test_numbers_and_names_on_the_page(lite, tmp_path):
    """Integral floats print as integers, rates keep decimals; a data-derived name is escaped in every part."""
    from vkit.core.reporting import ReportSection
    from vkit.hooks.manager import PluginManager
    from vkit.workflows.report import _fmt, _table, write_run_report

    assert _fmt(227184.0) == "227184" and _fmt(1.0) == "1.0000" and _fmt(0.25) == "0.2500" and _fmt(7) == "7"
    table = _table([dict(start=2.25, end=6.0, frames=60.0, auc=1.0), dict(start=0.0, end=1.5, frames=8.0, auc=0.0)])
    assert ">6.0000<" in table and ">60<" in table and ">1.0000<" in table and "<div class='scroll'>" in table
    store, runs = lite
    evil = "<img src=x onerror=alert(1)>$\\evil$"
    section = ReportSection(f"Session {evil}", table=[{"learner": evil, "n": 227184.0}], text=evil, top=True)
    text = write_run_report(store, runs["score"], tmp_path / "r", [section],
                            manager=PluginManager(autoload=False)).read_text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text and ">227184<" in text
    assert text.index("Session &lt;img") < text.index(">Metrics<")  # a top section comes right after the run


def test_security_sections_without_the_files_and_with_odd_names(tmp_path):
    """Keyframes read from the scored file; a file gone gives the reason and the curve; names drawn as text."""
    from vkit.core.store import open_store
    from vkit.core.testing import make_video
    from vkit.plugins.security.report_sections import report_sections

    store = open_store(f"sqlite:///{tmp_path / 'vkit.db'}")
    run_id = store.start_run("security-anomaly", "security", {}, seed=None, kind="score")
    cam = tmp_path / "$\\cam$ <1>"
    normal = tmp_path / "Normal_Videos_event"
    cam.mkdir()
    normal.mkdir()
    clip = make_video(cam / "a.mp4", frames=40, fps=10)
    gone = normal / "n.mp4"
    videos = [dict(path=str(clip), sha256="1" * 64, size=10, duration=4.0, fps=10.0, frames=40, status="ok"),
              dict(path=str(gone), sha256="2" * 64, size=10, duration=4.0, fps=10.0, frames=40, status="ok")]
    ids = store.upsert_videos(videos)
    scores = [dict(segment=s, start=s * 0.5, end=s * 0.5 + 0.5, score=0.9 if 2 <= s < 5 else 0.1) for s in range(8)]
    store.add_video_results(run_id, [
        dict(video_id=ids[str(clip)], status="scored", scores=scores, events=[dict(kind="anomaly", start=1.0, end=2.5, score=0.9)]),
        dict(video_id=ids[str(gone)], status="scored", scores=scores, events=[dict(kind="anomaly", start=1.0, end=2.5, score=0.8)])])
    store.finish_run(run_id, "finished")
    sections = report_sections(dict(store.get_run(run_id), report_dir=str(tmp_path)), store)
    titles = [s.title for s in sections]
    assert titles[:2] == ["Event 1: $\\cam$ <1> / a.mp4 1.0-2.5 s", "Event 2: Normal_Videos_event / n.mp4 1.0-2.5 s"]
    assert "keyframes at 1.0 s" in sections[0].text and "file not available" in sections[1].text
    assert "1 of 1 normal videos" in sections[2].text and sections[2].table[0]["events"] == 1
    assert titles[3] == "Timeline per camera" and len(sections[3].table) == 2
    assert all(Path(s.image).stat().st_size > 5_000 for s in sections if s.image)
    store.close()


def test_an_aggregate_only_education_run_shows_its_sessions_lowest_first(tmp_path):
    from vkit.core.store import open_store
    from vkit.plugins.education.report_sections import report_sections

    store = open_store(f"sqlite:///{tmp_path / 'vkit.db'}")
    run_id = store.start_run("education-engagement", "education", dict(aggregate_only=True), seed=None, kind="score")
    for session, level in (("maths", 2.4), ("<b>art</b>", 0.9)):
        store.log_metrics(run_id, {f"{session}/recordings": 3.0, f"{session}/mean_level": level,
                                   f"{session}/low_share": 0.5, f"{session}/learners_low": 1.0}, step=0, split="session")
    (section,) = report_sections(dict(store.get_run(run_id), report_dir=str(tmp_path)), store)
    assert [r["session"] for r in section.table] == ["<b>art</b>", "maths"] and section.table[0]["level"] == "low"
    assert section.top and "aggregate-only" in section.text
    store.close()


def test_the_page_vkit_run_writes_shows_the_final_status(runs):
    """Written after the run's row is closed: 'finished' with its end time, never 'running' (no browser needed)."""
    for name in support.TASKS:
        page = runs["pages"][name].read_text(encoding="utf-8")
        assert "<th>status</th><td>finished</td>" in page and "running" not in page.split("<h2", 2)[1], name
        assert re.search(r"<th>finished_at</th><td>\d{4}-", page), name
