"""Closed-loop load generator, run in its own process by bench.tasks (so its CPU is not the server's).

    python -m bench.loadgen SPEC.pickle RESULT.json

SPEC (a pickled dict): ``kind`` "rest" (aiohttp), "grpc" (grpc.aio, one unary call per request) or
"grpc-stream" (grpc.aio, one bidirectional stream per client, e.g. OIP ModelStreamInfer), ``concurrency`` clients,
``warmup`` and ``seconds``, ``metrics_url`` (scraped at the start and the end of the measured window),
and the prepared payloads, sent round robin:

- rest: ``url`` base, ``payloads`` a list of (path, headers, body bytes);
- grpc: ``target``, ``method`` (full name, e.g. "/dendrite.v1.Predict/Image"), ``payloads`` a list of
  serialized request messages, ``channels`` (the clients are spread over this many channels, each its
  own TCP connection);
- grpc-stream: as grpc, ``method`` a stream-stream method answering each request with a
  ModelStreamInferResponse ("/inference.GRPCInferenceService/ModelStreamInfer"). Each client keeps one
  stream open and writes its next request when the previous answer is in (one in flight per stream).

Requests go out as prepared bytes and answers are read as bytes, unparsed, so the client spends as
little CPU as it can (bench.tasks checks one parsed answer per cell). Every client sends its next
request as soon as the previous answer is in. Latency and throughput count the requests that finish
inside the measured window; errors are counted by HTTP status / gRPC code / exception type.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import resource
import sys
import time
from collections import Counter


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Window:
    def __init__(self, warmup: float, seconds: float):
        self.start = time.perf_counter() + warmup
        self.end = self.start + seconds
        self.stop = False
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()

    def record(self, t0: float, t1: float, error: str | None) -> None:
        if self.start <= t1 <= self.end:
            if error is None:
                self.latencies.append(t1 - t0)
            else:
                self.errors[error] += 1


async def rest_clients(spec: dict, window: Window, session) -> list[asyncio.Task]:
    import aiohttp

    payloads = spec["payloads"]
    base = spec["url"]

    async def client(i: int) -> None:
        n = i
        while not window.stop:
            path, headers, body = payloads[n % len(payloads)]
            n += 1
            t0 = time.perf_counter()
            error = None
            try:
                async with session.post(base + path, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        error = f"http {resp.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error = type(exc).__name__
            window.record(t0, time.perf_counter(), error)

    return [asyncio.create_task(client(i)) for i in range(spec["concurrency"])]


async def grpc_clients(spec: dict, window: Window, channels) -> list[asyncio.Task]:
    import grpc

    payloads = spec["payloads"]
    calls = [ch.unary_unary(spec["method"]) for ch in channels]  # no (de)serializers: bytes in, bytes out

    async def client(i: int) -> None:
        call = calls[i % len(calls)]
        n = i
        while not window.stop:
            body = payloads[n % len(payloads)]
            n += 1
            t0 = time.perf_counter()
            error = None
            try:
                await call(body, timeout=60)
            except grpc.aio.AioRpcError as exc:
                error = f"grpc {exc.code().name}"
            window.record(t0, time.perf_counter(), error)

    return [asyncio.create_task(client(i)) for i in range(spec["concurrency"])]


# A ModelStreamInferResponse that starts with field 1 (error_message, tag 0x0a) is an error: protobuf writes
# fields in number order and leaves an empty string out, so a success starts with infer_response (0x12).
STREAM_ERROR_TAG = b"\x0a"


async def grpc_stream_clients(spec: dict, window: Window, channels) -> list[asyncio.Task]:
    import grpc

    payloads = spec["payloads"]
    calls = [ch.stream_stream(spec["method"]) for ch in channels]  # no (de)serializers: bytes in, bytes out
    lifetime = spec["warmup"] + spec["seconds"] + 60  # one deadline for the whole stream

    async def client(i: int) -> None:
        n = i
        while not window.stop:  # a stream the server ended is reopened
            stream = calls[i % len(calls)](timeout=lifetime)
            t0 = time.perf_counter()
            try:
                while not window.stop:
                    body = payloads[n % len(payloads)]
                    n += 1
                    t0 = time.perf_counter()
                    await stream.write(body)
                    answer = await stream.read()
                    if answer is grpc.aio.EOF:
                        window.record(t0, time.perf_counter(), "stream ended")
                        break
                    window.record(t0, time.perf_counter(),
                                  "error_message" if answer[:1] == STREAM_ERROR_TAG else None)  # fmt: skip
                if window.stop:
                    await stream.done_writing()
                    await stream.code()  # the server ends the call once the last answer is out
            except grpc.aio.AioRpcError as exc:
                window.record(t0, time.perf_counter(), f"grpc {exc.code().name}")

    return [asyncio.create_task(client(i)) for i in range(spec["concurrency"])]


async def run(spec: dict) -> dict:
    import aiohttp
    import grpc

    window = Window(spec["warmup"], spec["seconds"])
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    channels = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if spec["kind"] == "rest":
            tasks = await rest_clients(spec, window, session)
        else:
            options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20),
                       ("grpc.use_local_subchannel_pool", 1)]  # its own connection per channel
            channels = [grpc.aio.insecure_channel(spec["target"], options=options)
                        for _ in range(max(1, min(spec["channels"], spec["concurrency"])))]  # fmt: skip
            clients = grpc_stream_clients if spec["kind"] == "grpc-stream" else grpc_clients
            tasks = await clients(spec, window, channels)

        async def scrape() -> str:
            async with session.get(spec["metrics_url"]) as resp:
                return await resp.text()

        await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
        before, cpu0 = await scrape(), _cpu()
        await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
        after, cpu1 = await scrape(), _cpu()
        window.stop = True
        done, pending = await asyncio.wait(tasks, timeout=30)
        for t in pending:
            t.cancel()
        for ch in channels:
            await ch.close()
    lat = sorted(window.latencies)

    def pct(q: float) -> float | None:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    return {"ok": len(lat), "rps": len(lat) / spec["seconds"], "p50": pct(0.50), "p99": pct(0.99),
            "errors": dict(window.errors), "client_cpu_s": cpu1 - cpu0, "metrics_before": before,
            "metrics_after": after}  # fmt: skip


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        spec = pickle.load(f)
    try:
        import uvloop  # as the server runs
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
