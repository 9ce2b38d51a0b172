"""`vkit plugins check` catches each defect (wrong hook type, unbuildable component, crashing task, clash) and passes a good plugin."""
from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vkit.workflows.plugin_check import check_plugin, format_results, plugins_check_cmd

#: Small plugin modules, one defect each, written to a temporary folder and loaded with --plugin (extra=).
PLUGINS = {
    "vkit_pc_good": '''
        from vkit import hookimpl
        from vkit.core.task import DEFAULT_TRAIN, Task

        class GoodTask(Task):
            name = "pc-good"
            description = "A tiny task on the lifecycle: random clips, TinyC3D, ClsHead."
            default_config = dict(
                seed=0, data=dict(datalist=None, n=8),
                model=dict(backbones=dict(video=dict(type="TinyC3D", widths=[4], num_frames=2, input_size=[8, 8])),
                           head=dict(type="ClsHead", num_classes=2)),
                metric=dict(type="ClassificationMetric"), train=dict(DEFAULT_TRAIN, epochs=3, batch_size=4))
            free_keys = ("model", "metric")
            smoke_overrides = ("train.epochs=1", "data.n=4")

            def datasets(self, cfg, ctx):
                import torch

                g = torch.Generator().manual_seed(0)
                items = [dict(inputs={"video": torch.rand(3, 2, 8, 8, generator=g)}, label=i % 2, case_id=f"c{i}")
                         for i in range(cfg.data.n)]
                return dict(train=items, test=items)

        @hookimpl
        def vkit_tasks():
            return [GoodTask]

        @hookimpl
        def vkit_register_components(registries):
            from mmengine.evaluator import BaseMetric
            from torch import nn

            class PcGoodHead(nn.Module):
                """Linear head."""
                def __init__(self, in_dim, num_classes=2):
                    super().__init__()
                    self.fc = nn.Linear(in_dim, num_classes)

            class PcGoodMetric(BaseMetric):
                """Counts samples."""
                def process(self, data_batch, data_samples):
                    self.results.extend(data_samples)

                def compute_metrics(self, results):
                    return {"count": len(results)}

            registries["HEADS"].register_module(module=PcGoodHead)
            registries["METRICS"].register_module(module=PcGoodMetric)

        @hookimpl
        def vkit_run_finished(run):
            return None
    ''',
    "vkit_pc_wrong_type": '''
        from vkit import hookimpl

        @hookimpl
        def vkit_tasks():
            return "pc-task"

        @hookimpl
        def vkit_run_finished(run):
            return 42
    ''',
    "vkit_pc_unbuildable": '''
        from vkit import hookimpl

        @hookimpl
        def vkit_register_components(registries):
            from mmengine.evaluator import BaseMetric
            from torch import nn

            class PcNeedsWeights(nn.Module):
                """Needs a file nobody passes."""
                def __init__(self, in_dim, weights_path):
                    super().__init__()

            class PcUndocumentedMetric(BaseMetric):
                def process(self, data_batch, data_samples):
                    pass

                def compute_metrics(self, results):
                    return {}

            registries["HEADS"].register_module(module=PcNeedsWeights)
            registries["METRICS"].register_module(module=PcUndocumentedMetric)
    ''',
    "vkit_pc_crash": '''
        from vkit import hookimpl
        from vkit.core.task import DEFAULT_TRAIN, Task

        class CrashTask(Task):
            name = "pc-crash"
            description = "A task whose datasets raise."
            default_config = dict(seed=0, train=dict(DEFAULT_TRAIN))

            def datasets(self, cfg, ctx):
                raise RuntimeError("boom in pc-crash")

        @hookimpl
        def vkit_tasks():
            return [CrashTask]
    ''',
    "vkit_pc_clash_a": '''
        from vkit import hookimpl
        from vkit.core.task import Task

        class DupTask(Task):
            name = "pc-dup"
            description = "Declared by two plugins."
            default_config = dict(seed=0)

        @hookimpl
        def vkit_tasks():
            return [DupTask]
    ''',
}
PLUGINS["vkit_pc_clash_b"] = PLUGINS["vkit_pc_clash_a"]


