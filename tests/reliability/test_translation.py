"""The translation path is bounded like every other model, over REST and gRPC, against a real
server process and a real (copying) translation model whose decode steps are paced by the
batcher's delay, so timings hold on any machine:

- overload at 3x the served capacity: some answered (correctly), the rest shed at once with
  503 + Retry-After / RESOURCE_EXHAUSTED; nothing hangs, nothing is a 500;
- a client that leaves mid-decode (REST disconnect, gRPC cancel) has its rows dropped from the
  decode loop: counted in the rows the model computed;
- each caller has its own deadline: the short one is answered 504 / DEADLINE_EXCEEDED while
  the patient one of the same decode group gets its full translation.

DENDRITE_TEST_OVERLOAD_SECONDS sets the overload duration (default 8 s here; the issue's bar is 30).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

import aiohttp
import grpc
import httpx
import pytest

from app.transports.grpc.generated.dendrite.v1 import predict_pb2 as pb
from app.transports.grpc.generated.dendrite.v1 import predict_pb2_grpc as pb_grpc
from testkit.load import Tally, closed_loop, open_loop
from testkit.server import ServerProcess
from testkit.models import COPY_WORDS, write_copying_translation

SECONDS = float(os.environ.get("DENDRITE_TEST_OVERLOAD_SECONDS", "8"))
STEP_S = 0.02  # the batcher's delay: every decode step of a partial batch lasts at least this
LONG = " ".join(COPY_WORDS[:40])  # 41 decode steps: at least 0.8 s
LONGER = " ".join(COPY_WORDS[:60])  # 61 decode steps: at least 1.2 s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("translation")
    # batches here stay partial (fewer than 32 rows), so every step waits the delay
    write_copying_translation(repo, "copy", step_delay_us=int(STEP_S * 1e6), max_batch_size=32)
    # the overload model: real compute per row (its batches fill up and do not wait), 8 requests may queue
    write_copying_translation(repo, "copy-small-queue", step_delay_us=10_000, max_batch_size=8, max_queue_size=8,
                              step_work=48)
    with ServerProcess(repo, grpc=True, env={"DENDRITE_RETRY_AFTER_SECONDS": "2"}) as s:
        yield s


def rows_computed(server: ServerProcess, model: str) -> float:
    return server.counters(model)[0]


def texts(seed: int, n: int = 24) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(COPY_WORDS, 12)) for _ in range(n)]


def rest_case(text: str):
    body = json.dumps({"model": "copy-small-queue", "texts": [text]}).encode()
    return body, {"Content-Type": "application/json"}, text


def check_rest(response: aiohttp.ClientResponse, data: bytes, expected: str) -> str | None:
    got = json.loads(data)["translations"][0]["text"]
    return None if got == expected else f"{got!r} != {expected!r}"


async def grpc_open_loop(target: str, sources: list[str], rate: float, seconds: float) -> tuple[dict, list[str]]:
    """Poisson arrivals over gRPC: status code counts and wrong answers."""
    rng, codes, wrong = random.Random(7), {}, []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.PredictStub(channel)

        async def one(text: str) -> None:
            try:
                reply = await stub.Translation(pb.TranslationRequest(model="copy-small-queue", texts=[text]), timeout=60)
                code = grpc.StatusCode.OK
                if reply.translations[0].text != text:
                    wrong.append(reply.translations[0].text)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            codes[code.name] = codes.get(code.name, 0) + 1

        tasks, start = [], time.perf_counter()
        next_at = 0.0
        while next_at < seconds:
            await asyncio.sleep(max(0.0, next_at - (time.perf_counter() - start)))
            tasks.append(asyncio.create_task(one(rng.choice(sources))))
            next_at += rng.expovariate(rate)
        await asyncio.gather(*tasks)
    return codes, wrong


def test_overload_at_three_times_capacity_sheds_the_rest_over_rest_and_grpc(server):
    url = f"{server.url}/predict/translation"
    cases = [rest_case(t) for t in texts(0)]

    async def scenario() -> tuple[float, Tally, tuple[dict, list[str]], float]:
        # capacity: back-to-back full groups (8 decoding, 8 waiting); the first burst of 16 meets an
        # empty waiting list, so a few of it are refused before the first group forms
        warm, capacity = await closed_loop(url, cases, concurrency=16, seconds=4, check=check_rest)
        assert set(warm.statuses) <= {200, 503} and not warm.wrong, (warm.statuses, warm.wrong[:3])
        started = time.perf_counter()
        rest, over_grpc = await asyncio.gather(
            open_loop(url, cases, rate=2 * capacity, seconds=SECONDS, check=check_rest),
            grpc_open_loop(server.grpc_target, texts(1), rate=capacity, seconds=SECONDS))
        return capacity, rest, over_grpc, time.perf_counter() - started

    capacity, rest, (grpc_codes, grpc_wrong), took = asyncio.run(scenario())
    print(f"\ntranslation overload: capacity {capacity:.1f} req/s, offered {3 * capacity:.1f} req/s "
          f"(2/3 REST, 1/3 gRPC) for {SECONDS:.0f} s, done in {took:.1f} s: REST {rest.statuses} "
          f"(p50/max latency of 200s {sorted(rest.latencies)[len(rest.latencies) // 2]:.2f}/"
          f"{max(rest.latencies):.2f} s), gRPC {grpc_codes}")  # fmt: skip
    assert not rest.errors, rest.errors[:5]
    assert set(rest.statuses) <= {200, 503} and rest.statuses.get(503) and rest.statuses.get(200), rest.statuses
    assert rest.missing_retry_after == 0 and not rest.wrong, rest.wrong[:5]
    assert set(grpc_codes) <= {"OK", "RESOURCE_EXHAUSTED"} and grpc_codes.get("OK"), grpc_codes
    assert grpc_codes.get("RESOURCE_EXHAUSTED") and not grpc_wrong, (grpc_codes, grpc_wrong[:5])
    assert took < SECONDS + 15  # nothing hung: what was accepted was answered soon after the load stopped
    # a refused request names the bound to raise, and Retry-After is the server's setting
    r = httpx.post(url, json={"model": "copy-small-queue", "texts": ["w1"]}, timeout=30)
    assert r.status_code == 200  # and the model serves again once the load is gone


async def _rest_leaver(url: str, leave_after: float) -> None:
    body = {"model": "copy", "texts": [LONGER] * 7}
    async with httpx.AsyncClient(timeout=leave_after) as client:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            await client.post(f"{url}/predict/translation", json=body)


async def _grpc_leaver(target: str, leave_after: float) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        started = time.perf_counter()
        call = pb_grpc.PredictStub(channel).Translation(pb.TranslationRequest(model="copy", texts=[LONGER] * 7))
        await asyncio.sleep(leave_after - (time.perf_counter() - started))
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_client_that_leaves_mid_decode_is_no_longer_decoded(server, transport):
    leave_after = 0.3

    async def scenario() -> str:
        leaver = asyncio.create_task((_rest_leaver(server.url, leave_after) if transport == "rest"
                                      else _grpc_leaver(server.grpc_target, leave_after)))  # fmt: skip
        await asyncio.sleep(0.1)  # the leaver is decoding; the stayer waits for the next group
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            stayer = asyncio.create_task(client.post("/predict/translation", json={"model": "copy", "texts": [LONG]}))
            await leaver
            r = await stayer
            assert r.status_code == 200, r.text
            return r.json()["translations"][0]["text"]

    before = rows_computed(server, "copy")
    assert asyncio.run(scenario()) == LONG
    rows = rows_computed(server, "copy") - before
    stayer_rows = 1 + 41  # encoder + one row per step
    # Decoded in full, the leaver would add 7 x 62 rows. It leaves after 0.3 s, about 15 of its 61
    # steps; on a busy machine the disconnect takes a while to be seen, so the bound is half of them.
    full = 7 * (1 + 61)
    print(f"\n{transport} leaver: {rows:.0f} rows decoded (stayer alone {stayer_rows}, "
          f"leaver decoded in full would add {full})")
    assert stayer_rows + 7 * 2 <= rows <= stayer_rows + full / 2, rows  # decoding when it left, not to the end


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_each_caller_of_a_decode_group_has_its_own_deadline(server, transport):
    """A blocker's group runs while the short caller, then the patient one, queue: they form the
    next group together, the short caller first (its deadline passes during that group)."""
    timeout = 1.2
    blocker_body = {"model": "copy", "texts": [LONG]}
    short_body, patient_body = {"model": "copy", "texts": [LONG] * 3}, {"model": "copy", "texts": [LONG]}

    async def over_rest(client: httpx.AsyncClient, body: dict, timeout: float | None = None) -> str:
        r = await client.post("/predict/translation", json=body,
                              headers={"X-Request-Timeout": str(timeout)} if timeout else {})  # fmt: skip
        if timeout:
            assert r.status_code == 504 and "deadline" in r.json()["error"], r.text
            return "504"
        assert r.status_code == 200, r.text
        return r.json()["translations"][0]["text"]

    async def over_grpc(stub, body: dict, timeout: float | None = None) -> str:
        try:
            return (await stub.Translation(pb.TranslationRequest(**body), timeout=timeout or 60)).translations[0].text
        except grpc.aio.AioRpcError as exc:
            assert timeout, exc
            return exc.code().name

    async def scenario() -> tuple[str, str, float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client, \
                grpc.aio.insecure_channel(server.grpc_target) as channel:  # fmt: skip
            await channel.channel_ready()
            stub = pb_grpc.PredictStub(channel)
            send = (lambda *a: over_rest(client, *a)) if transport == "rest" else (lambda *a: over_grpc(stub, *a))
            blocker = asyncio.create_task(send(blocker_body))
            await asyncio.sleep(0.1)
            sent = time.perf_counter()
            short = asyncio.create_task(send(short_body, timeout))
            await asyncio.sleep(0.05)
            patient = asyncio.create_task(send(patient_body))
            assert await blocker == LONG
            blocker_done = time.perf_counter() - sent
            return await short, await patient, blocker_done

    before = rows_computed(server, "copy")
    outcome, text, blocker_done = asyncio.run(scenario())
    rows = rows_computed(server, "copy") - before
    # before: the group ran under its first caller's deadline, and the patient caller failed with it
    assert outcome in ("504", "DEADLINE_EXCEEDED") and text == LONG
    # the short caller's rows were decoded only until its deadline
    short_steps = max(0.0, timeout - blocker_done) / STEP_S
    assert rows <= 2 * 42 + 3 * (1 + short_steps + 10), (rows, blocker_done)  # slack: a busy event loop
