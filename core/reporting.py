"""What every report shares: sections (:class:`ReportSection`), plots whose text is plain text, and report failures that never fail a run.

Names from data (a video file, a session folder, a learner, a metric or class
name) reach plot titles, labels and legends. Matplotlib reads ``$...$`` in a
string as mathtext (and, with ``text.usetex``, hands the string to LaTeX), so a
file named ``$\\evilcmd$.mp4`` would stop the plot with a parse error. Every
figure vkit draws is built inside :func:`plain_text`, where no string is parsed.

A report comes after the work: when writing it fails, :func:`record_report_error`
records the error on the run (a ``report-error`` artifact with the traceback)
and says so, and the run keeps its status.

Example::

    from vkit.core.reporting import plain_text

    @plain_text()
    def plot(path, name):
        fig = Figure()
        fig.add_subplot().set_title(name)   # '$\\evilcmd$' is drawn as those characters
        fig.savefig(path)
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ReportSection:
    """One section of a run report: a table, a PNG or a paragraph (any combination).

    Example::

        ReportSection("detected events (test)", table=[dict(video="v1", start_s=1.2, end_s=3.4)])
    """

    title: str
    table: list[dict[str, Any]] | None = None
    image: Path | None = None
    text: str | None = None
    #: Shown first, right after the run's row (before the metrics and what the report draws from the store).
    top: bool = False
    #: Parts the report draws from the store that this section stands in for (their names: ``REPLACEABLE``).
    replaces: tuple[str, ...] = ()


#: The parts of a run report a vertical's section may replace (``ReportSection.replaces``): a scoring run's
#: top-scoring videos table, its scores-over-time plot and its top events table.
REPLACEABLE = ("top videos", "scores over time", "top events")


#: Matplotlib settings under which every string is drawn as given: no mathtext, no LaTeX.
PLAIN_TEXT_RC = {"text.parse_math": False, "text.usetex": False}
#: Artifact kind of a failed report's error file.
REPORT_ERROR_KIND = "report-error"
#: Name of that file in the run's folder.
REPORT_ERROR_FILE = "report-error.txt"


@contextmanager
def plain_text() -> Iterator[None]:
    """Matplotlib text made inside (titles, labels, legends, tick labels, at ``savefig`` too) is plain text.

    Use it as a context manager or a decorator (``@plain_text()``); matplotlib is imported only when entered.

    Example::

        with plain_text():
            ax.set_title("$\\evilcmd$.mp4")   # drawn literally, never parsed as math
            fig.savefig(path)
    """
    import matplotlib

    with matplotlib.rc_context(PLAIN_TEXT_RC):
        yield


def record_report_error(store: Any, run_id: int, folder: str | Path, err: BaseException,
                        echo: Callable[[str], Any] = print) -> str:
    """Record that the report of run ``run_id`` failed with ``err``; the run's status is left as it is.

    Writes ``folder/report-error.txt`` (the error and its traceback, credentials masked), records it as a
    ``report-error`` artifact of the run, echoes one warning line and returns the one-line error text.
    Recording is best effort: a folder or store that cannot take it still gets the warning.

    Example::

        try:
            write_run_report(store, run_id)
        except Exception as err:
            summary["report"] = "failed: " + record_report_error(store, run_id, work_dir, err)
    """
    from vkit.core.store.engine import mask_secrets

    line = mask_secrets(f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}").strip()
    where = ""
    try:
        path = Path(folder) / REPORT_ERROR_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(mask_secrets("".join(traceback.format_exception(err))), encoding="utf-8")
        store.add_artifact(run_id, REPORT_ERROR_KIND, path)
        where = f"; details in {path}"
    except Exception as again:  # noqa: BLE001 - the warning below still tells the user
        where = f"; not recorded ({type(again).__name__}: {mask_secrets(str(again))})"
    echo(f"warning: the report of run {run_id} failed ({line}){where}; the run keeps its status "
         f"(`vkit report {run_id}` writes it again)")
    return line


__all__ = ["PLAIN_TEXT_RC", "REPLACEABLE", "REPORT_ERROR_FILE", "REPORT_ERROR_KIND", "ReportSection", "plain_text", "record_report_error"]
