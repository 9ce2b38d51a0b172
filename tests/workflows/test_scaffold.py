"""`vkit new-plugin`: name validation, the files it writes, and that the generated plugin conforms (without installing it)."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from vkit.registry.errors import ConfigError
from vkit.workflows.scaffold import TEMPLATE_DIR, new_plugin, new_plugin_cmd, plugin_names

EXPECTED_FILES = {
    "README.md", "pyproject.toml", "configs/tiny.py", "tests/conftest.py", "tests/test_vkit_shop_floor.py",
    *(f"vkit_shop_floor/{m}.py" for m in ("__init__", "config", "data", "heads", "metrics", "plugin", "scorer", "target",
                                          "task")),
}


def test_names_are_derived_from_the_slug():
    names = plugin_names("shop-floor")
    assert (names.name, names.module, names.camel, names.task, names.dist) == (
        "shop-floor", "vkit_shop_floor", "ShopFloor", "shop-floor-task", "vkit-shop-floor")


@pytest.mark.parametrize("bad", ["", "Acme", "1acme", "acme_x", "acme--x", "-acme", "acme-", "a cme", "x" * 41, "acmé"])
def test_bad_names_are_rejected_with_the_rule(bad):
    with pytest.raises(ConfigError) as err:
        plugin_names(bad)
    assert repr(bad) in str(err.value)
    assert "lowercase letters and digits" in str(err.value)


def test_builtin_names_are_reserved():
    with pytest.raises(ConfigError, match="'medical' is taken by vkit itself"):
        plugin_names("medical")


def test_writes_a_complete_package(tmp_path):
    target = new_plugin("shop-floor", tmp_path)
    assert target == tmp_path / "vkit-shop-floor"
    written = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert written == EXPECTED_FILES
    pyproject = tomllib.loads((target / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "vkit-shop-floor"
    assert pyproject["project"]["entry-points"]["vkit.plugins"] == {"shop-floor": "vkit_shop_floor.plugin"}
    for path in target.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text and "__module__" not in text, path
            if path.suffix == ".py":
                compile(text, str(path), "exec")
    task = (target / "vkit_shop_floor" / "task.py").read_text()
    assert 'name = "shop-floor-task"' in task and "def datasets(" in task and "def build_scorer(" in task
    assert "from vkit.testing import" in (target / "tests" / "test_vkit_shop_floor.py").read_text()


def test_every_template_is_rendered(tmp_path):
    templates = {p.relative_to(TEMPLATE_DIR).as_posix() for p in TEMPLATE_DIR.rglob("*.tmpl")}
    assert len(templates) == len(EXPECTED_FILES)


@pytest.mark.parametrize("kind, head, metric", [
    ("ordinal", "OrdinalHead", "OrdinalMetric"),
    ("regression", "RegressionHead", "RegressionMetric"),
])
def test_kinds_use_cores_head_and_metric_and_take_a_task_name(tmp_path, kind, head, metric):
    target = new_plugin("shop-floor", tmp_path, kind=kind, task="shop-count")
    written = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert written == EXPECTED_FILES - {"vkit_shop_floor/heads.py", "vkit_shop_floor/metrics.py"}
    package = target / "vkit_shop_floor"
    for path in target.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    config = (package / "config.py").read_text()
    assert f'type="{head}"' in config and f'type="{metric}"' in config
    assert 'name = "shop-count"' in (package / "task.py").read_text()
    assert "HEADS" not in (package / "plugin.py").read_text()  # core's head and metric: only the dataset is registered


def test_bad_kind_and_task_name_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"--kind 'regresion': expected one of classification, ordinal, regression "
                                          r"\(did you mean 'regression'\?\)"):
        new_plugin("acme", tmp_path, kind="regresion")
    with pytest.raises(ConfigError, match=r"--task 'Rep_Count': expected lowercase letters and digits"):
        new_plugin("acme", tmp_path, task="Rep_Count")
    result = CliRunner().invoke(new_plugin_cmd, ["acme", "--dir", str(tmp_path), "--kind", "ranking"])
    assert result.exit_code == 2 and "'ranking' is not one of 'classification', 'ordinal', 'regression'" in result.output


def test_refuses_a_non_empty_target_but_fills_an_empty_one(tmp_path):
    (tmp_path / "vkit-acme").mkdir()
    assert new_plugin("acme", tmp_path) == tmp_path / "vkit-acme"
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        new_plugin("acme", tmp_path)


def test_cli_command(tmp_path):
    result = CliRunner().invoke(new_plugin_cmd, ["acme", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'vkit-acme'}/ (plugin 'acme', package vkit_acme, task 'acme-task')" in result.output
    assert "vkit plugins check acme" in result.output
    bad = CliRunner().invoke(new_plugin_cmd, ["Acme!", "--dir", str(tmp_path)])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)


@pytest.fixture
def generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A generated plugin importable from tmp_path (as --plugin), without entry points; registries restored.

    Its kind is the test's ``kind`` parameter when it has one (``classification`` otherwise)."""
    from vkit.hooks.manager import reset_plugin_manager
    from vkit.registry.registries import REGISTRIES

    new_plugin("zeta", tmp_path, kind=getattr(request, "param", "classification"))
    monkeypatch.syspath_prepend(str(tmp_path / "vkit-zeta"))
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    for reg in REGISTRIES.values():  # core's components first: restoring must never drop them for later tests
        reg.import_from_location()
    before = {key: dict(reg.module_dict) for key, reg in REGISTRIES.items()}
    reset_plugin_manager()
    yield "vkit_zeta.plugin"
    reset_plugin_manager()
    for key, reg in REGISTRIES.items():
        reg.module_dict.clear()
        reg.module_dict.update(before[key])
    for module in [m for m in sys.modules if m.startswith("vkit_zeta")]:
        del sys.modules[module]


