"""Request coalescing: concurrent submissions are processed together, each caller gets its own results."""

import asyncio

import pytest

from app.batching.coalescer import Coalescer


async def test_concurrent_submissions_share_one_group_and_get_their_own_results():
    groups = []

    async def process(key, items):
        groups.append((key, list(items)))
        await asyncio.sleep(0.01)
        return [f"{key}:{x * 10}" for x in items]

    c = Coalescer(process, max_items=100, max_delay_s=0.01)
    results = await asyncio.gather(c.submit("a", [1, 2]), c.submit("a", [3]), c.submit("b", [4]), c.submit("a", [5, 6]))
    assert results == [["a:10", "a:20"], ["a:30"], ["b:40"], ["a:50", "a:60"]]
    assert sorted(groups) == [("a", [1, 2, 3, 5, 6]), ("b", [4])]  # one group per key


async def test_groups_respect_max_items_and_arrivals_during_a_group_form_the_next():
    groups = []

    async def process(key, items):
        groups.append(list(items))
        await asyncio.sleep(0.02)
        return items

    c = Coalescer(process, max_items=3, max_delay_s=0)
    first = asyncio.gather(*(c.submit("k", [i]) for i in range(5)))
    await asyncio.sleep(0.01)  # the first group is running
    late = c.submit("k", [99])
    assert await first == [[0], [1], [2], [3], [4]]
    assert await late == [99]
    assert groups[0] == [0, 1, 2] and all(len(g) <= 3 for g in groups)
    assert sorted(x for g in groups for x in g) == [0, 1, 2, 3, 4, 99]


async def test_a_failing_group_fails_its_callers_only():
    async def process(key, items):
        if "bad" in items:
            raise ValueError("boom")
        return items

    c = Coalescer(process, max_items=1, max_delay_s=0)
    ok, bad = await asyncio.gather(c.submit("k", ["fine"]), c.submit("k", ["bad"]), return_exceptions=True)
    assert ok == ["fine"]
    assert isinstance(bad, ValueError)
    assert await c.submit("k", ["again"]) == ["again"]  # the coalescer keeps working


async def test_a_cancelled_caller_is_skipped():
    seen = []

    async def process(key, items):
        seen.extend(items)
        return items

    c = Coalescer(process, max_items=10, max_delay_s=0.02)
    gone = asyncio.ensure_future(c.submit("k", ["gone"]))
    kept = asyncio.ensure_future(c.submit("k", ["kept"]))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == ["kept"]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert seen == ["kept"]
