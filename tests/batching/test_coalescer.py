"""Request coalescing: concurrent submissions are processed together, each caller gets its own results."""

import asyncio

import pytest

from app.errors import DeadlineExceeded, Overloaded

from app.batching.coalescer import Coalescer


async def test_concurrent_submissions_share_one_group_and_get_their_own_results():
    groups = []

    async def process(key, items, group):
        groups.append((key, list(items)))
        await asyncio.sleep(0.01)
        return [f"{key}:{x * 10}" for x in items]

    c = Coalescer(process, max_items=100, max_delay_s=0.01)
    results = await asyncio.gather(c.submit("a", [1, 2]), c.submit("a", [3]), c.submit("b", [4]), c.submit("a", [5, 6]))
    assert results == [["a:10", "a:20"], ["a:30"], ["b:40"], ["a:50", "a:60"]]
    assert sorted(groups) == [("a", [1, 2, 3, 5, 6]), ("b", [4])]  # one group per key


async def test_groups_respect_max_items_and_arrivals_during_a_group_form_the_next():
    groups = []

    async def process(key, items, group):
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
    async def process(key, items, group):
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

    async def process(key, items, group):
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


async def test_the_waiting_list_is_bounded():
    release = asyncio.Event()

    async def process(key, items, group):
        await release.wait()
        return items

    c = Coalescer(process, max_items=1, max_delay_s=0, max_waiting=2, retry_after_s=3, name="m")
    running = asyncio.ensure_future(c.submit("k", ["running"]))
    await asyncio.sleep(0.01)  # its group runs: it no longer waits
    waiting = [asyncio.ensure_future(c.submit("k", [i])) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refused:
        await c.submit("other key", ["one too many"])
    assert refused.value.retry_after == 3 and "max_queue_size" in refused.value.message
    release.set()
    assert await running == ["running"] and await asyncio.gather(*waiting) == [[0], [1]]
    assert c.waiting == 0 and await c.submit("k", ["again"]) == ["again"]


async def test_each_caller_has_its_own_deadline_and_a_leaver_is_no_longer_live():
    lives = []

    async def process(key, items, group):
        for _ in range(10):  # a decode loop asking before every step
            lives.append(group.live())
            await asyncio.sleep(0.01)
        return items

    c = Coalescer(process, max_items=10, max_delay_s=0)
    now = asyncio.get_running_loop().time()
    short = asyncio.ensure_future(c.submit("k", ["a", "b"], deadline=now + 0.03))
    patient = asyncio.ensure_future(c.submit("k", ["c"], deadline=now + 5))
    endless = asyncio.ensure_future(c.submit("k", ["d"]))
    with pytest.raises(DeadlineExceeded):
        await short
    assert await patient == ["c"] and await endless == ["d"]  # the first caller's deadline is not theirs
    assert lives[0] == [True, True, True, True] and lives[-1] == [False, False, True, True]


async def test_the_group_deadline_is_its_latest_callers():
    deadlines = []

    async def process(key, items, group):
        deadlines.append(group.deadline)
        return items

    c = Coalescer(process, max_items=10, max_delay_s=0.01)
    now = asyncio.get_running_loop().time()
    await asyncio.gather(c.submit("a", [1], deadline=now + 1), c.submit("a", [2], deadline=now + 2),
                         c.submit("b", [3], deadline=now + 1), c.submit("b", [4]))
    assert sorted(deadlines, key=str) == sorted([now + 2, None], key=str)


async def test_a_past_deadline_is_refused_without_queueing():
    async def process(key, items, group):
        raise AssertionError("not processed")

    c = Coalescer(process)
    with pytest.raises(DeadlineExceeded):
        await c.submit("k", [1], deadline=asyncio.get_running_loop().time() - 1)
    assert c.waiting == 0


async def test_a_cancelled_caller_inside_a_running_group_is_no_longer_live():
    lives = []

    async def process(key, items, group):
        for _ in range(5):
            lives.append(group.live())
            await asyncio.sleep(0.01)
        return items

    c = Coalescer(process, max_items=10, max_delay_s=0)
    gone = asyncio.ensure_future(c.submit("k", ["gone", "gone too"]))
    kept = asyncio.ensure_future(c.submit("k", ["kept"]))
    await asyncio.sleep(0.015)
    gone.cancel()
    assert await kept == ["kept"]
    assert lives[0] == [True, True, True] and lives[-1] == [False, False, True]


async def test_groups_beyond_max_groups_wait_counted_in_the_bounded_list():
    release, running = asyncio.Event(), []

    async def process(key, items, group):
        running.append(key)
        await release.wait()
        return items

    c = Coalescer(process, max_items=4, max_delay_s=0, max_waiting=2, max_groups=1)
    first = asyncio.ensure_future(c.submit("a", [1]))
    await asyncio.sleep(0.01)
    others = [asyncio.ensure_future(c.submit(key, [2])) for key in ("b", "c")]  # other keys: no free group slot
    await asyncio.sleep(0.01)
    assert running == ["a"] and c.waiting == 2
    with pytest.raises(Overloaded):
        await c.submit("d", [3])
    release.set()
    assert await first == [1] and await asyncio.gather(*others) == [[2], [2]]
    assert sorted(running) == ["a", "b", "c"]


class Drops(list):
    """The part of ``BatchObserver`` a coalescer reports to: the reasons of its dropped callers."""

    def dropped(self, reason: str) -> None:
        self.append(reason)


async def test_refused_and_withdrawn_callers_are_reported_as_the_batcher_reports_them():
    release = asyncio.Event()

    async def process(key, items, group):
        await release.wait()
        return items

    drops = Drops()
    c = Coalescer(process, max_items=1, max_delay_s=0, max_waiting=2, observer=drops)
    now = asyncio.get_running_loop().time()
    with pytest.raises(DeadlineExceeded):
        await c.submit("k", ["deadline already passed"], deadline=now - 1)
    running = asyncio.ensure_future(c.submit("k", ["running, then cancelled"]))
    await asyncio.sleep(0.01)  # its group runs
    late = asyncio.ensure_future(c.submit("k", ["deadline while waiting"], deadline=now + 0.05))
    gone = asyncio.ensure_future(c.submit("k", ["cancelled while waiting"]))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await c.submit("k", ["queue full"])
    with pytest.raises(DeadlineExceeded):
        await late
    gone.cancel()
    running.cancel()
    await asyncio.gather(gone, running, return_exceptions=True)
    release.set()
    assert drops == ["deadline", "queue_full", "deadline", "cancelled", "cancelled"]