def test_generated_plugin_passes_the_static_checks(generated):
    from vkit.workflows.plugin_check import check_plugin, format_results

    results = check_plugin(generated, extra=[generated], smoke=False)
    assert all(r.ok for r in results), format_results(results)
    checks = {r.check for r in results}
    assert {"component HEADS.ZetaHead", "component METRICS.ZetaAccuracy", "component DATASETS.ZetaClipDataset",
            "metric ZetaAccuracy", "task zeta-task config"} <= checks


@pytest.mark.parametrize("generated", ["ordinal", "regression"], indirect=True)
def test_each_kind_passes_the_static_checks(generated):
    from vkit.workflows.plugin_check import check_plugin, format_results

    results = check_plugin(generated, extra=[generated], smoke=False)
    assert all(r.ok for r in results), format_results(results)
    assert {"component DATASETS.ZetaClipDataset", "task zeta-task config"} <= {r.check for r in results}


def test_generated_dataset_and_metric_work_together(generated):
    """The generated dataset feeds the generated metric the way the pipeline does (no training)."""
    import torch

    from vkit_zeta.data import ZetaClipDataset
    from vkit_zeta.metrics import ZetaAccuracy

    ds = ZetaClipDataset(None, "validation", frames=4, size=16, num_samples=6, seed=1)
    assert [ds[i]["label"] for i in range(6)] == [0, 1, 0, 1, 0, 1]
    assert ds[0]["inputs"]["video"].shape == (3, 4, 16, 16)
    metric = ZetaAccuracy()
    metric.process({}, [dict(case_id=ds[i]["case_id"], label=ds[i]["label"], probs=torch.tensor([0.6, 0.4]) if i % 2 == 0
                             else torch.tensor([0.3, 0.7])) for i in range(6)])
    assert metric.compute_metrics(metric.results) == {"accuracy": 1.0, "balanced_accuracy": 1.0}
    assert 0.4 < metric.last_threshold <= 0.7


def test_the_tutorial_in_docs_lists_every_generated_file(tmp_path):
    """docs/plugins.md's "Write a vertical in one sitting" table follows what new-plugin writes."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    tutorial = doc.split("## Write a vertical in one sitting", 1)[1].split("## Hook reference", 1)[0]
    target = new_plugin("acme", tmp_path)
    for path in target.rglob("*"):
        relative = path.relative_to(target).as_posix()
        if path.is_file() and relative != "README.md":
            shown = "tests/" if relative.startswith("tests/") else relative
            assert f"`{shown}`" in tutorial, f"docs/plugins.md tutorial does not mention {shown}"


def test_generated_plugin_scores_and_predicts_and_the_checks_catch_a_sampling_drift(generated, tmp_path, monkeypatch):
    """The smoke run's checkpoint predicts its own test clip exactly and scores two videos (re-run skips them);
    a prediction dataset that samples frames differently from the training dataset fails the predict check."""
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.plugin_check import predict_smoke, run_task_smoke, score_smoke

    task = get_plugin_manager(extra=[generated]).get_task("zeta-task")
    result = run_task_smoke(task, tmp_path=tmp_path / "smoke", plugins=[generated])
    assert "same probabilities and class as the run's test row" in predict_smoke(task, result, plugins=[generated])
    assert score_smoke(task, result, tmp_path, plugins=[generated]) == (
        "scored 2 videos (4 segments stored); the re-run skipped both")  # smoke: scoring.segments=2

    from vkit_zeta.data import ZetaClipDataset

    drifting = ZetaClipDataset.from_files.__func__
    monkeypatch.setattr(ZetaClipDataset, "from_files",
                        classmethod(lambda cls, paths, frames=8, size=32: drifting(cls, paths, frames, size + 2)))
    with pytest.raises(AssertionError, match=r"differ from the run's test row .* must sample and preprocess like"):
        predict_smoke(task, result, plugins=[generated])
