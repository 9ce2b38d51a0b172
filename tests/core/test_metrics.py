"""ClassificationMetric: hand-computed AUC / sensitivity / specificity / Youden threshold, multi-class vs sklearn."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vkit.core.metrics import ClassificationMetric, youden_threshold
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import METRICS


def _samples(scores: list[float], labels: list[int]) -> list[dict]:
    return [{"probs": torch.tensor([1 - s, s]), "label": y, "case_id": f"c{i}"} for i, (s, y) in enumerate(zip(scores, labels))]


def _run(metric: ClassificationMetric, samples: list[dict], batch: int = 3) -> dict:
    for i in range(0, len(samples), batch):
        metric.process({}, samples[i : i + batch])
    return metric.evaluate(len(samples))


def test_registered_and_prefixed() -> None:
    metric = METRICS.build(dict(type="ClassificationMetric", prefix="test"))
    out = _run(metric, _samples([0.1, 0.9], [0, 1]))
    assert set(out) == {f"test/{k}" for k in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "threshold")}
    assert out["test/auc"] == 1.0


def test_perfect_ranking() -> None:
    out = _run(ClassificationMetric(), _samples([0.1, 0.2, 0.3, 0.6, 0.7, 0.9], [0, 0, 0, 1, 1, 1]))
    assert out["auc"] == 1.0 and out["accuracy"] == 1.0 and out["sensitivity"] == 1.0 and out["specificity"] == 1.0
    assert out["threshold"] == pytest.approx(0.6)  # the lowest positive score separates perfectly


def test_known_small_example_with_youden_threshold() -> None:
    # scores:  0.1(0) 0.4(0) 0.35(1) 0.8(1)  -> pairs (pos > neg): 0.35>0.1, 0.8>0.1, 0.8>0.4 = 3 of 4 -> AUC 0.75
    metric = ClassificationMetric()
    out = _run(metric, _samples([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]))
    assert out["auc"] == pytest.approx(0.75)
    # Youden: t=0.8 -> sens .5 spec 1 (J=.5); t=0.35 -> sens 1 spec .5 (J=.5); tie -> higher threshold
    assert out["threshold"] == pytest.approx(0.8)
    assert (out["sensitivity"], out["specificity"], out["accuracy"]) == (0.5, 1.0, 0.75)
    assert out["balanced_accuracy"] == pytest.approx(0.75)
    assert metric.last_confusion.tolist() == [[2, 0], [1, 1]]
    assert metric.last_threshold == pytest.approx(0.8)


def test_youden_threshold_hand_example() -> None:
    # t=0.6: sens 3/3, spec 2/4 (J=.5); t=0.7: sens 2/3, spec 3/4 (J=.4167); t=0.2: sens 1, spec .25 (J=.25)
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.65, 0.9, 0.6, 0.7, 0.95]
    assert youden_threshold(labels, scores) == pytest.approx(0.6)
    with pytest.raises(DataError, match="needs both classes"):
        youden_threshold([1, 1], [0.2, 0.3])


def test_fixed_threshold_from_validation() -> None:
    metric = ClassificationMetric(threshold=0.37)
    out = _run(metric, _samples([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]))
    # >= 0.37 positive: 0.4 (FP), 0.8 (TP); 0.35 (FN), 0.1 (TN)
    assert out["threshold"] == 0.37
    assert (out["sensitivity"], out["specificity"], out["accuracy"]) == (0.5, 0.5, 0.5)
    assert [p["pred"] for p in metric.last_predictions] == [0, 1, 0, 1]


def test_per_case_predictions_and_roc_points() -> None:
    metric = ClassificationMetric()
    _run(metric, _samples([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]))
    first = metric.last_predictions[0]
    assert first["case_id"] == "c0" and first["label"] == 0 and first["probs"] == pytest.approx([0.9, 0.1])
    assert [p["case_id"] for p in metric.last_predictions] == ["c0", "c1", "c2", "c3"]
    fpr, tpr, auc = metric.last_roc
    assert auc == pytest.approx(0.75)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)
    assert metric.results == []  # mmengine clears after evaluate


def test_multiclass_macro_ovr_auc_matches_sklearn() -> None:
    from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2] * 10)
    logits = rng.normal(size=(30, 3)) + 1.5 * np.eye(3)[labels]
    probs = torch.softmax(torch.tensor(logits), dim=1)
    metric = ClassificationMetric(num_classes=3)
    out = _run(metric, [{"probs": p, "label": int(y), "case_id": str(i)} for i, (p, y) in enumerate(zip(probs, labels))], batch=7)
    ref = roc_auc_score(labels, probs.numpy(), multi_class="ovr", average="macro")
    assert out["auc"] == pytest.approx(ref)
    preds = probs.numpy().argmax(1)
    assert out["accuracy"] == pytest.approx(np.mean(preds == labels))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, preds))
    assert out["sensitivity"] == pytest.approx(recall_score(labels, preds, average="macro"))
    cm = metric.last_confusion
    spec = np.mean([(cm.sum() - cm[c].sum() - cm[:, c].sum() + cm[c, c]) / (cm.sum() - cm[c].sum()) for c in range(3)])
    assert out["specificity"] == pytest.approx(spec)
    assert "threshold" not in out and cm.shape == (3, 3) and cm.sum() == 30


def test_one_class_split_gives_nan_auc_not_a_crash() -> None:
    metric = ClassificationMetric()
    out = _run(metric, _samples([0.2, 0.7], [1, 1]))
    assert math.isnan(out["auc"]) and metric.last_roc is None
    assert out["sensitivity"] == 0.5 and math.isnan(out["specificity"])


def test_bad_config_and_inputs() -> None:
    with pytest.raises(ConfigError, match=r"threshold: expected a probability in \[0, 1\] or None, got 1.5"):
        ClassificationMetric(threshold=1.5)
    with pytest.raises(ConfigError, match="num_classes: expected an int >= 2 or None, got 1"):
        ClassificationMetric(num_classes=1)
    metric = ClassificationMetric(num_classes=3)
    with pytest.raises(DataError, match="expected 3 class probabilities per case, got 2"):
        _run(metric, _samples([0.2, 0.7], [0, 1]))
    with pytest.raises(DataError, match=r"has no 'probs'"):
        ClassificationMetric().process({}, [{"label": 1}])
    with pytest.raises(DataError, match=r"labels \[4\] are outside 0..1"):
        _run(ClassificationMetric(), _samples([0.2, 0.7], [0, 4]))


def test_prediction_rows_keep_the_source_path_of_cases_that_carry_one() -> None:
    """The report's worst-case thumbnails read ``values.path``; a sample without ``path`` stores none."""
    from vkit.core.ordinal import OrdinalMetric

    samples = _samples([0.2, 0.9, 0.6], [0, 1, 0])
    samples[0]["path"] = "/data/imagesTs/c0.nii.gz"
    metric = ClassificationMetric()
    _run(metric, samples)
    rows = metric.prediction_rows()
    assert rows[0]["values"] == {"probs": pytest.approx([0.8, 0.2]), "path": "/data/imagesTs/c0.nii.gz"}
    assert "path" not in rows[1]["values"] and "path" not in rows[2]["values"]
    ordinal = OrdinalMetric(num_classes=4)
    ordinal.process({}, [dict(probs=torch.tensor([.1, .2, .6, .1]), label=2, case_id="a", path="clips/a.mp4"),
                         dict(probs=torch.tensor([.7, .1, .1, .1]), label=0, case_id="b")])
    ordinal.evaluate(2)
    assert [r["values"].get("path") for r in ordinal.prediction_rows()] == ["clips/a.mp4", None]


