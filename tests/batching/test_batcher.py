"""The dynamic batcher on real ONNX Runtime sessions (tiny models built here)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import onnxruntime as ort
import pytest

from app.batching.batcher import DynamicBatcher, PeerEstimate, partial_batch_complete
from app.errors import DeadlineExceeded, InvalidInput, Overloaded
from app.protocol.model_config import InstanceGroup
from app.runtime.session import RuntimeOptions, SessionPool
from testkit.models import affine_model, identity_model, lookup_model, matmul_chain_model, save


class Observer:
    def __init__(self):
        self.batches: list[int] = []
        self.reasons: list[str] = []
        self.pending = 0

    def queued(self, delta):
        self.pending += delta

    def dropped(self, reason):
        self.reasons.append(reason)

    def executed(self, rows, compute_s, waits):
        self.batches.append(rows)


def pool_for(tmp_path, model, name="m", count=1) -> SessionPool:
    path = save(model, tmp_path / f"{name}.onnx")
    return SessionPool(path, InstanceGroup(count=count), RuntimeOptions())


async def test_every_request_gets_exactly_its_own_rows(tmp_path):
    pool = pool_for(tmp_path, affine_model(width=4), count=2)
    direct = ort.InferenceSession(str(tmp_path / "m.onnx"))
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=16, max_queue_delay_s=0.002, observer=obs)
    batcher.start()
    rng = np.random.default_rng(1)
    # 400 concurrent requests of 1..3 rows each, all distinct.
    requests = [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(400)]
    results = await asyncio.gather(*(batcher.submit({"x": x}, len(x)) for x in requests))
    for x, res in zip(requests, results):
        y, s = direct.run(None, {"x": x})
        np.testing.assert_allclose(res.outputs["y"], y, rtol=1e-6)
        np.testing.assert_allclose(res.outputs["s"], s, rtol=1e-6)
    assert sum(obs.batches) == sum(len(x) for x in requests)
    assert len(obs.batches) < len(requests), "concurrent requests should have been batched together"
    assert max(obs.batches) <= 16
    assert obs.pending == 0
    await batcher.close()


async def test_full_batch_goes_at_once_and_partial_waits_for_the_delay(tmp_path):
    pool = pool_for(tmp_path, affine_model())
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=4, max_queue_delay_s=0.4, observer=obs)
    batcher.start()
    x = np.ones((1, 4), np.float32)
    # Four single-row requests fill the batch: nobody waits for the 0.4 s delay.
    full = await asyncio.gather(*(batcher.submit({"x": x}, 1) for _ in range(4)))
    assert obs.batches == [4]
    assert all(r.queue_seconds < 0.4 for r in full)
    # One request alone: a partial batch waits until it has waited the delay.
    lone = await batcher.submit({"x": x}, 1)
    assert lone.queue_seconds >= 0.4
    assert obs.batches == [4, 1]
    await batcher.close()


async def test_requests_of_different_shapes_are_never_mixed(tmp_path):
    pool = pool_for(tmp_path, identity_model())
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=32, max_queue_delay_s=0.05, observer=obs)
    batcher.start()

    def feeds(n):
        inputs = {}
        for dt, dtype in [("BOOL", bool), ("UINT8", np.uint8), ("UINT16", np.uint16), ("UINT32", np.uint32),
                          ("UINT64", np.uint64), ("INT8", np.int8), ("INT16", np.int16), ("INT32", np.int32),
                          ("INT64", np.int64), ("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64)]:
            inputs[f"in_{dt}"] = (np.arange(n) % 2).astype(dtype).reshape(1, n)  # fmt: skip
        inputs["in_BYTES"] = np.array([[f"w{i}" for i in range(n)]], dtype=object)
        return inputs

    widths = [3, 5, 3, 7, 5, 3]
    results = await asyncio.gather(*(batcher.submit(feeds(n), 1) for n in widths))
    for n, res in zip(widths, results):
        assert res.outputs["out_FP32"].shape == (1, n)
        assert list(res.outputs["out_BYTES"][0]) == [f"w{i}" for i in range(n)]
    # Three shape groups (3, 5, 7): three batches of 3, 2 and 1 requests.
    assert sorted(obs.batches) == [1, 2, 3]
    await batcher.close()


async def test_queue_full_rejects_at_once(tmp_path):
    pool = pool_for(tmp_path, matmul_chain_model(width=256, depth=16))
    obs = Observer()
    x = np.ones((64, 256), np.float32)
    big = DynamicBatcher(pool, max_batch_size=64, max_queue_size=3, observer=obs, retry_after_s=2)
    big.start()
    outcomes = await asyncio.gather(*(big.submit({"x": x}, 64) for _ in range(12)), return_exceptions=True)
    rejected = [o for o in outcomes if isinstance(o, Overloaded)]
    served = [o for o in outcomes if not isinstance(o, Exception)]
    assert rejected and served
    assert len(rejected) + len(served) == 12
    assert rejected[0].headers["Retry-After"] == "2"
    assert "max_queue_size" in rejected[0].message
    assert obs.reasons.count("queue_full") == len(rejected)
    await big.close()


async def test_expired_request_is_dropped_without_compute(tmp_path):
    pool = pool_for(tmp_path, matmul_chain_model(width=512, depth=16))
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=256, observer=obs)
    batcher.start()
    slow = np.ones((256, 512), np.float32)
    blocker = asyncio.ensure_future(batcher.submit({"x": slow}, 256))
    await asyncio.sleep(0.005)  # the blocker is now computing on the only instance
    x = np.ones((3, 512), np.float32)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit({"x": x}, 3, deadline=time.monotonic() + 0.001)
    await blocker
    # The expired 3-row request never reached a session: only the blocker's rows were computed.
    assert obs.batches == [256]
    assert obs.reasons == ["deadline"]
    assert obs.pending == 0
    await batcher.close()


async def test_cancelled_caller_has_its_queued_work_removed(tmp_path):
    pool = pool_for(tmp_path, matmul_chain_model(width=512, depth=16))
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=256, observer=obs)
    batcher.start()
    blocker = asyncio.ensure_future(batcher.submit({"x": np.ones((256, 512), np.float32)}, 256))
    await asyncio.sleep(0.005)
    gone = asyncio.ensure_future(batcher.submit({"x": np.ones((2, 512), np.float32)}, 2))
    await asyncio.sleep(0.001)
    assert batcher.queued == 1
    gone.cancel()
    await asyncio.sleep(0)
    assert batcher.queued == 0
    await blocker
    assert obs.batches == [256]
    assert obs.reasons == ["cancelled"]
    await batcher.close()


@pytest.mark.parametrize("ending", ["deadline", "cancelled"])
async def test_withdrawing_a_waiting_partial_batch_leaves_the_batcher_serving(tmp_path, ending):
    """A lone request waits for the delay (a partial batch) and is withdrawn meanwhile: the scheduler, holding
    the instance for it, must find nothing to run and go on (a stale batch once killed the scheduler task, and
    every later request of the model hung)."""
    pool = pool_for(tmp_path, affine_model())
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=4, max_queue_delay_s=0.3, observer=obs)
    batcher.start()
    x = np.ones((1, 4), np.float32)
    if ending == "deadline":
        with pytest.raises(DeadlineExceeded):
            await batcher.submit({"x": x}, 1, deadline=time.monotonic() + 0.05)
    else:
        gone = asyncio.ensure_future(batcher.submit({"x": x}, 1))
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.sleep(0)
    await asyncio.sleep(0.4)  # past the delay: the scheduler wakes with nothing left to run
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit({"x": x * i}, 1) for i in range(4))), 5)
    assert [float(r.outputs["y"][0, 0]) for r in results] == [float(i * 2 + 1) for i in range(4)]
    assert obs.batches == [4]
    assert obs.reasons == [ending]
    assert obs.pending == 0
    await batcher.close()


async def test_batching_off_runs_each_request_alone(tmp_path):
    pool = pool_for(tmp_path, affine_model())
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=16, batching=False, observer=obs)
    batcher.start()
    await asyncio.gather(*(batcher.submit({"x": np.ones((2, 4), np.float32)}, 2) for _ in range(20)))
    assert obs.batches == [2] * 20
    await batcher.close()


# ---------------------------------------------------------------------- adaptive delay policy
class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_peer_estimate_keeps_the_recent_peak_and_forgets_it_within_two_windows():
    clock = FakeClock()
    peers = PeerEstimate(window_s=1.0, clock=clock)
    assert peers.peak() == 0
    for inside in (1, 5, 3):
        peers.observe(inside)
    assert peers.peak() == 5
    clock.now += 1.2  # next window: the previous window's peak still counts
    peers.observe(2)
    assert peers.peak() == 5
    clock.now += 1.0  # the window holding 5 is now two windows old
    assert peers.peak() == 2
    clock.now += 2.5  # silence: nothing is expected any more
    assert peers.peak() == 0
    peers.observe(1)
    assert peers.peak() == 1


def test_partial_batch_is_complete_once_every_expected_peer_is_here():
    assert partial_batch_complete(waiting=1, computing=0, peak=1)  # a lone client
    assert not partial_batch_complete(waiting=1, computing=0, peak=2)  # a second client is on its way
    assert partial_batch_complete(waiting=1, computing=1, peak=2)  # ...unless it is computing
    assert not partial_batch_complete(waiting=20, computing=32, peak=64)
    assert partial_batch_complete(waiting=32, computing=32, peak=64)


def test_unknown_delay_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="delay_policy"):
        DynamicBatcher(pool_for(tmp_path, affine_model()), max_batch_size=4, delay_policy="sometimes")


async def test_adaptive_lone_request_does_not_wait_the_delay(tmp_path):
    pool = pool_for(tmp_path, affine_model())
    obs = Observer()
    # A delay no test could sit through: a lone request must not wait for it.
    batcher = DynamicBatcher(pool, max_batch_size=8, max_queue_delay_s=30.0, observer=obs, delay_policy="adaptive")
    batcher.start()
    x = np.ones((1, 4), np.float32)
    for _ in range(5):
        res = await asyncio.wait_for(batcher.submit({"x": x}, 1), timeout=5)
        assert res.queue_seconds < 1.0
    assert obs.batches == [1] * 5
    await batcher.close()


async def test_adaptive_still_batches_concurrent_clients(tmp_path):
    pool = pool_for(tmp_path, affine_model())
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=64, max_queue_delay_s=30.0, observer=obs, delay_policy="adaptive")
    batcher.start()
    x = np.ones((1, 4), np.float32)

    async def client(n):
        for _ in range(n):
            await batcher.submit({"x": x}, 1)

    # Eight closed-loop clients: none waits 30 s (each batch completes once the peers are in),
    # and their requests travel together rather than one by one.
    await asyncio.wait_for(asyncio.gather(*(client(10) for _ in range(8))), timeout=10)
    assert sum(obs.batches) == 80
    assert len(obs.batches) < 40, obs.batches
    await batcher.close()


async def test_adaptive_waits_for_a_peer_that_recent_traffic_announces(tmp_path):
    pool = pool_for(tmp_path, affine_model())
    obs = Observer()
    clock = FakeClock()
    peers = PeerEstimate(window_s=1000.0, clock=clock)
    batcher = DynamicBatcher(pool, max_batch_size=8, max_queue_delay_s=0.3, observer=obs, delay_policy="adaptive",
                             peers=peers)  # fmt: skip
    batcher.start()
    x = np.ones((1, 4), np.float32)
    await asyncio.gather(*(batcher.submit({"x": x}, 1) for _ in range(2)))  # two clients were seen together
    assert obs.batches == [2]
    first = asyncio.ensure_future(batcher.submit({"x": x}, 1))
    await asyncio.sleep(0.1)
    assert not first.done(), "with a second client expected, a partial batch waits for it"
    second = await batcher.submit({"x": x}, 1)
    assert (await first).batch_rows == 2 and second.batch_rows == 2
    # The expected peer never comes: the request still goes after max_queue_delay, as with fixed.
    alone = await batcher.submit({"x": x}, 1)
    assert 0.3 <= alone.queue_seconds < 1.5
    await batcher.close()


async def test_a_bad_id_in_a_batch_fails_only_its_own_request(tmp_path):
    """Id 99 is out of the lookup table's 0..9: ONNX Runtime refuses the whole 4-row batch, so the batcher reruns
    each request alone; the three good ones get their rows, the bad one a 400 in our words."""
    pool = pool_for(tmp_path, lookup_model(rows=10, width=3))
    obs = Observer()
    batcher = DynamicBatcher(pool, max_batch_size=4, max_queue_delay_s=0.5, observer=obs)
    batcher.start()
    ids = [1, 99, 2, 3]
    results = await asyncio.gather(*(batcher.submit({"user": np.array([i], np.int64)}, 1) for i in ids),
                                   return_exceptions=True)  # fmt: skip
    for i, res in zip(ids, results):
        if i == 99:
            assert isinstance(res, InvalidInput) and res.http_status == 400
            assert res.message == "model m.onnx refused input 'user': index 99 is outside 0..9"
        else:
            np.testing.assert_array_equal(res.outputs["scores"], [[3 * i, 3 * i + 1, 3 * i + 2]])
    assert obs.batches == [1, 1, 1], "the batch of four was refused, then its three good requests ran alone"
    # The instance was released exactly once: the batcher keeps serving batches.
    again = await asyncio.gather(*(batcher.submit({"user": np.array([i], np.int64)}, 1) for i in range(4)))
    assert [float(r.outputs["scores"][0, 0]) for r in again] == [0, 3, 6, 9]
    assert obs.batches == [1, 1, 1, 4]
    assert batcher._computing == 0  # counted once, not once per rerun (the adaptive policy reads it)
    await batcher.close()
