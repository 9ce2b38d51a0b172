"""``load_trained``: the one reload path reproduces what vkit predict / score / recommend give, for every built-in task
and a compressed stage; the metric's decision travels with the checkpoint; declared capabilities are checked at load."""
from __future__ import annotations

import json
import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vkit.core.decision import Decision, metric_decision, sidecar_decision
from vkit.registry.errors import CheckpointError, ConfigError

#: A medical smoke run whose chain keeps a channel-pruned stage whatever its speed or metric.
MEDICAL_CHAIN = ["compression.stages=[{type: ChannelPrune, amount: 0.5}]", "compression.max_metric_drop=1.0",
                 "compression.allow_size_only=True"]
EXTRA = {"medical-diagnosis": MEDICAL_CHAIN, "education-engagement": [], "security-anomaly": [], "recommendation": []}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """One smoke run per built-in task (its own ``smoke_overrides``), made on first use."""
    from vkit.workflows.plugin_check import run_task_smoke

    made: dict[str, object] = {}

    def get(task: str):
        if task not in made:
            made[task] = run_task_smoke(task, EXTRA[task], tmp_path_factory.mktemp(task))
        return made[task]
    return get


def _task(name: str):
    from vkit.hooks.manager import get_plugin_manager

    return get_plugin_manager().get_task(name)()


def _files(result, suffixes: tuple[str, ...], n: int) -> list[str]:
    root = Path(result.summary["data"])
    root = root if root.is_dir() else root.parent
    return [str(p) for p in sorted(root.rglob("*")) if p.name.endswith(suffixes)][:n]


def _reload_rows(result, task_name: str, inputs: list[str], stage: str | None = None) -> tuple[object, list[dict]]:
    """What load_trained's model gives for ``inputs``: the task's prediction dataset, core's predict, the decision."""
    from vkit.core.evaluation import predict
    from vkit.core.store import open_store
    from vkit.core.trained import load_trained
    from vkit.workflows.predict import prediction_rows

    task = _task(task_name)
    trained = load_trained(str(result.run_id), store=open_store(result.db_url), task=task, stage=stage)
    assert not trained.model.training
    return trained, prediction_rows(predict(trained.model, task.prediction_dataset(trained.config, inputs)),
                                    trained.decision)


@pytest.mark.parametrize("task_name,suffixes,rule", [("medical-diagnosis", (".nii.gz",), "threshold"),
                                                     ("education-engagement", (".mp4", ".avi"), "ordinal")])
def test_load_trained_reproduces_vkit_predict(runs, task_name: str, suffixes: tuple[str, ...], rule: str) -> None:
    from vkit.workflows.predict import predict_task

    result = runs(task_name)
    inputs = _files(result, suffixes, 3)
    assert len(inputs) == 3
    _, predicted = predict_task(task_name, str(result.run_id), inputs, db_url=result.db_url)
    trained, reloaded = _reload_rows(result, task_name, inputs)
    assert trained.decision.rule == rule and trained.meta["model_config"]["type"] == "VideoModel"
    assert [r["item_id"] for r in predicted] == [r["item_id"] for r in reloaded]
    for mine, theirs in zip(reloaded, predicted):
        assert mine["values"]["probs"] == pytest.approx(theirs["values"]["probs"], abs=1e-6)
        assert mine["prediction"] == theirs["prediction"]
        assert theirs["class"] == trained.classes[theirs["prediction"]]       # named by the run's classes
        assert list(theirs["labelled"]) == trained.classes                    # each probability labelled
    assert trained.sha256 == json.loads(trained.files.sidecar.read_text())["sha256"]


