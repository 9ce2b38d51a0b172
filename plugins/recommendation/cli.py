"""``vkit recommend --run RUN --user U -k 10``: top-K videos for users from a trained recommendation run.

A command of the recommendation plugin, added through the ``vkit_cli_commands`` hook
(:mod:`vkit.plugins.recommendation.plugin`) like any plugin's command.

The run (a run id, or a ``model.safetensors`` path) names its task in the
checkpoint sidecar; :func:`vkit.core.trained.load_trained` rebuilds the model
and the task's ``recommender(trained)`` serves it (:mod:`vkit.plugins.recommendation.serve`). Each recommendation has a
score and, for content models, the user's history items with the most
similar content; an unknown user gets the most popular items and a note.
``--users FILE`` (one id per line, or a CSV with a ``user_id`` column) writes
the lists to the store as a ``predict`` run: one prediction row per user
(split ``recommend``, ``item_id`` = the user, ``values`` = ranked
``items``/``scores``/``note``) and one ``recommendations`` row per list entry
(``user_id``, ``rank``, ``item_id``, ``score``: queryable per user and rank,
:func:`vkit.plugins.recommendation.store.run_recommendations`; the plugin's own table), both exported by
``vkit export`` like every table.
``--engine ray`` ranks the users on a Ray Data actor pool (each actor loads
the model once; users travel as ids, results as JSON), in the users' order.

Example::

    run_id, results = recommend("7", ["u0042"], k=10)
    results[0]["items"][0]   # {"rank": 1, "item_id": "v0107", "score": 3.1, "because": [...], "video": ...}
"""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from vkit.registry.errors import ConfigError, DataError


