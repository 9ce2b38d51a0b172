"""The fault matrix of `vkit score`: an archive of real-world trouble, every good file scored exactly once,
every bad one recorded with its reason — on SQLite and PostgreSQL.

Built in tmp: a name that is not UTF-8, an unreadable folder, names with glob
brackets, a symlink loop, a link to an ancestor of the archive, a hard link,
overlapping arguments, a PNG / an empty / a truncated / a text file named
``.mp4``, a file deleted after the inventory, before it is decoded, and
copies of a good file under another name and in another folder (same
content: scored once, the copies recorded as its duplicates).
"""
from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.core.store.paths import display_path  # noqa: E402
from vkit.registry.errors import DataError  # noqa: E402
from vkit.workflows.scoring import inventory as inventory_module  # noqa: E402
from vkit.workflows.scoring.inventory import find_videos, inventory  # noqa: E402
from vkit.workflows.scoring.score import ScoreOptions, score_archive  # noqa: E402

PLUGIN = ["test_score_support"]
NON_UTF8 = os.fsdecode(b"caf\xe9 \xff.mp4")


@pytest.fixture(autouse=True)
def _only_the_test_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")


def _locked(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` unreadable to the walk (tests run as root, where chmod 000 does not stop reads)."""
    real = os.scandir

    def scandir(path: object = ".") -> object:
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(folder))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    os.chmod(folder, 0)


def _build(root: Path) -> dict[str, list[Path]]:
    """The archive; ``{'good': [...], 'bad': [...], 'copies': [...]}`` (paths as a user would name them;
    ``copies``: ``a.mp4`` and two copies of it, one under another name, one in another folder)."""
    good = [support.write_good(root / "a.mp4", seed=1), support.write_good(root / "sub" / "b.mp4", seed=2),
            support.write_good(root / "Videos [2019]" / "c.mp4", seed=3),
            support.write_good(root / "cam[1]" / "d.mp4", seed=4), support.write_good(root / "cam1" / "e.mp4", seed=5)]
    os.replace(support.write_good(root / "odd.mp4", seed=9), root / NON_UTF8)
    good.append(root / NON_UTF8)
    copies = [good[0], root / "a copy.mp4", root / "backup" / "a.mp4"]
    (root / "backup").mkdir()
    for copy in copies[1:]:
        shutil.copy(good[0], copy)
    support.write_good(root / "locked" / "hidden.mp4", seed=6)                  # inside the unreadable folder
    os.link(good[1], root / "sub" / "b_hardlink.mp4")                          # the same real file again
    os.symlink("..", root / "sub" / "up")                                      # a loop
    os.symlink(root.parent, root / "sub" / "above")                            # an ancestor of the archive
    from PIL import Image
    import numpy as np

    bad = [root / "picture.mp4", root / "empty.mp4", root / "notes.mp4", root / "truncated.mp4", root / "gone.mp4"]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "picture.png")
    os.replace(root / "picture.png", bad[0])
    bad[1].write_bytes(b"")
    bad[2].write_text("not a video\n" * 50)
    whole = support.write_good(root / "tmp.mp4", seed=7, frames=48).read_bytes()
    (root / "tmp.mp4").unlink()
    bad[3].write_bytes(whole[: len(whole) // 2])
    support.write_good(bad[4], seed=8)
    return dict(good=good, bad=bad, copies=copies)


REASONS = {"picture.mp4": "not a video file (an image", "empty.mp4": "empty file (0 bytes)",
           "notes.mp4": "not a video file", "truncated.mp4": "truncated", "gone.mp4": "unreadable (No such file",
           "locked": "unreadable folder (Permission denied)"}


def test_inventory_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "archive"
    files = _build(root)
    _locked(monkeypatch, root / "locked")
    found = inventory([root, root / "sub", str(root / "cam[1]")])               # overlapping arguments
    names = Counter(Path(p).name for p in found.files)
    assert names["b.mp4"] + names["b_hardlink.mp4"] == 1 and names["a.mp4"] == 2   # one per real file (a copy
    assert str(root / "backup" / "a.mp4") in found.files                          # is another file)
    assert len(found.files) == len(files["good"]) + len(files["bad"]) + 2      # no file twice, nothing from above
    assert not any("/up/" in p or "/above/" in p for p in found.files)
    assert found.failures == [(str(root / "locked"), "unreadable folder (Permission denied)")]
    assert find_videos([str(root / "cam[1]")]) == [str(root / "cam[1]" / "d.mp4")]      # literal, not cam1/
    assert find_videos([str(root / "Videos [2019]")]) == [str(root / "Videos [2019]" / "c.mp4")]
    assert find_videos([str(root / "cam?")]) == [str(root / "cam1" / "e.mp4")]        # missing path: a pattern
    assert str(root / NON_UTF8) in found.files
    with pytest.raises(DataError, match="no such path, and as a pattern it matches no file or folder"):
        find_videos([str(root / "nothing*")])


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_fault_matrix(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'vkit.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    root = tmp_path / "archive"
    files = _build(root)
    _locked(monkeypatch, root / "locked")
    real_inventory = inventory_module.inventory

    def inventory_then_delete(*args: object, **kwargs: object) -> object:     # deleted after the listing
        found = real_inventory(*args, **kwargs)
        (root / "gone.mp4").unlink()
        return found

    monkeypatch.setattr(inventory_module, "inventory", inventory_then_delete)
    ckpt = support.make_checkpoint(tmp_path / "model.safetensors")
    summary = score_archive("demo-score", [str(root), str(root / "sub")], str(ckpt), db_url=url, plugins=PLUGIN,
                            options=ScoreOptions(workers=0, batch_size=4))
    good, bad, dups = len(files["good"]), len(files["bad"]), len(files["copies"]) - 1
    assert (summary.scored, summary.duplicates, summary.failed) == (good, dups, bad + 1)
    assert summary.videos == good + dups + bad + 1
    store = open_store(url)
    videos = {v["id"]: v for v in store.get_videos()}
    rows = store.video_summaries(summary.run_id)
    scored = Counter(videos[r["video_id"]]["path"] for r in rows if r["status"] == "scored")
    copies = {display_path(str(p))[0] for p in files["copies"]}
    expected = {display_path(str(p))[0] for p in files["good"]} - copies
    (original,) = set(scored) & copies                                         # one of the three copies is scored
    assert set(scored) == expected | {original} and set(scored.values()) == {1}   # every good content, exactly once
    assert len(store.video_scores(summary.run_id)) == 4 * good                 # no score rows for the duplicates
    duplicates = {videos[r["video_id"]]["path"]: r for r in rows if r["status"] == "duplicate"}
    assert set(duplicates) == copies - {original}
    by_path = {v["path"]: v for v in videos.values()}
    for path, row in duplicates.items():
        assert row["error"].startswith(f"duplicate of {original} (same sha256, scored in run {summary.run_id})")
        assert row["segments"] == 0 and row["video_sha256"] == by_path[original]["sha256"]
        assert (by_path[path]["status"], by_path[path]["error"]) == ("duplicate", row["error"])
    from click.testing import CliRunner

    from vkit.workflows.cli import cli
    from vkit.workflows.export import describe_scoring_run

    shown = describe_scoring_run(store, summary.run_id)
    assert (shown["counts"]["duplicates"], shown["counts"]["failed"]) == (dups, bad + 1)
    assert {d["path"] for d in shown["duplicates"]} == set(duplicates)
    out = CliRunner().invoke(cli, ["--db", url, "runs", "show", str(summary.run_id)], env={"COLUMNS": "400"})
    assert out.exit_code == 0 and out.output.count(f"duplicate of {original}") == dups, out.output
    failed = {Path(videos[r["video_id"]]["path"]).name: r["error"] for r in rows if r["status"] == "failed"}
    assert set(failed) == set(REASONS)
    for name, reason in REASONS.items():
        assert reason in failed[name], (name, failed[name])
    odd = next(v for v in videos.values() if v["path_bytes"] is not None)
    assert os.fsdecode(bytes(odd["path_bytes"])) == str(root / NON_UTF8) and odd["status"] == "ok"
    monkeypatch.setattr(inventory_module, "inventory", real_inventory)
    again = score_archive("demo-score", [str(root)], str(ckpt), db_url=url, plugins=PLUGIN,
                          options=ScoreOptions(workers=0))
    assert (again.scored, again.skipped, again.left_failed) == (0, good + dups, bad - 1)  # gone.mp4 is gone;
    assert (again.duplicates, again.failed) == (0, 1) and "locked" in again.failures[0]["path"]  # the folder is
    assert again.run_id != summary.run_id                                                         # listed again
    assert store.video_summaries(again.run_id) == [r for r in store.video_summaries(again.run_id)
                                                   if r["status"] == "failed"]                    # nothing rescored
    shutil.copy(files["copies"][0], root / "cam1" / "later copy.mp4")         # a new copy, scored by an earlier run
    third = score_archive("demo-score", [str(root)], str(ckpt), db_url=url, plugins=PLUGIN,
                          options=ScoreOptions(workers=0))
    assert (third.scored, third.duplicates, third.skipped) == (0, 1, good + dups)
    (late,) = [r for r in store.video_summaries(third.run_id) if r["status"] == "duplicate"]
    assert late["error"].startswith(f"duplicate of {original} (same sha256, scored in run {summary.run_id})")
    total = Counter(r["status"] for run in (summary, again, third) for r in store.video_summaries(run.run_id))
    assert total["scored"] == good and total["duplicate"] == dups + 1          # one scored summary per content
    store.close()


def test_one_video_the_store_refuses_does_not_sink_its_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vkit.core.store.store import Store
    from vkit.registry.errors import StoreError

    root = tmp_path / "archive"
    support.make_archive(root, good=3, bad=False)
    real = Store.add_leased_results

    def refuse_good1(self, run_id, model, results, **kwargs):  # noqa: ANN001, ANN202 - a store that rejects one row
        results = list(results)
        paths = {v["id"]: v["path"] for v in self.get_videos()}
        if any(paths[r["video_id"]].endswith("good1.mp4") and r["status"] == "scored" for r in results):
            raise StoreError("value too long for type character varying(2000)")
        return real(self, run_id, model, results, **kwargs)

    monkeypatch.setattr(Store, "add_leased_results", refuse_good1)
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    summary = score_archive("demo-score", [str(root)], str(support.make_checkpoint(tmp_path / "m.safetensors")),
                            db_url=url, plugins=PLUGIN, options=ScoreOptions(workers=0, commit_every=8))
    assert (summary.scored, summary.failed) == (2, 1)
    store = open_store(url)
    by_name = {Path(v["path"]).name: v for v in store.get_videos()}
    assert by_name["good1.mp4"]["status"] == "failed"
    assert "its results cannot be stored: value too long" in by_name["good1.mp4"]["error"]
    scored = [s for s in store.video_summaries(summary.run_id) if s["status"] == "scored"]
    assert len(scored) == 2 and len(store.video_scores(summary.run_id)) == 8
