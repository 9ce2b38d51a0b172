"""recommendation end to end: the generator's truth, a small run into SQLite, cold start, `vkit recommend`, bad input."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

from vkit.plugins.recommendation.synthetic import GENRES, render_item

SMALL = ["data.synthetic.n_users=150", "data.synthetic.n_items=60", "data.synthetic.n_new=40",
         "data.synthetic.history=(6,12)", "train.epochs=8", "train.batch_size=128", "eval.ks=(5,10)",
         "model.num_negatives=16"]


def test_mean_colour_does_not_give_the_genre_away():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    genres = np.arange(120) % len(GENRES)
    means = np.stack([render_item(0, i, int(g)).reshape(-1, 3).mean(0) for i, g in enumerate(genres)])
    accuracy = cross_val_score(LogisticRegression(max_iter=1000), means / 255.0, genres, cv=3).mean()
    assert accuracy < 1.6 / len(GENRES)  # chance is 1/6
    assert np.array_equal(render_item(3, 7, 2), render_item(3, 7, 2))  # deterministic from the seed


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from vkit.workflows.run import run_task

    tmp = tmp_path_factory.mktemp("recrun")
    db = f"sqlite:///{tmp / 'vkit.db'}"
    overrides = [*SMALL, "compare.models=[Popularity,BPRMF]", "compare.settings.BPRMF.dim=16"]
    result = run_task("recommendation", overrides=overrides, db_url=db, work_dir=tmp / "work", data_root=tmp / "data",
                      echo=lambda *_: None)
    return result, db, tmp


def test_run_stores_metrics_rows_checkpoint_and_the_model_table(small_run):
    from vkit.core.store import open_store

    result, db, tmp = small_run
    assert result.status == "finished"
    m = result.metrics
    for key in ("recall@10", "ndcg@10", "hr@10", "mrr", "coverage@10", "cold_recall@10", "cold_ndcg@10",
                "bprmf_recall@10", "bprmf_cold_recall@10", "popularity_recall@10"):
        assert 0.0 <= m[f"test/{key}"] <= 1.0, key
    store = open_store(db)
    rows = store.run_predictions(result.run_id, "test")
    assert len(rows) == int(m["test/users"]) and all(len(r["values"]["items"]) == 10 for r in rows)
    assert {a["kind"] for a in store.run_artifacts(result.run_id)} >= {"checkpoint", "checkpoint-meta", "report"}
    assert sum(v["status"] == "ok" for v in store.get_videos()) == 100  # 60 catalogue + 40 new videos
    report = (result.work_dir / "report" / "report.html").read_text()
    assert "TwoTower" in report and "BPRMF" in report and "cold_recall@10" in report


def test_cold_items_are_ranked_above_chance_only_with_content(small_run):
    result, _, _ = small_run
    m = result.metrics
    chance = 10 / 40  # recall@10 of a random order of the 40 cold items
    assert abs(m["test/bprmf_cold_recall@10"] - chance) < 0.12  # ids alone: no better than chance
    assert abs(m["test/popularity_cold_recall@10"] - chance) < 0.12  # no training counts: no signal
    assert m["test/cold_recall@10"] > chance + 0.2  # the two-tower model places new items by content


def _vkit(*args: str, db: str) -> subprocess.CompletedProcess:
    """The installed console script (exit codes as users see them)."""
    return vkit_cli.vkit("--db", db, *args, check=False, timeout=300, env=dict(OMP_NUM_THREADS="1"))


def _main(capsys, *args: str, db: str) -> str:
    """The same entry point in this process (faster); returns stdout."""
    from vkit.workflows.cli import main

    capsys.readouterr()
    main(["--db", db, *args])
    return capsys.readouterr().out


def test_recommend_cli_excludes_seen_items_and_handles_unknown_users(small_run, capsys):
    from vkit.core.store import open_store

    result, db, tmp = small_run
    data = tmp / "data" / "recommendation"
    with open(data / "interactions.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["user_id"] == "u0003"]
    train_items = {r["item_id"] for r in rows[:-4]}  # leave-last-out: the last 1 + 3 are val and test
    out = _main(capsys, "recommend", "--run", str(result.run_id), "--user", "u0003", "--user", "stranger", "-k", "10",
                "--json", db=db)
    known, unknown = json.loads(out)["recommendations"]
    ids = [r["item_id"] for r in known["items"]]
    assert known["known"] and len(ids) == 10 and not set(ids) & train_items
    assert all(r["because"] and set(r["because"]) <= train_items for r in known["items"])
    assert not unknown["known"] and "unknown user 'stranger'" in unknown["note"] and unknown["model"] == "Popularity"
    users = tmp / "users.txt"
    users.write_text("u0001\nu0002\nstranger\n")
    out = _main(capsys, "recommend", "--run", str(result.run_id), "--users", str(users), "-k", "5", db=db)
    run_id = int(out.split("store run ")[1].split(",")[0])
    stored = {r["item_id"]: r["values"] for r in open_store(db).run_predictions(run_id, "recommend")}
    assert set(stored) == {"u0001", "u0002", "stranger"} and len(stored["u0001"]["items"]) == 5
    assert stored["stranger"]["known"] is False
    from vkit.plugins.recommendation.store import run_recommendations

    ranked = run_recommendations(open_store(db), run_id, user_id="u0001")  # one row per (user, rank)
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5] and [r["item_id"] for r in ranked] == stored["u0001"]["items"]
    assert [r["item_id"] for r in run_recommendations(open_store(db), run_id, max_rank=1)] == [
        stored[u]["items"][0] for u in sorted(stored)]
    out = _main(capsys, "export", str(run_id), "--table", "recommendations", "--output", str(tmp / "export"), db=db)
    with open(tmp / "export" / f"run{run_id}_recommendations.csv") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == 15 and exported[0]["rank"] == "1" and exported[0]["user_id"] == "stranger"
    bad = _vkit("recommend", "--run", "999", "--user", "u0001", db=db)
    assert bad.returncode == 1 and "no run 999" in bad.stderr


def test_bad_input_is_recorded_and_the_run_goes_on(small_run, tmp_path):
    from vkit.core.store import open_store
    from vkit.workflows.run import run_task

    _, _, tmp = small_run
    data = tmp_path / "mine"
    shutil.copytree(tmp / "data" / "recommendation", data)
    (data / "videos" / "v0005.mp4").unlink()  # a missing video: content masked
    (data / "videos" / "v0006.mp4").write_bytes(b"not a video")  # an unreadable one
    with open(data / "interactions.csv", "a") as handle:
        handle.write("u0001,v9999,1700000000\nu0001,v0001,soon\n2.5,v0001,1\n")
    lines = (data / "items.csv").read_text().splitlines()
    lines[9] = ",".join(lines[9].split(",")[:-1] + ["long"])  # v0008: a duration that is not a number
    (data / "items.csv").write_text("\n".join(lines) + "\n")
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    # content fused with metadata: the masked videos' items are placed by their metadata
    result = run_task("recommendation", overrides=[*SMALL, "train.epochs=1", "compare.models=[]",
                                                   "model.fusion.type=GatedAttention"], data=data, db_url=db,
                      work_dir=tmp_path / "work", data_root=tmp_path / "cache", echo=lambda *_: None)
    assert result.status == "finished"
    skipped = {r["item_id"]: r["values"]["reason"] for r in open_store(db).run_predictions(result.run_id, "skipped")}
    assert "unknown item 'v9999'" in " ".join(skipped.values())
    assert any("timestamp" in why for why in skipped.values()) and any("neither a string" in w for w in skipped.values())
    assert "missing" in skipped["item:v0005"] and "content masked" in skipped["item:v0006"]
    assert skipped["items.csv:10"] == "item 'v0008': duration 'long' is not a number (seconds); its duration is left out"
    videos = {Path(v["path"]).name: v for v in open_store(db).get_videos()}
    assert videos["v0006.mp4"]["status"] == "failed" and videos["v0007.mp4"]["status"] == "ok"
    from vkit.plugins.recommendation.serve import load_recommender

    service = load_recommender(result.work_dir / "model.safetensors")
    assert service.model.fusion is not None and not service.model.content_mask[5:7].any()
    assert service.model.metadata_mask.all() and len(service.recommend("u0001", 5)["items"]) == 5


@pytest.mark.slow
def test_ray_engine_recommends_like_the_local_one(small_run):
    pytest.importorskip("ray.data")
    from vkit.plugins.recommendation.cli import recommend

    result, db, _ = small_run
    users = ["u0001", "stranger", "u0004"]
    _, local = recommend(str(result.run_id), users, 5, db_url=db)
    _, on_ray = recommend(str(result.run_id), users, 5, db_url=db, engine="ray", workers=1)
    assert on_ray == local and [r["user"] for r in on_ray] == users


def test_recommend_is_the_recommendation_plugins_command(tmp_path):
    """`vkit recommend` comes through the plugin's vkit_cli_commands hook: turned off with the plugin, never built in."""
    from vkit.hooks.manager import PluginManager
    from vkit.workflows.cli import cli

    assert "recommend" not in cli.commands  # not a built-in
    manager = PluginManager(autoload=False, extra=["vkit.plugins.recommendation.plugin"])
    [command] = manager.cli_commands(reserved=cli.commands)
    assert command.name == "recommend" and manager.errors == []
    assert manager.plugins()[0].hooks == ("vkit_cli_commands", "vkit_register_components", "vkit_report_sections",
                                             "vkit_store_schema", "vkit_tasks")
    off = vkit_cli.vkit("recommend", "--run", "1", "--user", "u1", check=False,
                        env=dict(VKIT_DISABLE_PLUGINS="recommendation", VKIT_CONFIG_DIR=str(tmp_path)))
    assert off.returncode == 2 and "No such command 'recommend'" in off.stderr