# ---------------------------------------------------------------------- regression and declared directions
KNOWN = [  # (targets, predictions): a good fit, a reversed ranking with a bias, two targets per case
    (np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([1.1, 1.9, 3.2, 3.7, 5.4])),
    (np.array([0.5, 1.5, 2.5, 4.0]), np.array([3.0, 2.0, 1.0, 0.0])),
    (np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]]), np.array([[1.5, 12.0], [2.5, 25.0], [2.0, 21.0]])),
]


@pytest.mark.parametrize("targets, preds", KNOWN)
def test_regression_metric_matches_numpy_and_scipy(targets: np.ndarray, preds: np.ndarray) -> None:
    from scipy.stats import spearmanr

    metric = METRICS.build(dict(type="RegressionMetric", prefix="val"))
    samples = [dict(value=torch.tensor(np.atleast_1d(p), dtype=torch.float32), label=t.tolist() if t.ndim else float(t),
                    case_id=f"c{i}") for i, (t, p) in enumerate(zip(targets, preds))]
    got = _run(metric, samples, batch=2)
    y, p = targets.reshape(len(targets), -1), preds.reshape(len(preds), -1)
    r2 = np.mean(1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0))
    rho = np.mean([spearmanr(y[:, k], p[:, k]).statistic for k in range(y.shape[1])])
    assert got["val/mae"] == pytest.approx(np.abs(y - p).mean(), abs=1e-6)
    assert got["val/rmse"] == pytest.approx(np.mean(np.sqrt(((y - p) ** 2).mean(0))) if y.shape[1] == 1
                                            else np.sqrt(((y - p) ** 2).mean()), abs=1e-6)
    assert got["val/r2"] == pytest.approx(r2, abs=1e-6) and got["val/spearman"] == pytest.approx(rho, abs=1e-6)
    rows = metric.prediction_rows()
    assert rows[0]["label"] == pytest.approx(y[0, 0]) and rows[0]["prediction"] == pytest.approx(p[0, 0], abs=1e-6)
    assert rows[0]["values"]["value"] == pytest.approx(p[0].tolist(), abs=1e-6) and metric.fitted() == {}
    [section] = metric.report_sections()
    errors = [abs(r["error"]) for r in section.table]
    assert errors == sorted(errors, reverse=True) and errors[0] == pytest.approx(np.abs(y[:, 0] - p[:, 0]).max(), abs=1e-4)


