"""The report section "Explanations: worst cases": what drove the score of the test items with the largest error.

For a training run with a checkpoint, the test split's prediction rows (the
ones the report's worst-classified table reads) are ranked by their error —
``1 - P(true class)`` for a classifier, ``|value - target|`` for a regression,
``|label - score|`` for a video scorer's rows (security: the video's highest
segment score against its 0/1 label) — and the :data:`CASES` worst whose file
is still there are explained by the task's default method
(:class:`vkit.workflows.explain.Explainer`: Grad-CAM for a task that predicts
files, temporal saliency for one that scores videos). The overlays are
stacked into one PNG shown in the section, beside a table of the peaks.

An explanation that fails never fails the report: the error is recorded on
the run (:func:`vkit.core.reporting.record_report_error`, a ``report-error``
artifact), a warning names it, and the section says so. A model that cannot
be explained from a file by design (a ``ConfigError``, e.g. an education model
fusing side signals a file does not carry) is said in the section, not recorded
as an error. Runs without a
checkpoint, of a task no loaded plugin declares, or of a task that neither
predicts files nor scores videos (recommendation) get no section.

Example::

    sections = explanation_sections(store, run, report_dir, manager, warn)   # [] or [ReportSection(...)]
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vkit.core.reporting import ReportSection
from vkit.registry.errors import ConfigError

#: The section's title, and how many worst cases it explains.
TITLE = "Explanations: worst cases"
CASES = 3
#: The stacked overlays' file name in the report folder.
SHEET = "explanations_worst.png"


def case_error(row: Mapping[str, Any]) -> float | None:
    """The error of one labelled prediction row (``None`` when it has no label or no usable output)."""
    label = row.get("label")
    values = row.get("values") if isinstance(row.get("values"), Mapping) else {}
    if label is None:
        return None
    probs, value = values.get("probs"), values.get("value")
    try:
        if isinstance(probs, list) and len(probs) >= 2 and float(label).is_integer() and 0 <= int(label) < len(probs):
            return 1.0 - float(probs[int(label)])
        if isinstance(value, list) and value:
            return abs(float(value[0]) - float(label))
        if row.get("prediction") is not None:
            return abs(float(row["prediction"]) - float(label))
    except (TypeError, ValueError):
        return None
    return None


def worst_cases(predictions: Sequence[Mapping[str, Any]], top: int = CASES) -> list[dict[str, Any]]:
    """The ``top`` test rows with the largest error whose ``values.path`` names an existing file or folder,
    each ``dict(case, path, label, error)``, largest error first."""
    ranked = []
    for row in predictions:
        values = row.get("values") if isinstance(row.get("values"), Mapping) else {}
        error = case_error(row)
        path = values.get("path")
        if row.get("split") != "test" or error is None or not math.isfinite(error) or not path:
            continue
        ranked.append(dict(case=str(row["item_id"]), path=str(path), label=row.get("label"), error=float(error)))
    ranked.sort(key=lambda r: -r["error"])
    return [r for r in ranked if Path(r["path"]).exists()][:top]


def explanation_sections(store: Any, run: Mapping[str, Any], out: Path, manager: Any,
                         warn: Callable[[str], Any]) -> list[ReportSection]:
    """``[]`` or one :class:`ReportSection` explaining the worst test cases of training run ``run``.

    Never raises: a failure is recorded on the run and shown in the section (module docstring).
    """
    if run.get("kind", "train") != "train" or not any(a["kind"] == "checkpoint" for a in store.run_artifacts(run["id"])):
        return []
    try:
        task = manager.get_task(run["task"])()
    except Exception:  # noqa: BLE001 - a task no loaded plugin declares: nothing to explain it with
        return []
    capabilities = getattr(task, "capabilities", frozenset())
    if not {"predict", "score"} & set(capabilities):
        return []
    try:
        cases = worst_cases(store.run_predictions(run["id"], "test"))
        if not cases:
            return []
        return [_section(store, run, out, manager, task, cases, warn)]
    except Exception as err:  # noqa: BLE001 - explanations never cost the report
        return [_failed(store, run, out, err, warn)]


def _section(store: Any, run: Mapping[str, Any], out: Path, manager: Any, task: Any,
             cases: list[dict[str, Any]], warn: Callable[[str], Any]) -> ReportSection:
    from vkit.core.explain.overlay import stack_pngs
    from vkit.workflows.explain import load_explainer, peak_text, safe_stem

    explainer = load_explainer(run["task"], str(run["id"]), manager=manager, store=store)
    folder = out / "explanations"
    rows, pngs, layers, first_error = [], [], set(), None
    for rank, case in enumerate(cases):
        label = case["label"]
        label = int(label) if isinstance(label, float) and label.is_integer() else label
        row = dict(case=case["case"], label=label, error=round(case["error"], 4))
        try:
            done = explainer.explain(case["path"], folder, f"worst{rank}-{safe_stem(case['case'])}")[0]
        except ConfigError as err:  # this run's model cannot be explained from a file (e.g. side signals): said, not an error
            rows.append(dict(row, explanation=f"not available: {err}"))
            continue
        except Exception as err:  # noqa: BLE001 - one case's failure is shown in its row; the others are explained
            first_error = first_error or err
            rows.append(dict(row, explanation=f"failed: {type(err).__name__}: {err}"))
            continue
        summary = done["summary"]
        pngs.append(Path(done["png"]))
        layers.add(summary.get("layer"))
        rows.append(dict(row, method=summary["method"], explained=summary["target"], score=summary["score"],
                         peak=peak_text(summary)))
    line = _record(store, run, out, first_error, warn) if first_error is not None else None
    if not pngs:
        why = f"could not be drawn ({line}); the rest of the report is written" if line else "not available for this run"
        return ReportSection(TITLE, table=rows, text=why)
    sheet = stack_pngs(out / SHEET, pngs)
    how = ("Grad-CAM (monai.visualize) on layer " + ", ".join(sorted(str(v) for v in layers if v))
           if explainer.method == "gradcam" else "temporal saliency: the score's drop when each segment is hidden"
           if explainer.method == "temporal" else "occlusion sensitivity (monai.visualize)")
    text = (f"What drove the score of the {len(cases)} test cases with the largest error ({how}; "
            f"`vkit explain {run['task']} --checkpoint {run['id']} FILE` for any file).")
    return ReportSection(TITLE, table=rows, image=sheet, text=text)


def _record(store: Any, run: Mapping[str, Any], out: Path, err: BaseException, warn: Callable[[str], Any]) -> str:
    """Record ``err`` as the run's report error (the run keeps its status) and warn once, naming the section."""
    from vkit.core.reporting import REPORT_ERROR_FILE, record_report_error

    line = record_report_error(store, run["id"], out, err, echo=lambda _line: None)
    warn(f"report of run {run['id']}: {TITLE}: could not be drawn ({line}); details in {out / REPORT_ERROR_FILE} "
         f"(the rest of the report is written)")
    return line


def _failed(store: Any, run: Mapping[str, Any], out: Path, err: BaseException, warn: Callable[[str], Any]) -> ReportSection:
    line = _record(store, run, out, err, warn)
    return ReportSection(TITLE, text=f"could not be drawn ({line}); the rest of the report is written")


__all__ = ["CASES", "TITLE", "case_error", "explanation_sections", "worst_cases"]