def test_load_trained_reproduces_a_compressed_stage(runs) -> None:
    from vkit.core.store import open_store
    from vkit.workflows.predict import predict_task

    result = runs("medical-diagnosis")
    inputs = _files(result, (".nii.gz",), 3)
    run_id, predicted = predict_task("medical-diagnosis", str(result.run_id), inputs, db_url=result.db_url,
                                     compressed="final")
    trained, reloaded = _reload_rows(result, "medical-diagnosis", inputs, stage="final")
    assert trained.stage["stage"] == "ChannelPrune" and trained.sha256 == trained.stage["sha256"]
    assert open_store(result.db_url).get_run(run_id)["model_sha256"] == trained.sha256
    assert np.asarray([r["values"]["probs"] for r in reloaded]) == pytest.approx(
        np.asarray([r["values"]["probs"] for r in predicted]), abs=1e-6)
    assert [r["prediction"] for r in reloaded] == [r["prediction"] for r in predicted]
    full, _ = _reload_rows(result, "medical-diagnosis", inputs)
    assert full.decision == trained.decision  # the stage decides with the checkpoint's threshold


def test_load_trained_reproduces_vkit_score_of_security(runs) -> None:
    """The run's own test rows (written as vkit score writes them) come back from the reloaded model."""
    from vkit.core.store import open_store
    from vkit.core.trained import load_trained
    from vkit.plugins.security.features import feature_extractor
    from vkit.plugins.security.scorer import AnomalyScorer

    result = runs("security-anomaly")
    store = open_store(result.db_url)
    trained = load_trained(str(result.run_id), store=store, task=_task("security-anomaly"))
    assert trained.meta["model_config"]["type"] == "MILAnomalyModel"
    scorer = AnomalyScorer.from_model(trained.model, feature_extractor(trained.meta["features"]), trained.meta["events"],
                                      trained.sha256)
    rows = store.video_scores(result.run_id)
    assert rows, "the run scored its test split"
    video = rows[-1]["video_id"]
    [summary] = store.model_summaries(trained.sha256, [video])           # the run's model scored it
    expected = [r["score"] for r in rows if r["video_id"] == video]
    got = scorer.score(torch.as_tensor(scorer.decode(summary["path"]))).numpy()
    assert got == pytest.approx(np.asarray(expected), abs=1e-5)


def test_load_trained_reproduces_vkit_recommend(runs) -> None:
    from vkit.core.trained import load_trained
    from vkit.plugins.recommendation.serve import service
    from vkit.plugins.recommendation.cli import recommend

    result = runs("recommendation")
    users = ["u0001", "u0002", "nobody"]
    _, given = recommend(str(result.run_id), users, k=5, db_url=result.db_url)
    trained = load_trained(result.work_dir / "model.safetensors", task=_task("recommendation"))
    assert trained.meta["model_config"]["num_users"] == trained.model.num_users
    assert service(trained).recommend_many(users, 5) == given


def test_an_old_sidecar_without_model_config_reloads_through_its_task(runs, tmp_path: Path) -> None:
    """Checkpoints written before model_config/decision were saved still load (the task rebuilds the model) and
    decide by their fitted threshold."""
    from vkit.core.trained import load_trained

    result = runs("medical-diagnosis")
    folder = tmp_path / "old"
    folder.mkdir()
    weights = shutil.copy2(result.work_dir / "model.safetensors", folder / "model.safetensors")
    meta = json.loads((result.work_dir / "model.json").read_text())
    new = load_trained(result.work_dir / "model.safetensors")
    for key in ("model_config", "decision"):
        meta.pop(key)
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="records no 'model_config'.*'medical-diagnosis'"):
        load_trained(weights)
    old = load_trained(weights, task=_task("medical-diagnosis"))
    assert old.decision == new.decision == Decision("threshold", threshold=meta["fitted"]["threshold"])
    x = {"volume": torch.rand(2, 1, 16, 16, 16)}
    assert torch.allclose(old.model(x), new.model(x))
    with pytest.raises(CheckpointError, match="trained by task 'medical-diagnosis'.*not 'security-anomaly'"):
        load_trained(weights, task=_task("security-anomaly"))