@pytest.fixture(autouse=True)
def fixture_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The modules above importable; no entry points; registries and managers restored afterwards."""
    from vkit.hooks.manager import reset_plugin_manager
    from vkit.registry.registries import REGISTRIES

    folder = tmp_path / "plugins"
    folder.mkdir()
    for module, source in PLUGINS.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    monkeypatch.setenv("VKIT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    for reg in REGISTRIES.values():  # core's components first: restoring must never drop them for later tests
        reg.import_from_location()
    before = {key: dict(reg.module_dict) for key, reg in REGISTRIES.items()}
    reset_plugin_manager()
    yield folder
    reset_plugin_manager()
    for key, reg in REGISTRIES.items():
        reg.module_dict.clear()
        reg.module_dict.update(before[key])
    for module in [m for m in sys.modules if m.startswith("vkit_pc_")]:
        del sys.modules[module]


def by_check(results) -> dict[str, object]:
    return {r.check: r for r in results}


def test_a_good_plugin_passes_every_check(tmp_path):
    results = check_plugin("vkit_pc_good", extra=["vkit_pc_good"], tmp_dir=tmp_path)
    assert all(r.ok for r in results), format_results(results)
    checks = by_check(results)
    assert set(checks) == {"loads", "hook vkit_tasks", "hook vkit_run_finished", "hook vkit_register_components",
                           "component HEADS.PcGoodHead", "component METRICS.PcGoodMetric", "metric PcGoodMetric",
                           "task pc-good config", "task pc-good smoke run", "no clashes"}
    assert checks["task pc-good smoke run"].reason.startswith("finished (test/")
    assert checks["hook vkit_register_components"].reason == "registered 2 component(s)"
    assert format_results(results).endswith("10 passed, 0 failed")


def test_a_hook_returning_the_wrong_type_fails():
    checks = by_check(check_plugin("vkit_pc_wrong_type", extra=["vkit_pc_wrong_type"]))
    assert not checks["hook vkit_tasks"].ok
    assert checks["hook vkit_tasks"].reason.startswith("returned 'pc-task', expected a list of Task subclasses or None")
    assert not checks["hook vkit_run_finished"].ok
    assert checks["hook vkit_run_finished"].reason == "returned 42, expected None"
    assert checks["loads"].ok


def test_a_component_that_does_not_build_from_its_default_config_fails():
    checks = by_check(check_plugin("vkit_pc_unbuildable", extra=["vkit_pc_unbuildable"]))
    head = checks["component HEADS.PcNeedsWeights"]
    assert not head.ok
    assert "does not build from dict(type=...) (add a smoke_config() classmethod)" in head.reason
    assert "weights_path" in head.reason
    metric = checks["metric PcUndocumentedMetric"]
    assert not metric.ok and "has no docstring" in metric.reason
    assert checks["component METRICS.PcUndocumentedMetric"].ok  # it builds; only its docs are missing


def test_a_task_that_crashes_on_its_smoke_run_fails(tmp_path):
    smoke_dir = tmp_path / "smoke"
    smoke_dir.mkdir()
    checks = by_check(check_plugin("vkit_pc_crash", extra=["vkit_pc_crash"], tmp_dir=smoke_dir))
    assert checks["task pc-crash config"].ok
    smoke = checks["task pc-crash smoke run"]
    assert not smoke.ok
    assert smoke.reason == "RuntimeError: boom in pc-crash"
    assert "Traceback" in smoke.traceback and "in datasets" in smoke.traceback  # what --debug prints
    assert list(smoke_dir.iterdir()) == []  # the smoke run's temporary folder is gone


def test_a_name_clash_fails_for_both_plugins():
    extra = ["vkit_pc_clash_a", "vkit_pc_clash_b"]
    first = by_check(check_plugin("vkit_pc_clash_a", extra=extra, smoke=False))["no clashes"]
    second = by_check(check_plugin("vkit_pc_clash_b", extra=extra, smoke=False))["no clashes"]
    assert not first.ok and not second.ok
    assert "declares task 'pc-dup', already declared by vkit_pc_clash_a" in second.reason
    assert first.reason == second.reason


def test_unknown_and_disabled_plugins_fail_the_load_check(monkeypatch):
    [result] = check_plugin("vkit_pc_goood", extra=["vkit_pc_good"])
    assert not result.ok and "no plugin 'vkit_pc_goood' (did you mean 'vkit_pc_good'?)" in result.reason
    monkeypatch.setenv("VKIT_DISABLE_PLUGINS", "vkit_pc_good")
    [result] = check_plugin("vkit_pc_good", extra=["vkit_pc_good"])
    assert not result.ok and result.reason == "plugin 'vkit_pc_good' is disabled; `vkit plugins enable vkit_pc_good`"


@click.group()
@click.option("--plugin", "plugins", multiple=True)
@click.pass_context
def root(ctx: click.Context, plugins: tuple[str, ...]) -> None:
    ctx.obj = dict(plugins=plugins)


root.add_command(plugins_check_cmd)


def test_cli_exit_code_and_json(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(root, ["--plugin", "vkit_pc_wrong_type", "check", "vkit_pc_wrong_type"])
    assert bad.exit_code == 1, bad.output
    assert "FAIL  hook vkit_tasks: returned 'pc-task'" in bad.output
    assert bad.output.splitlines()[-1].endswith("failed") and " 0 failed" not in bad.output
    good = runner.invoke(root, ["--plugin", "vkit_pc_good", "check", "vkit_pc_good", "--no-smoke", "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.output)
    assert report["ok"] is True and report["plugin"] == "vkit_pc_good"
    assert {"check": "task pc-good config", "ok": True, "reason": "default config and smoke_overrides validate"} in report["checks"]
    assert not any(c["check"].endswith("smoke run") for c in report["checks"])
