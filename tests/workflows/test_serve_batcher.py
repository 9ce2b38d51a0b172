"""The micro-batcher of `vkit serve`: concurrent requests share batches, each gets its own result, a broken replica's
requests are retried once then fail with ReplicaFailed, nothing waits past its timeout, a reload drops nothing."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from vkit.registry.errors import ConfigError
from vkit.workflows.serve.batcher import MicroBatcher, ReplicaFailed


def _run(coro):  # noqa: ANN001, ANN202 - a test helper
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_get_their_own_results() -> None:
    seen: list[int] = []

    def double(items: list[int]) -> list[object]:
        seen.append(len(items))
        time.sleep(0.02)                                   # a model takes time: requests pile up meanwhile
        return [ValueError(f"bad {x}") if x == 13 else x * 2 for x in items]

    async def main() -> list[object]:
        batcher = MicroBatcher([double], max_batch=8, max_wait=0.01)
        results = await asyncio.gather(*[batcher.submit(x) for x in range(40)], return_exceptions=True)
        await batcher.close()
        return results

    results = _run(main())
    assert [r for i, r in enumerate(results) if i != 13] == [2 * i for i in range(40) if i != 13]
    assert isinstance(results[13], ValueError) and str(results[13]) == "bad 13"   # one item fails alone
    assert max(seen) == 8 and sum(seen) == 40 and len(seen) <= 8, seen


def test_a_broken_replica_is_retried_elsewhere_then_fails_with_503_never_hangs() -> None:
    calls = {"broken": 0}

    def broken(items: list[int]) -> list[int]:
        calls["broken"] += 1
        raise RuntimeError("replica died")

    def healthy(items: list[int]) -> list[int]:
        time.sleep(0.01)
        return [x + 1 for x in items]

    async def main() -> tuple[list[object], list[object]]:
        two = MicroBatcher([broken, healthy], max_batch=4, max_wait=0.001, timeout=10, cooldown=0.5)
        mixed = await asyncio.gather(*[two.submit(x) for x in range(12)], return_exceptions=True)
        await two.close()
        one = MicroBatcher([broken], max_batch=4, max_wait=0.001, timeout=10, cooldown=0.05)
        began = time.monotonic()
        dead = await asyncio.gather(*[one.submit(x) for x in range(6)], return_exceptions=True)
        assert time.monotonic() - began < 5
        await one.close()
        return mixed, dead

    mixed, dead = _run(main())
    assert all(r == x + 1 or isinstance(r, ReplicaFailed) for x, r in enumerate(mixed)), mixed
    assert mixed == [x + 1 for x in range(12)] and calls["broken"] >= 1       # retried on the healthy replica
    assert all(isinstance(r, ReplicaFailed) and "replica 0 failed: RuntimeError: replica died" in str(r) for r in dead)


def test_a_request_gives_up_after_its_timeout() -> None:
    release = threading.Event()

    def stuck(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    async def main() -> None:
        batcher = MicroBatcher([stuck], timeout=0.2)
        with pytest.raises(TimeoutError, match=r"no result within 0.2 s"):
            await batcher.submit(1)
        release.set()
        await batcher.close()

    _run(main())


def test_replace_swaps_the_model_between_batches_and_drops_nothing() -> None:
    def model(tag: str):  # noqa: ANN202 - a test double
        def run(items: list[int]) -> list[tuple[str, int]]:
            time.sleep(0.005)
            return [(tag, x) for x in items]
        return run

    async def main() -> list[tuple[str, int]]:
        batcher = MicroBatcher([model("old")], max_batch=4, max_wait=0.001)
        first = [asyncio.ensure_future(batcher.submit(x)) for x in range(30)]
        await asyncio.sleep(0.02)
        old = batcher.replace([model("new")])
        assert await asyncio.to_thread(batcher.wait_finished, old, 5)
        rest = [asyncio.ensure_future(batcher.submit(x)) for x in range(30, 40)]
        results = await asyncio.gather(*first, *rest)
        await batcher.close()
        return results

    results = _run(main())
    assert [x for _, x in results] == list(range(40))                       # every request answered, in order
    assert {tag for tag, _ in results[30:]} == {"new"} and results[0][0] == "old"


def test_a_lone_request_is_dispatched_without_waiting_and_announced_ones_are_waited_for() -> None:
    seen: list[list[int]] = []

    def model(items: list[int]) -> list[int]:
        seen.append(list(items))
        return [x + 1 for x in items]

    async def main() -> tuple[int, int, list[int], int]:
        batcher = MicroBatcher([model], max_batch=8, max_wait=60.0)    # a wait would outlast the 5 s timeout below
        lone = await asyncio.wait_for(batcher.submit(1), 5)
        lone_waits = batcher.stats.waits

        async def announced(x: int) -> int:
            with batcher.arriving():                                   # loading its input: on its way, not queued
                for _ in range(3):
                    await asyncio.sleep(0)
            return await batcher.submit(x)

        second = asyncio.ensure_future(announced(20))
        await asyncio.sleep(0)                                         # announced now
        first = asyncio.ensure_future(batcher.submit(10))
        pair = await asyncio.wait_for(asyncio.gather(first, second), 5)
        await batcher.close()
        return lone, lone_waits, pair, batcher.stats.waits

    lone, lone_waits, pair, waits = _run(main())
    assert lone == 2 and lone_waits == 0 and seen[0] == [1]                 # dispatched at once, no wait counted
    assert pair == [11, 21] and seen[1] == [10, 20]                          # waited for the announced one: one batch
    assert len(seen) == 2 and waits == 1


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError, match="max batch must be an int >= 1"):
        MicroBatcher([lambda items: items], max_batch=0)
    with pytest.raises(ConfigError, match="at least one replica"):
        MicroBatcher([])