def read_user_file(path: str | Path) -> list[str]:
    """User ids from ``path``: a CSV with a ``user_id`` column, or one id per line (blank lines skipped).

    Read by :func:`vkit.core.datalist.read_text`: UTF-8 with or without BOM (Excel's), a regular file.
    """
    from vkit.core.datalist import read_text

    file = Path(path)
    try:
        text = read_text(file)
    except DataError as err:
        raise DataError(f"--users {err}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and "user_id" in [c.strip() for c in lines[0].split(",")]:
        users = [(row.get("user_id") or "").strip() for row in csv.DictReader(lines)]
    else:
        users = [line.strip() for line in lines]
    empty = [i + 2 for i, u in enumerate(users) if not u]
    if empty:
        raise DataError(f"--users {file}: empty user id on row(s) {empty[:5]}")
    if not users:
        raise DataError(f"--users {file}: no user ids")
    return list(dict.fromkeys(users))


class RecommenderActor:
    """A Ray Data actor: loads the run's recommender once and ranks blocks of users.

    Args:
        task: the task name; checkpoint: its ``model.safetensors``; plugins: ``--plugin`` modules; k: list length.
    """

    def __init__(self, task: str, checkpoint: str, plugins: Sequence[str], k: int) -> None:
        from vkit.core.trained import load_trained
        from vkit.hooks.manager import get_plugin_manager

        manager = get_plugin_manager(extra=plugins)
        manager.register_components()
        owner = manager.get_task(task)()
        self.service = owner.recommender(load_trained(Path(checkpoint), task=owner))
        self.k = int(k)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        results = self.service.recommend_many([str(u) for u in batch["user"]], self.k)
        return {"result": np.array([json.dumps(r) for r in results], dtype=object)}


def ray_recommend(task: str, checkpoint: Path, users: Sequence[str], k: int, plugins: Sequence[str] = (),
                  workers: int = 2, users_per_task: int = 1000, address: str | None = None) -> list[dict[str, Any]]:
    """:meth:`recommend_many` of ``users`` on a Ray Data actor pool (``workers`` actors), in the users' order."""
    from vkit.core.raylog import ray_session

    with ray_session(address) as ray:  # Ray's own logging goes to the vkit.ray logger (vkit --debug)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True
        blocks = max(1, -(-len(users) // users_per_task))
        dataset = ray.data.from_items([dict(user=str(u)) for u in users], override_num_blocks=blocks)
        dataset = dataset.map_batches(
            RecommenderActor, fn_constructor_kwargs=dict(task=task, checkpoint=str(checkpoint), plugins=list(plugins), k=k),
            batch_size=users_per_task, batch_format="numpy", concurrency=max(1, int(workers)), num_cpus=1)
        return [json.loads(row["result"]) for row in dataset.iter_rows()]


def recommend(run: str, users: Sequence[str], k: int = 10, *, db_url: str | None = None, plugins: Sequence[str] = (),
              save: bool = False, engine: str = "local", workers: int = 2) -> tuple[int | None, list[dict[str, Any]]]:
    """Top-``k`` for each user with the model of ``run``; ``save`` writes them to the store as a ``predict`` run.

    ``engine='ray'`` ranks the users on a Ray Data actor pool of ``workers`` actors (the model loads once per actor).
    """
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine {engine!r}: expected 'local' or 'ray'")
    if engine == "ray":
        from vkit.core.extras import require_extra

        require_extra("ray", purpose="--engine ray")
    from vkit.core.capabilities import require_capability
    from vkit.core.checkpoint import load_meta
    from vkit.core.store import open_store
    from vkit.core.trained import load_trained
    from vkit.plugins.recommendation.store import add_recommendations
    from vkit.hooks.manager import get_plugin_manager
    from vkit.core.run_checkpoint import resolve_checkpoint

    # a run id needs an existing store (a mistyped --db is named, never created); only --save writes to it
    store = open_store(db_url, create=not str(run).strip().isdigit(), read_only=not save)
    files = resolve_checkpoint(run, store, option="--run")
    path = files.weights
    meta = load_meta(path)
    manager = get_plugin_manager(extra=plugins)
    task = manager.get_task(str(meta.get("task") or ""))()
    require_capability(task, "recommend", f"recommend (--run {run})")
    manager.register_components()
    if k < 1:
        raise ConfigError(f"-k {k}: expected a positive number of recommendations")
    if engine == "ray":
        results = ray_recommend(task.name, path, list(users), k, plugins, workers)
    else:
        results = task.recommender(load_trained(files, task=task)).recommend_many(list(users), k)
    if not save:
        return None, results
    rows = [dict(item_id=r["user"], label=None, prediction=None,
                 values=dict(items=[i["item_id"] for i in r["items"]], scores=[i["score"] for i in r["items"]],
                             known=r["known"], note=r["note"], model=r["model"])) for r in results]
    config = dict(checkpoint=str(path), users=len(rows), k=int(k), engine=engine)
    ranked = [dict(user_id=r["user"], rank=int(i["rank"]), item_id=i["item_id"], score=i["score"])
              for r in results for i in r["items"]]
    with store.track_run(task=task.name, plugin=task.plugin, config=config, seed=None, kind="predict",
                         model_sha256=meta.get("sha256")) as run_id:
        store.add_predictions(run_id, "recommend", rows)
        add_recommendations(store, run_id, ranked)
    return run_id, results


@click.command("recommend")
@click.option("--run", "run", required=True, metavar="RUN_OR_PATH", help="A recommendation run id or its model.safetensors.")
@click.option("--user", "users", multiple=True, metavar="USER", help="A user id (repeatable).")
@click.option("--users", "users_file", type=click.Path(dir_okay=False), help="File of user ids: recommendations go to the store.")
@click.option("-k", "k", default=10, show_default=True, help="Recommendations per user.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Rank the users here or on a Ray Data actor pool.")
@click.option("--workers", default=2, show_default=True, help="Ray actors (--engine ray).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def recommend_cmd(ctx: click.Context, run: str, users: tuple[str, ...], users_file: str | None, k: int, engine: str,
                  workers: int, as_json: bool) -> None:
    """Top-K videos for users of a trained recommendation RUN (seen items excluded; unknown users get popularity)."""
    obj = ctx.find_root().obj or {}
    if not users and not users_file:
        raise ConfigError("vkit recommend: give --user ID (repeatable) or --users FILE")
    wanted = list(dict.fromkeys([*users, *(read_user_file(users_file) if users_file else [])]))
    run_id, results = recommend(run, wanted, k, db_url=obj.get("db_url"), plugins=obj.get("plugins", ()),
                                save=users_file is not None, engine=engine, workers=workers)
    if as_json:
        click.echo(json.dumps(dict(run_id=run_id, recommendations=results), indent=2, default=str))
        return
    from rich.table import Table

    from vkit.core.console import console as plain_console

    console = plain_console()  # users and items print as given: '[/bold]' is a user id, not markup
    if users_file is not None:
        unknown = sum(not r["known"] for r in results)
        console.print(f"{len(results)} users ({unknown} unknown: popularity) -> store run {run_id}, split 'recommend'")
        results = results[:len(users)]  # print only the users named with --user
    for result in results:
        if result["note"]:
            console.print(f"note: {result['note']}")
        table = Table(title=f"user {result['user']}: top {k} ({result['model']})", title_justify="left")
        for column in ("rank", "item", "score", "because (similar history items)"):
            table.add_column(column)
        for item in result["items"]:
            table.add_row(str(item["rank"]), item["item_id"], f"{item['score']:.4f}", ", ".join(item["because"]))
        console.print(table)


__all__ = ["read_user_file", "recommend", "recommend_cmd"]