def test_recommendations_answered_are_stored_in_the_serve_run(small_run, tmp_path) -> None:
    """`vkit serve` stores the recommendations it answers: a row of split `recommend` per request in the serve run
    of the model that answered (written in batches, like predictions), equal to what `vkit recommend` ranks."""
    import asyncio
    from typing import Any

    import httpx

    from vkit.core.store import open_store
    from vkit.plugins.recommendation.cli import recommend
    from vkit.workflows.serve.app import build_app
    from vkit.workflows.serve.service import ServeSettings

    result, _, _ = small_run
    checkpoint, url = str(result.summary["checkpoint"]), f"sqlite:///{tmp_path / 'serve.db'}"

    async def main() -> tuple[list[dict[str, Any]], int, Any]:
        app = build_app(ServeSettings(checkpoints=[checkpoint], db_url=url, flush_seconds=30))
        service = app.state.service
        async with app.router.lifespan_context(app):
            known = service.recommenders["recommendation"].user_ids[0]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
                answers = await asyncio.gather(*(client.get(f"/v1/recommendation/users/{user}", params=dict(k=k))
                                                 for user, k in ((known, 3), ("nobody-like-this", 2), (known, 3))))
            assert service.recorder.waiting == 3  # nothing written per request: one batch at close
            run_id = service.runs["recommendation"]
        return [a.raise_for_status().json() for a in answers], run_id, service.recorder

    answers, run_id, recorder = asyncio.run(main())
    assert recorder.writes == 1 and recorder.written == 3
    store = open_store(url)
    run = store.get_run(run_id)
    assert run["kind"] == "serve" and run["status"] == "finished"
    rows = {r["item_id"]: r for r in store.run_predictions(run_id, "recommend")}
    store.close()
    assert len(rows) == 3 and len({a["request_id"] for a in answers}) == 3  # the same user twice: two rows
    _, (expected,) = recommend(checkpoint, [answers[0]["user"]], 3, db_url=url)
    for answer in answers:
        row = rows[f"{answer['request_id']}:{answer['user']}"]["values"]
        assert row["items"] == [i["item_id"] for i in answer["items"]]
        assert row["scores"] == pytest.approx([i["score"] for i in answer["items"]])
        assert (row["user"], row["known"], row["model"], row["sha256"]) == (
            answer["user"], answer["known"], answer["model"], answer["model_sha256"])
    assert answers[1]["known"] is False and rows[f"{answers[1]['request_id']}:nobody-like-this"]["values"]["k"] == 2
    assert [i["item_id"] for i in answers[0]["items"]] == [i["item_id"] for i in expected["items"]]