def test_vkit_predict_prints_the_threshold_beside_class_labelled_probabilities(runs) -> None:
    from click.testing import CliRunner

    from vkit.workflows.cli import cli

    result = runs("medical-diagnosis")
    scan = _files(result, (".nii.gz",), 1)
    threshold = json.loads((result.work_dir / "model.json").read_text())["decision"]["threshold"]
    shown = CliRunner().invoke(cli, ["--db", result.db_url, "predict", "medical-diagnosis", "--checkpoint",
                                     str(result.run_id), *scan], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"decision: positive if P(positive) >= {threshold:.4f}, else negative" in shown.output
    assert "negative 0." in shown.output and "positive 0." in shown.output
    assert re.search(rf"(positive \(p=0\.\d+ >=|negative \(p=0\.\d+ <) ({threshold:.2f}|{threshold:.4f})\)", shown.output), shown.output
    as_json = CliRunner().invoke(cli, ["--db", result.db_url, "predict", "medical-diagnosis", "--checkpoint",
                                       str(result.run_id), "--json", *scan])
    [row] = json.loads(as_json.output)["predictions"]
    assert set(row["labelled"]) == {"negative", "positive"} and row["class"] in ("negative", "positive")
    assert row["class"] == ("positive" if row["labelled"]["positive"] >= threshold else "negative")


# ---------------------------------------------------------------------- the decision
@pytest.mark.parametrize("decision,outputs,expected", [
    (Decision("threshold", threshold=0.25), [0.7, 0.3], 1),
    (Decision("threshold", threshold=0.3), [0.7, 0.3], 1),              # equal to the threshold: positive
    (Decision("threshold", threshold=0.31), [0.7, 0.3], 0),
    (Decision("argmax"), [0.2, 0.5, 0.3], 1),
    (Decision("ordinal", ordinal="median"), [0.3, 0.1, 0.3, 0.3], 2),
    (Decision("ordinal", ordinal="expected"), [0.0, 0.0, 0.5, 0.5], 2),
    (Decision("value"), [3.5], 3.5),
])
def test_a_decision_decides_one_item(decision: Decision, outputs: list[float], expected: object) -> None:
    assert decision.decide(outputs) == expected
    assert Decision.from_dict(decision.to_dict()) == decision


def test_the_metric_declares_its_decision_and_old_sidecars_imply_theirs() -> None:
    import vkit.core.metrics  # noqa: F401 - registers ClassificationMetric
    import vkit.core.ordinal  # noqa: F401 - registers OrdinalMetric
    from vkit.registry.registries import METRICS

    assert metric_decision(dict(type="ClassificationMetric"), {"threshold": 0.4}) == Decision("threshold", threshold=0.4)
    assert metric_decision(dict(type="ClassificationMetric"), {}) == Decision("argmax")
    assert metric_decision(dict(type="OrdinalMetric", decision="expected")) == Decision("ordinal", ordinal="expected")

    class _Counts:  # a regression metric of a plugin: it reads values, so it decides "value"
        output = "value"

    METRICS.register_module(name="_CountsForDecisionTest", module=_Counts, force=True)
    assert metric_decision(dict(type="_CountsForDecisionTest")) == Decision("value")
    assert sidecar_decision(dict(fitted={"threshold": 0.2})) == Decision("threshold", threshold=0.2)
    assert sidecar_decision(dict(decision="median")) == Decision("ordinal", ordinal="median")  # education's old key
    assert sidecar_decision({}) == Decision("argmax")
    with pytest.raises(CheckpointError, match="decision: .*threshold 1.5"):
        sidecar_decision(dict(decision=dict(rule="threshold", threshold=1.5)))
    assert Decision("threshold", threshold=0.41).describe(["benign", "malignant"]) == \
        "malignant if P(malignant) >= 0.4100, else benign"


# ---------------------------------------------------------------------- declared capabilities
def _plugin_with(task_cls: type) -> types.ModuleType:
    from vkit import hookimpl

    module = types.ModuleType("vkit_fx_capability")

    @hookimpl
    def vkit_tasks() -> list[type]:
        return [task_cls]
    module.vkit_tasks = vkit_tasks
    return module


def test_a_capability_declared_but_missing_fails_the_plugin_at_load_naming_it() -> None:
    from vkit.core.task import Task
    from vkit.hooks.manager import PluginManager

    class Boasting(Task):
        name, description = "fx-boasting", "Declares scoring but cannot score."
        capabilities = frozenset({"predict", "score"})

        def prediction_dataset(self, cfg, inputs, skip_bad=False):  # noqa: ANN001, ANN201 - predict is real
            return list(inputs)

    mgr = PluginManager(autoload=False)
    mgr.register(_plugin_with(Boasting), "vkit_fx_capability")
    assert mgr.tasks() == {}
    [failure] = mgr.errors
    assert failure.plugin == "vkit_fx_capability" and failure.message.startswith(
        'plugin "vkit_fx_capability" returned a bad value from vkit_tasks: task class ')
    assert failure.message.endswith("('fx-boasting') declares capability 'score' but does not implement build_scorer()")

    class Misspelt(Task):
        name, description = "fx-misspelt", "Declares an unknown capability."
        capabilities = frozenset({"scor"})

    mgr = PluginManager(autoload=False)
    mgr.register(_plugin_with(Misspelt), "vkit_fx_capability")
    mgr.tasks()
    assert "unknown capability 'scor' (did you mean 'score'?)" in mgr.errors[0].message


def test_the_builtin_tasks_and_scorers_declare_what_they_support() -> None:
    from vkit.core.capabilities import scorer_problem, task_problem
    from vkit.hooks.manager import get_plugin_manager
    from vkit.plugins.education.scorer import EngagementScorer

    tasks = get_plugin_manager().tasks()
    assert {n: set(t.capabilities) for n, t in tasks.items() if t.plugin in ("medical", "education", "security",
                                                                             "recommendation")} == {
        "medical-diagnosis": {"predict", "skip_bad"}, "education-engagement": {"predict", "score"},
        "security-anomaly": {"score"}, "recommendation": {"recommend"}}
    from vkit.core.task import Task

    assert all(task_problem(t, Task) is None for t in tasks.values())
    scorer = EngagementScorer.__new__(EngagementScorer)
    assert scorer_problem(scorer) is None and "compressed" in EngagementScorer.supports
    scorer.compressed_module = ""
    assert scorer_problem(scorer) == "EngagementScorer declares 'compressed' in supports but its compressed_module is ''"


def test_a_task_without_a_capability_is_refused_by_name() -> None:
    from vkit.workflows.predict import predict_task

    with pytest.raises(ConfigError, match=r"task 'security-anomaly' \(plugin 'security'\) cannot predict files "
                                          r"\(`vkit predict`\): it does not declare the 'predict' capability"):
        predict_task("security-anomaly", "1", ["a.mp4"], db_url="sqlite:///:memory:")


def test_a_metric_declares_what_the_evaluator_asks_of_it() -> None:
    """MetricEvaluator keeps what a metric declares in ``provides``; plugins check refuses a declaration without its method."""
    from mmengine.evaluator import BaseMetric

    import vkit.core.metrics  # noqa: F401 - registers ClassificationMetric
    from vkit.core.capabilities import metric_problem, metric_provides
    from vkit.core.metrics import ClassificationMetric
    from vkit.registry.registries import METRICS
    from vkit.workflows.plugin_check import _metric_check

    assert {"fitted", "prediction_rows", "roc"} <= metric_provides(ClassificationMetric)

    class Boasting(BaseMetric):
        """Declares per-item rows it cannot give."""

        provides = frozenset({"fitted", "prediction_rows"})

        def fitted(self):  # noqa: ANN201 - a test double
            return {}

        def compute_metrics(self, results):  # noqa: ANN001, ANN201
            return {}

    assert metric_problem(Boasting) == "Boasting declares 'prediction_rows' in provides but has no prediction_rows() method"
    result = _metric_check("Boasting", Boasting, METRICS)
    assert not result.ok and "has no prediction_rows() method" in result.reason
