"""docs/plugins.md documents every hook with a runnable example, and every hook is exercised by a test."""
from __future__ import annotations

import logging
import re
import types
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vkit.hooks.hookdocs import BEGIN, END, hook_reference_markdown, hook_specs, main
from vkit.hooks.manager import PluginManager

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"
HOOKS = [spec.__name__ for spec in hook_specs()]


def section(hook: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"^### {hook}\n(.*?)(?=^### |^{re.escape(END)})", text, re.S | re.M)
    assert match, f"docs/plugins.md has no '### {hook}' section"
    return match.group(1)


def example(hook: str) -> str:
    match = re.search(r"\*\*Example\*\*\n\n```python\n(.*?)\n```", section(hook), re.S)
    assert match, f"docs/plugins.md: section {hook} has no python example"
    return match.group(1)


def load_example(hook: str) -> PluginManager:
    """Run the documented example as a plugin module and register it with a fresh manager."""
    module = types.ModuleType(f"docs_example_{hook}")
    exec(compile(example(hook), f"docs/plugins.md#{hook}", "exec"), module.__dict__)
    assert callable(getattr(module, hook, None)), f"the {hook} example does not define {hook}()"
    mgr = PluginManager(autoload=False)
    assert mgr.register(module, "example"), mgr.errors
    return mgr


def check_register_components(mgr: PluginManager, fresh_registries, **_) -> None:
    assert mgr.register_components(fresh_registries) == {"example": {"HEADS": ["EngagementHead"]}}
    import torch

    head = fresh_registries["HEADS"].build(dict(type="EngagementHead", in_channels=4, num_classes=3))
    assert head(torch.zeros(2, 4)).shape == (2, 3)


def check_tasks(mgr: PluginManager, **_) -> None:
    assert mgr.get_task("demo-classify").plugin == "example"


def check_cli_commands(mgr: PluginManager, **_) -> None:
    result = CliRunner().invoke(click.Group("vkit", commands=mgr.cli_commands()), ["hello"])
    assert result.output == "hello from my plugin\n"


def check_run_finished(mgr: PluginManager, capsys, **_) -> None:
    mgr.notify_run_finished(dict(id=3, task="t", status="finished", error=None, metrics={"test/auc": 0.91},
                                 db="sqlite:///vkit.db", report=None))
    assert capsys.readouterr().out == "run 3: AUC 0.91\n"


def check_video_scored(mgr: PluginManager, caplog, **_) -> None:
    with caplog.at_level(logging.WARNING, logger="myplugin"):
        mgr.notify_video_scored(dict(path="cam1.mp4", sha256="0" * 64, status="scored", error=None, max_score=0.95,
                                     mean_score=0.4, events=[{"start": 1.0, "end": 2.0, "score": 0.95}]))
    assert [r.getMessage() for r in caplog.records if r.name == "myplugin"] == [
        "ALERT cam1.mp4: score 0.95, first event {'start': 1.0, 'end': 2.0, 'score': 0.95}"]


def check_report_sections(mgr: PluginManager, **_) -> None:
    from vkit.testing import temp_store

    with temp_store() as store:
        run_id = store.start_run("demo-classify", "example", {}, seed=0)
        store.add_predictions(run_id, "test", [dict(item_id="a", label=1, prediction=0),
                                               dict(item_id="b", label=0, prediction=0)])
        run = dict(store.get_run(run_id), report_dir=".", db=store.url)
        [section] = mgr.report_sections(run, store)
        assert (section.title, section.text) == ("misclassified cases", "1 of 2: a")
        assert mgr.report_sections(dict(run, task="another-task"), store) == []


def check_preview(mgr: PluginManager, **_) -> None:
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "walk.csv"
        recording.write_text("0\n1\n2\n")
        [band] = mgr.preview(recording)
        assert band.shape == (16, 3) and band[:, 2].tolist() == [2.0] * 16
        assert mgr.preview(Path(tmp) / "clip.mp4") is None  # not a recording: left to vkit's own preview
    assert np.ndim(band) == 2


def check_store_schema(mgr: PluginManager, **_) -> None:
    import sqlalchemy as sa

    from vkit.core.store.plugin_schema import ensure_plugin_schema
    from vkit.testing import temp_store

    [schema] = mgr.store_schemas()
    assert schema.name == "demo" and schema.version_table == "alembic_version_demo" and list(schema.run_tables) == ["demo_notes"]
    with temp_store() as store:
        assert ensure_plugin_schema(store, schema) is True   # a store without the tables gets them
        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO demo_notes (run_id, note) VALUES (1, 'hello')"))
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version_demo")).scalar() == "0001"


CHECKS: dict[str, Callable[..., None]] = {
    "vkit_register_components": check_register_components,
    "vkit_tasks": check_tasks,
    "vkit_cli_commands": check_cli_commands,
    "vkit_run_finished": check_run_finished,
    "vkit_video_scored": check_video_scored,
    "vkit_report_sections": check_report_sections,
    "vkit_preview": check_preview,
    "vkit_store_schema": check_store_schema,
}


def test_reference_is_exactly_the_generated_text():
    text = DOC.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    between = text.split(BEGIN)[1].split(END)[0]
    assert between == "\n\n" + hook_reference_markdown() + "\n", (
        "docs/plugins.md drifted from the hookspecs: run python -m vkit.hooks.hookdocs --write docs/plugins.md")
    assert main(["--check", str(DOC)]) == 0


def test_check_flag_fails_on_drift(tmp_path, capsys):
    stale = tmp_path / "plugins.md"
    stale.write_text(DOC.read_text().replace("### vkit_tasks", "### vkit_taskz"))
    assert main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["--write", str(stale)]) == 0 and stale.read_text() == DOC.read_text()


def test_every_hook_has_an_example_check():
    assert sorted(CHECKS) == sorted(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_section_has_signature_arguments_and_a_runnable_example(hook, fresh_registries, capsys, caplog):
    text = section(hook)
    assert f"def {hook}(" in text and "**Returns:**" in text and "@hookimpl" in example(hook)
    mgr = load_example(hook)
    CHECKS[hook](mgr, fresh_registries=fresh_registries, capsys=capsys, caplog=caplog)
    assert mgr.errors == []


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_a_test(hook):
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_docs.py"]
    assert any(hook in p.read_text() for p in tests), f"no test under tests/ mentions {hook}"
