"""The hooks a vkit plugin may implement (pluggy project ``vkit``).

Every hook is a function whose body is only its docstring: what it is for,
when vkit calls it, what to return and what ``None`` means, one ``:param:``
per argument and an example. ``docs/plugins.md`` carries the reference made
from these docstrings; ``tests/registry/test_docs.py`` fails when a hook is
undocumented there or untested.

A plugin is a module (or object) with ``@hookimpl`` functions, declared in its
package's ``pyproject.toml``::

    [project.entry-points."vkit.plugins"]
    myvertical = "myvertical.plugin"
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import click
    import numpy as np

    from vkit.core.store.plugin_schema import PluginSchema
    from vkit.core.task import Task

#: Marks a hook specification in this module.
hookspec = pluggy.HookspecMarker("vkit")
#: Marks a plugin's implementation of a hook: ``from vkit import hookimpl``.
hookimpl = pluggy.HookimplMarker("vkit")


@hookspec
def vkit_register_components(registries: dict[str, Any]) -> None:
    """Register the plugin's components (backbones, fusions, heads, datasets, metrics, transforms, compressors).

    Called once per process, the first time a component is needed (building a
    model, ``vkit plugins list``, ``vkit components``, ``vkit plugins check``);
    never by ``vkit --help``. Import heavy modules (torch, MONAI) inside the hook,
    not at the top of the plugin module. A name that another plugin already
    registered is a :class:`~vkit.registry.errors.PluginError` naming both
    plugins; the other plugins keep working.

    :param registries: vkit's registries by name (``"BACKBONES"``,
        ``"FUSIONS"``, ``"HEADS"``, ``"DATASETS"``, ``"METRICS"``,
        ``"TRANSFORMS"``, ``"COMPRESSORS"``, ``"MODELS"``); each is an
        mmengine ``Registry``.
    :return: nothing; register with ``registry.register_module(module=cls)``.

    Example::

        from vkit import hookimpl

        @hookimpl
        def vkit_register_components(registries):
            from torch import nn  # heavy imports inside the hook

            class EngagementHead(nn.Module):  # usually: from myvertical.heads import EngagementHead
                def __init__(self, in_channels=64, num_classes=2):
                    super().__init__()
                    self.fc = nn.Linear(in_channels, num_classes)

                def forward(self, x):
                    return self.fc(x)

            registries["HEADS"].register_module(module=EngagementHead)

    .. versionadded:: 0.1
    """


@hookspec
def vkit_tasks() -> list[type[Task]] | None:
    """Declare the tasks this plugin runs with ``vkit run NAME``.

    Called when the task list is needed (``vkit tasks``, ``vkit run``). Keep
    it cheap: return the classes, do no work. A task is a subclass of
    :class:`vkit.core.task.Task` with a ``name``, a one-line
    ``description``, a ``default_config`` dict and, optionally, a
    ``generate_data`` method that writes its embedded data set.

    :return: a list of ``Task`` subclasses, or ``None`` for none.

    Example::

        from vkit import hookimpl
        from vkit.core.task import Task

        class DemoTask(Task):
            name = "demo-classify"
            description = "Classify tiny synthetic clips."
            default_config = dict(seed=0, train=dict(epochs=1))

        @hookimpl
        def vkit_tasks():
            return [DemoTask]

    .. versionadded:: 0.1
    """


@hookspec
def vkit_cli_commands() -> list[click.Command] | None:
    """Add commands to the ``vkit`` command line.

    Called when the CLI is built, before arguments are parsed; the commands
    appear in ``vkit --help`` beside the built-in ones. A command whose name
    is already taken is reported as a plugin error and left out. Import
    ``click`` inside the hook body only if you must; it is already loaded.

    :return: a list of ``click.Command`` objects, or ``None`` for none.

    Example::

        import click

        from vkit import hookimpl

        @click.command("hello")
        def hello():
            click.echo("hello from my plugin")

        @hookimpl
        def vkit_cli_commands():
            return [hello]

    .. versionadded:: 0.1
    """


@hookspec
def vkit_run_finished(run: dict[str, Any]) -> None:
    """React to a finished run (``vkit run``, ``vkit score`` or ``vkit predict``), successful or failed.

    Called once per run after its last row is in the store and its report is
    written. An exception here is reported with the plugin's name and does not
    change the run's outcome.

    :param run: the run as stored: ``id``, ``task``, ``kind`` (``"train"``, ``"score"`` or ``"predict"``), ``status``
        (``"finished"`` or ``"failed"``), ``error``, ``metrics`` (final
        ``{key: value}``), ``db`` (masked URL) and ``report`` (path or
        ``None``).
    :return: nothing.

    Example::

        from vkit import hookimpl

        @hookimpl
        def vkit_run_finished(run):
            if run["status"] == "finished":
                print(f"run {run['id']}: AUC {run['metrics'].get('test/auc')}")

    .. versionadded:: 0.1
    """


@hookspec
def vkit_video_scored(video: dict[str, Any]) -> None:
    """React to one video of a ``vkit score`` batch being scored or failing.

    Called in the process that writes to the store, after the video's rows are
    committed. An exception here is reported with the plugin's name and does
    not stop the batch.

    :param video: ``path``, ``sha256``, ``status`` (``"scored"`` or
        ``"failed"``), ``error``, ``max_score``, ``mean_score`` and ``events``
        (a list of ``{"start", "end", "score"}`` in seconds).
    :return: nothing.

    Example::

        import logging

        from vkit import hookimpl

        @hookimpl
        def vkit_video_scored(video):
            if video["status"] == "scored" and video["max_score"] > 0.9:
                first = video["events"][0] if video["events"] else None
                logging.getLogger("myplugin").warning("ALERT %s: score %.2f, first event %s",
                                                      video["path"], video["max_score"], first)

    .. versionadded:: 0.1
    """


@hookspec
def vkit_report_sections(run: dict[str, Any], store: Any) -> list[Any] | None:
    """Add sections to the HTML report of a stored run (``vkit report RUN`` and the end of ``vkit run``).

    Called once per report, for every run of every task: return ``None`` for
    runs that are not yours (check ``run["task"]`` or ``run["kind"]``). Read
    what you need from ``store`` (its methods return plain dicts); write any
    PNG into ``run["report_dir"]``. An exception here is shown on the page
    under "Plugin errors" with the plugin's name; the report is still written.

    :param run: the run row: ``id``, ``task``, ``kind`` (``"train"``,
        ``"score"`` or ``"predict"``), ``plugin``, ``status``, ``config``,
        ``work_dir``, ``model_sha256``, plus ``report_dir`` (the report's
        folder) and ``db`` (the masked store URL).
    :param store: the open :class:`vkit.core.store.Store`
        (``run_metrics``, ``run_predictions``, ``video_scores``, ``run_events``...).
    :return: a list of ``vkit.core.evaluation.ReportSection`` (``title`` and
        any of ``table``: a list of row dicts, ``image``: a PNG path,
        ``text``: a paragraph; ``top=True`` shows it right after the run's
        row, before the metrics; ``replaces`` names the parts of a scoring
        run it stands in for: ``"top videos"``, ``"scores over time"``,
        ``"top events"``), or ``None`` for no section.

    Example::

        from vkit import hookimpl
        from vkit.core.evaluation import ReportSection

        @hookimpl
        def vkit_report_sections(run, store):
            if run["task"] != "demo-classify":
                return None
            rows = store.run_predictions(run["id"], split="test")
            wrong = [r["item_id"] for r in rows if r["label"] is not None and r["label"] != r["prediction"]]
            return [ReportSection("misclassified cases", text=f"{len(wrong)} of {len(rows)}: {', '.join(wrong)}")]

    .. versionadded:: 0.2
    """


@hookspec
def vkit_preview(path: Path) -> list[np.ndarray] | None:
    """Give the frames that show the case at ``path`` in a run report (the worst-classified cases' thumbnails).

    Called by the report for each case it shows, with the case's file or folder
    (``values.path`` of its prediction row, else its item id). Return frames
    only for files your vertical reads (a scan format, a sensor recording);
    return ``None`` for anything else. The first plugin that returns frames
    wins; when none does, vkit reads a ``.npy`` volume (its middle slice) or a
    video clip (4 frames) itself. An exception here is recorded with the
    plugin's name; the case then gets vkit's own preview, or "file not
    available".

    :param path: the case's file or folder (it may not exist).
    :return: a list of images (2-D greyscale arrays of any dtype, scaled
        min..max; or ``uint8`` RGB arrays of shape ``(H, W, 3)``), drawn side
        by side; or ``None`` when this plugin does not read ``path``.

    Example::

        import numpy as np

        from vkit import hookimpl

        @hookimpl
        def vkit_preview(path):
            if path.suffix != ".csv":  # a sensor recording: one value per line
                return None
            signal = np.loadtxt(path, ndmin=1)
            return [np.tile(signal, (16, 1))]  # a 16-pixel high band, brighter where the signal is higher

    .. versionadded:: 0.3
    """


@hookspec
def vkit_store_schema() -> PluginSchema | None:
    """Give the plugin's own tables in the store: their Alembic migrations and their SQLAlchemy tables.

    Called by ``vkit db upgrade`` (which migrates core's tables, then every
    plugin's) and by ``vkit export`` (a table with a ``run_id`` column is
    exported per run like core's). The history is the plugin's own: a folder
    of Alembic scripts (Alembic's ``version_locations``), the first with
    ``down_revision = None``, whose revision is kept in the version table
    ``alembic_version_<name>``; it may refer to core's tables (a foreign key
    to ``runs.id`` with ``ON DELETE CASCADE`` makes ``vkit runs delete`` take
    the plugin's rows along). Before touching its tables, the plugin calls
    ``vkit.core.store.plugin_schema.ensure_plugin_schema(store, schema)``,
    which creates them in a store that lacks them. A store opened without the
    plugin ignores its tables.

    :return: a ``vkit.core.store.plugin_schema.PluginSchema(name, versions,
        metadata)``, or ``None`` for no tables.

    Example::

        import tempfile
        import textwrap
        from pathlib import Path

        import sqlalchemy as sa

        from vkit import hookimpl
        from vkit.core.store.plugin_schema import PluginSchema

        METADATA = sa.MetaData()
        NOTES = sa.Table("demo_notes", METADATA, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("run_id", sa.Integer, nullable=False), sa.Column("note", sa.String(200)))
        VERSIONS = Path(tempfile.mkdtemp())  # a real plugin ships this folder beside its code
        (VERSIONS / "0001_demo_notes.py").write_text(textwrap.dedent('''
            import sqlalchemy as sa
            from alembic import op

            revision, down_revision, branch_labels, depends_on = "0001", None, ("demo",), None

            def upgrade():
                op.create_table("demo_notes", sa.Column("id", sa.Integer, primary_key=True),
                                sa.Column("run_id", sa.Integer, nullable=False), sa.Column("note", sa.String(200)))

            def downgrade():
                op.drop_table("demo_notes")
        '''))

        @hookimpl
        def vkit_store_schema():
            return PluginSchema("demo", VERSIONS, METADATA)

    .. versionadded:: 0.3
    """
