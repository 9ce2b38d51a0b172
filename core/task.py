"""The ``Task`` extension point: what ``vkit run NAME`` runs.

A plugin declares tasks through the ``vkit_tasks`` hook. A task is a class
with its capabilities as class attributes; it stays import-light (no torch at
module level) so ``vkit tasks`` is fast.

Example::

    class DemoTask(Task):
        name = "demo-classify"
        description = "Classify tiny synthetic clips."
        default_config = dict(seed=0, data=dict(root=None), train=dict(epochs=1))

        def generate_data(self, root, seed):
            ...  # write files under root, return the datalist path

        def run(self, cfg, ctx):
            ...  # train / evaluate through vkit.core.engine, return final metrics
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vkit.registry.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from mmengine.config import Config


#: The ``train`` section every task's default config starts from.
DEFAULT_TRAIN = dict(
    epochs=5,
    batch_size=8,
    lr=1e-3,
    weight_decay=1e-4,
    optimizer="AdamW",
    scheduler="cosine",  # 'cosine' or None
    num_workers=0,
    log_interval=10,
    launcher="none",  # 'pytorch' under torchrun (gloo on CPU)
    log_level="WARNING",
)


class Task:
    """Base class of every task; subclass it and return the subclass from ``vkit_tasks``.

    Attributes:
        name: the name users type (``vkit run NAME``): lowercase words joined by ``-``.
        description: one line shown by ``vkit tasks``.
        default_config: the full default config; user configs and ``--set``
            overrides may only use keys that exist here (except under keys
            listed in ``free_keys``).
        free_keys: top-level keys whose sub-keys are free-form (e.g. ``model``).
        smoke_overrides: ``--set`` strings that shrink a run to one quick
            iteration on tiny data (``["train.epochs=1", "data.n_train=8"]``);
            ``vkit plugins check`` and :func:`vkit.testing.run_task_smoke` apply
            them. Every key must exist in ``default_config``.
        data_key: the config key ``vkit run TASK --data PATH`` sets (the user's own data).
        plugin: filled in by the plugin manager with the declaring plugin's name.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_config: ClassVar[dict[str, Any]] = {}
    free_keys: ClassVar[tuple[str, ...]] = ()
    data_key: ClassVar[str] = "data.datalist"
    smoke_overrides: ClassVar[tuple[str, ...] | list[str]] = ()
    plugin: ClassVar[str] = ""

    def generate_data(self, root: Path, seed: int) -> Path | None:
        """Write the embedded default data set under ``root`` and return its index file (or ``None``)."""
        return None

    def run(self, cfg: Config, ctx: Any) -> dict[str, float]:
        """Run the task end to end with the merged ``cfg``; return the final metrics."""
        raise ConfigError(f"task {self.name!r} (plugin {self.plugin!r}) does not implement run()")

    def prediction_dataset(self, cfg: Config, inputs: list[str]) -> Any:
        """The dataset ``vkit predict`` runs the model on: ``inputs`` are files or one datalist."""
        raise ConfigError(f"task {self.name!r} (plugin {self.plugin!r}) does not support `vkit predict`")

    def build_scorer(self, checkpoint: Path, device: str = "cpu") -> Any:
        """A :class:`vkit.core.scoring.VideoScorer` for ``vkit score``; tasks that score videos override it."""
        raise ConfigError(f"task {self.name!r} (plugin {self.plugin!r}) does not score videos (no build_scorer())")


class RunContext:
    """What ``vkit run`` hands a task: the store row, folders and switches of this run.

    Args:
        store: the open :class:`vkit.core.store.Store`.
        run_id: this run's row id in the store.
        work_dir: folder for checkpoints, logs and the report of this run.
        data_root: cache folder where embedded data sets are generated.
        regenerate: remake the embedded data set even if cached.
        skip_bad: record unreadable inputs in the store and go on.
        echo: prints a progress line for the user (``print`` by default).
    """

    def __init__(
        self,
        store: Any,
        run_id: int,
        work_dir: Path,
        data_root: Path,
        *,
        regenerate: bool = False,
        skip_bad: bool = False,
        echo: Any = print,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.work_dir = Path(work_dir)
        self.data_root = Path(data_root)
        self.regenerate = regenerate
        self.skip_bad = skip_bad
        self.echo = echo
        #: Filled in by the task: paths and figures the summary shows.
        self.summary: dict[str, Any] = {}
        #: Filled in by the task: what the run report shows (``roc``, ``confusion``, ``classes``,
        #: ``compression`` rows, ``tables``: ``{title: [row dicts]}``).
        self.report: dict[str, Any] = {}
