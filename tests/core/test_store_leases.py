"""Video leases (cooperating scoring jobs) and non-UTF-8 file names, on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from vkit.core.store import open_store

MODEL = "m" * 64


def _run(store, **kwargs) -> int:
    return store.start_run("score", "test", {}, seed=None, model_sha256=MODEL, **kwargs)


def _result(video_id: int, score: float = 0.5) -> dict:
    return dict(video_id=video_id, status="scored", scores=[dict(segment=0, start=0.0, end=1.0, score=score)], events=[])


def test_a_lease_is_taken_once_until_it_expires_or_its_run_ends(store) -> None:
    a, b = _run(store), _run(store)
    vid = store.upsert_videos([dict(path="/v.mp4")])["/v.mp4"]
    assert store.claim_video(a, MODEL, vid, seconds=60) == dict(scored_sha256=None, failed=False, failed_sha256=None)
    assert store.claim_video(b, MODEL, vid, seconds=60) is None                      # held by a live run
    assert store.claim_video(a, MODEL, vid, seconds=60) is not None                  # its own: renewed
    assert store.claim_video(b, "x" * 64, vid) is not None                           # another model: its own lease
    store.claim_video(a, MODEL, vid, seconds=-1)                                     # expired
    assert store.claim_video(b, MODEL, vid, seconds=60) is not None                  # taken over
    assert store.claim_video(a, MODEL, vid, seconds=60) is None
    store.finish_run(b, "failed", "boom")                                            # its run ended
    assert store.claim_video(a, MODEL, vid, seconds=60) is not None
    assert store.renew_leases(a, 60) == 1


def test_results_of_a_lost_lease_are_dropped_and_written_ones_release_it(store) -> None:
    a, b = _run(store), _run(store)
    ids = store.upsert_videos([dict(path="/1.mp4", sha256="s1"), dict(path="/2.mp4", sha256="s2")])
    one, two = ids["/1.mp4"], ids["/2.mp4"]
    store.claim_video(a, MODEL, one)
    store.claim_video(a, MODEL, two, seconds=-1)
    assert store.claim_video(b, MODEL, two) is not None                              # b took the expired one
    payloads, dropped = store.add_leased_results(a, MODEL, [_result(one), _result(two)])
    assert [p["path"] for p in payloads] == ["/1.mp4"] and dropped == [two]
    assert [s["video_id"] for s in store.video_summaries(a)] == [one]
    assert store.renew_leases(a) == 0                                                # released with the results
    again = store.claim_video(b, MODEL, one)                                         # done: the claim says so
    assert again == dict(scored_sha256="s1", failed=False, failed_sha256=None)
    store.add_leased_results(b, MODEL, [dict(video_id=two, status="failed", error="bad", scores=[], events=[])])
    assert store.claim_video(a, MODEL, two) == dict(scored_sha256=None, failed=True, failed_sha256="s2")


def _race(store_url: str, runs: list[int], claims: Callable[[Any, int], list[int]]) -> dict[int, list[int]]:
    """``{run: claims(store, run)}``, each run in its own thread with its own store, all at once."""
    won: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def job(run_id: int) -> None:
        store = open_store(store_url)
        try:
            won[run_id] = claims(store, run_id)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            store.close()

    threads = [threading.Thread(target=job, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return won


def test_concurrent_claims_give_each_video_to_exactly_one_run(store_url: str) -> None:
    setup = open_store(store_url)
    runs = [_run(setup) for _ in range(4)]
    ids = list(setup.upsert_videos([dict(path=f"/{i}.mp4") for i in range(30)]).values())

    def claims(store: Any, run_id: int) -> list[int]:
        return [vid for vid in ids if store.claim_video(run_id, MODEL, vid, seconds=60) is not None]

    won = _race(store_url, runs, claims)
    claimed = [v for r in runs for v in won[r]]
    assert sorted(claimed) == sorted(ids)                                             # each exactly once
    setup.close()


def test_non_utf8_names_are_stored_losslessly(store) -> None:
    raw = b"/archive/caf\xe9 \xff.mp4"
    name = os.fsdecode(raw)
    ids = store.upsert_videos([dict(path=name, status="failed", error=f"{name}: not a video"),
                               dict(path="/archive/ok.mp4")])
    assert set(ids) == {name, "/archive/ok.mp4"}
    [row] = store.get_videos([name])
    assert row["path"] == "/archive/caf\\xe9 \\xff.mp4" and bytes(row["path_bytes"]) == raw
    assert os.fsdecode(bytes(row["path_bytes"])) == name and row["error"].endswith("caf\\xe9 \\xff.mp4: not a video")
    assert store.get_videos(["/archive/ok.mp4"])[0]["path_bytes"] is None
    run = _run(store)
    store.claim_video(run, MODEL, ids[name])
    payloads, _ = store.add_leased_results(run, MODEL, [dict(video_id=ids[name], status="failed", error=name,
                                                            scores=[], events=[])])
    assert payloads[0]["path"] == "/archive/caf\\xe9 \\xff.mp4"


@pytest.mark.parametrize("where", ["scored", "failed"])
def test_previous_outcome_is_the_newest_of_this_model(store, where: str) -> None:
    first, second = _run(store), _run(store)
    vid = store.upsert_videos([dict(path="/v.mp4", sha256="c1")])["/v.mp4"]
    store.add_video_results(first, [_result(vid)])
    store.add_video_results(second, [dict(video_id=vid, status=where, error="x" if where == "failed" else None,
                                          scores=[], events=[])])
    claim = store.claim_video(second, MODEL, vid)
    assert claim["scored_sha256"] == "c1" and claim["failed"] is (where == "failed")


def test_a_content_is_leased_once_per_model_whatever_its_path(store) -> None:
    a, b = _run(store), _run(store)
    ids = store.upsert_videos([dict(path=f"/{n}.mp4") for n in ("1", "2", "3")])
    one, two, three = ids["/1.mp4"], ids["/2.mp4"], ids["/3.mp4"]
    for run, vid in ((a, one), (b, two), (a, three)):
        assert store.claim_video(run, MODEL, vid, seconds=60) is not None
    free = dict(scored_path=None, scored_run_id=None, scored_video_id=None, recorded=False)
    assert store.claim_content(a, MODEL, one, "c" * 64) == free
    assert store.claim_content(b, MODEL, two, "c" * 64) is None                      # another job holds the content
    assert store.claim_content(a, MODEL, three, "c" * 64) is None                    # so does this job, at /1.mp4
    assert store.claim_content(b, MODEL, one, "d" * 64) is None                      # not b's lease on /1.mp4
    store.upsert_videos([dict(path="/1.mp4", sha256="c" * 64)])
    store.add_leased_results(a, MODEL, [_result(one)])                               # releases the content
    scored = dict(scored_path="/1.mp4", scored_run_id=a, scored_video_id=one, recorded=False)
    assert store.claim_content(b, MODEL, two, "c" * 64) == scored                   # now: a duplicate of /1.mp4
    store.upsert_videos([dict(path="/2.mp4", sha256="c" * 64, status="duplicate", error="duplicate of /1.mp4")])
    store.add_leased_results(b, MODEL, [dict(video_id=two, status="duplicate", error="duplicate of /1.mp4",
                                             scores=[], events=[])])
    assert store.claim_video(b, MODEL, two) is not None
    assert store.claim_content(b, MODEL, two, "c" * 64) == dict(scored, recorded=True)   # recorded: nothing to redo
    assert store.claim_video(b, MODEL, three, seconds=60) is None                    # a still holds /3.mp4 ...
    store.claim_video(a, MODEL, three, seconds=-1)                                   # ... until it expires
    assert store.claim_video(b, MODEL, three) is not None
    assert store.claim_content(b, MODEL, three, "e" * 64) == free


def test_a_dead_runs_content_lease_is_taken_over(store) -> None:
    a, b = _run(store), _run(store)
    ids = store.upsert_videos([dict(path="/1.mp4"), dict(path="/2.mp4")])
    store.claim_video(a, MODEL, ids["/1.mp4"])
    store.claim_video(b, MODEL, ids["/2.mp4"])
    assert store.claim_content(a, MODEL, ids["/1.mp4"], "c" * 64) is not None
    assert store.claim_content(b, MODEL, ids["/2.mp4"], "c" * 64) is None
    store.finish_run(a, "interrupted", "killed")
    assert store.claim_content(b, MODEL, ids["/2.mp4"], "c" * 64) is not None


def test_concurrent_content_claims_give_each_content_to_one_path(store_url: str) -> None:
    setup = open_store(store_url)
    runs = [_run(setup) for _ in range(4)]
    paths = {r: list(setup.upsert_videos([dict(path=f"/{r}/{i}.mp4") for i in range(10)]).values()) for r in runs}

    def claims(store: Any, run_id: int) -> list[int]:
        won = []
        for i, vid in enumerate(paths[run_id]):                                       # run r's i-th path: content i
            assert store.claim_video(run_id, MODEL, vid, seconds=60) is not None
            if store.claim_content(run_id, MODEL, vid, f"{i:064x}") is not None:
                won.append(i)
        return won

    won = _race(store_url, runs, claims)
    assert sorted(i for r in runs for i in won[r]) == list(range(10))                # each content exactly once
    setup.close()