def test_regression_metric_undefined_values_and_bad_samples() -> None:
    from vkit.core.metrics import RegressionMetric

    metric = RegressionMetric()
    metric.process({}, [dict(value=torch.tensor([2.0]), label=3.0, case_id="a"),
                        dict(value=torch.tensor([2.0]), label=3.0, case_id="b")])
    got = metric.evaluate(2)
    assert got["mae"] == 1.0 and math.isnan(got["r2"]) and math.isnan(got["spearman"])
    with pytest.raises(DataError, match=r"needs 'value' \(a regression head's output\) and 'label'; got \['case_id', 'label', 'probs'\]"):
        metric.process({}, [dict(probs=torch.tensor([0.5, 0.5]), label=1, case_id="a")])
    metric.process({}, [dict(value=torch.tensor([1.0]), label=float("inf"), case_id="x")])
    with pytest.raises(DataError, match="case 'x' has a target or prediction that is not finite"):
        metric.evaluate(1)


@pytest.mark.parametrize("metric, key, direction", [
    ("RegressionMetric", "mae", "less"), ("RegressionMetric", "rmse", "less"), ("RegressionMetric", "val/r2", "greater"),
    ("RegressionMetric", "spearman", "greater"), ("ClassificationMetric", "auc", "greater"),
    ("ClassificationMetric", "threshold", None), ("OrdinalMetric", "mae", "less"), ("OrdinalMetric", "qwk", "greater"),
])
def test_metrics_declare_which_way_is_better(metric: str, key: str, direction: str | None) -> None:
    from vkit.core.metrics import metric_direction

    assert metric_direction(METRICS.get(metric), key) == direction


class _Runner:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.epoch = model, 0


@pytest.mark.parametrize("metric, rule, values, saved_epoch", [
    ("RegressionMetric", None, [0.5, 0.2, 0.4], 2),      # mae: declared less -> the lowest epoch
    ("ClassificationMetric", None, [0.5, 0.2, 0.4], 1),  # accuracy-like: greater
    ("RegressionMetric", "greater", [0.5, 0.2, 0.4], 1),  # an explicit checkpoint.rule overrides the declaration
])
def test_best_checkpoint_follows_the_declared_direction(metric: str, rule: str | None, values: list[float],
                                                        saved_epoch: int) -> None:
    from vkit.core.lifecycle import _BestState, best_rule, checkpoint_policy

    key = "mae" if metric == "RegressionMetric" else "accuracy"
    policy = checkpoint_policy(dict(metric=key, rule=rule))
    best = _BestState(key, best_rule(policy, [METRICS.build(dict(type=metric))]))
    runner = _Runner(torch.nn.Linear(1, 1))
    for epoch, value in enumerate(values, start=1):
        runner.epoch = epoch
        runner.model.weight.data.fill_(float(epoch))
        best.update(runner, {f"val/{key}": value})
    assert best.epoch == saved_epoch and best.state["weight"].item() == float(saved_epoch)


@pytest.mark.parametrize("direction, stopped", [("greater", False), ("less", True)])
def test_compression_gate_bounds_the_worsening_in_the_metric_direction(direction: str, stopped: bool) -> None:
    """A stage that RAISES the metric by 0.3 is fine for accuracy but stops the chain for an error such as MAE."""
    from vkit.core.compression import CompressionChain, CompressionContext, Stage

    class Bump(Stage):
        name = "Bump"

        def apply(self, model, ctx):
            model.bumped = True
            return model

    model = torch.nn.Linear(2, 1)
    evaluate = lambda m: 1.3 if getattr(m, "bumped", False) else 1.0  # noqa: E731
    ctx = CompressionContext(sample=torch.zeros(2, 2), evaluate=evaluate, latency_runs=1, warmup=0, direction=direction)
    result = CompressionChain([Bump()], max_metric_drop=0.1, allow_size_only=True).run(model, ctx)
    row = result.reports[0]
    assert row["drop"] == pytest.approx(-0.3 if direction == "greater" else 0.3)
    assert (row["status"] == "stopped") is stopped
    if stopped:
        assert "0.3000 above the original 1.0000 (lower is better)" in row["reason"]
