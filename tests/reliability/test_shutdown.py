"""Graceful shutdown: SIGTERM to a real server process under REST and gRPC load.

The server turns not-ready at once (REST 503, gRPC health NOT_SERVING) while still serving for
DENDRITE_SHUTDOWN_DELAY_SECONDS, then stops accepting; every request it accepted is answered
(correctly) within DENDRITE_SHUTDOWN_GRACE_SECONDS, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from testkit.oip import binary_body, decode_binary_output
from testkit.server import ServerProcess, serve_to_the_end
from testkit.models import affine_model, chain_weights, matmul_chain_model, write_model

WIDTH, DEPTH = 1024, 16
DELAY, GRACE = 1.5, 30.0


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(tmp_path):
    model = matmul_chain_model(width=WIDTH, depth=DEPTH)
    write_model(tmp_path, "heavy", model, {"max_batch_size": 32, "dynamic_batching": {"max_queue_size": 256}})
    weights = chain_weights(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, WIDTH)).astype(np.float32)
    expected = x.astype(np.float64)
    for w in weights:
        expected = expected @ w
    body, headers = binary_body(x)
    server = ServerProcess(tmp_path, grpc=True, env={"DENDRITE_SHUTDOWN_DELAY_SECONDS": str(DELAY),
                                                     "DENDRITE_SHUTDOWN_GRACE_SECONDS": str(GRACE)})  # fmt: skip
    url = f"{server.url}/v2/models/heavy/infer"
    sigterm_at: list[float] = []
    rest: list[tuple[float, str]] = []  # (sent at, outcome)
    grpc_results: list[tuple[float, str]] = []
    ready_after_sigterm: list[int | str] = []
    stop_clients = threading.Event()

    def correct(y: np.ndarray) -> bool:
        return y.shape == expected.shape and np.allclose(y, expected, rtol=1e-3, atol=1e-3)

    async def rest_client(session: aiohttp.ClientSession) -> None:
        while not stop_clients.is_set():
            sent = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    data = await r.read()
                    if r.status == 200:
                        _, y = decode_binary_output(data, int(r.headers["Inference-Header-Content-Length"]), "y")
                        outcome = "ok" if correct(y) else "WRONG"
                    else:
                        outcome = f"http {r.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                outcome = f"conn {type(exc).__name__}"
                await asyncio.sleep(0.05)
            rest.append((sent, outcome))

    async def ready_probe() -> None:
        async with aiohttp.ClientSession() as s:
            while not stop_clients.is_set():
                if sigterm_at:
                    try:
                        async with s.get(f"{server.url}/v2/health/ready") as r:
                            ready_after_sigterm.append(r.status)
                    except aiohttp.ClientError as exc:
                        ready_after_sigterm.append(type(exc).__name__)
                await asyncio.sleep(0.1)

    def grpc_client() -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name="heavy", inputs=[pb.ModelInferRequest.InferInputTensor(
                name="x", datatype="FP32", shape=list(x.shape))], raw_input_contents=[x.tobytes()])  # fmt: skip
            while not stop_clients.is_set():
                sent = time.monotonic()
                try:
                    resp = stub.ModelInfer(request, timeout=60)
                    y = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(list(resp.outputs[0].shape))
                    grpc_results.append((sent, "ok" if correct(y) else "WRONG"))
                except grpc.RpcError as exc:
                    grpc_results.append((sent, f"grpc {exc.code().name}"))
                    time.sleep(0.05)

    def health_status() -> str:
        with grpc.insecure_channel(server.grpc_target) as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    async def scenario() -> tuple[int, float, str]:
        threads = [threading.Thread(target=grpc_client) for _ in range(2)]
        for t in threads:
            t.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as session:
            clients = [asyncio.create_task(rest_client(session)) for _ in range(12)]
            probe = asyncio.create_task(ready_probe())
            await asyncio.sleep(3)  # queues fill: work is queued and computing at the signal
            sigterm_at.append(time.monotonic())
            server.terminate()
            await asyncio.sleep(0.5)
            grpc_health = await asyncio.to_thread(health_status)  # during the delay: still up, not serving
            loop = asyncio.get_running_loop()
            code = await loop.run_in_executor(None, server.proc.wait, DELAY + GRACE + 30)
            exited_after = time.monotonic() - sigterm_at[0]
            stop_clients.set()
            await asyncio.gather(*clients, probe)
        for t in threads:
            t.join(60)
        return code, exited_after, grpc_health

    try:
        code, exited_after, grpc_health = asyncio.run(scenario())
    finally:
        server.stop()
    t0 = sigterm_at[0]
    before = [o for s, o in rest + grpc_results if s < t0]
    after = [o for s, o in rest + grpc_results if s >= t0]
    summary = {o: (sum(1 for x in before if x == o), sum(1 for x in after if x == o)) for o in set(before + after)}
    print(f"\nshutdown: exit {code} {exited_after:.2f}s after SIGTERM; outcomes (sent before, after SIGTERM): "
          f"{summary}; REST readiness after SIGTERM: {ready_after_sigterm[:12]}...; gRPC health: {grpc_health}")
    assert code == 0
    assert exited_after < DELAY + GRACE
    assert before and all(o == "ok" for o in before), summary  # every request sent before SIGTERM answered
    assert "WRONG" not in after and not any(o.startswith("http 5") and o not in ("http 503",) for o in after), summary
    assert not any(o in ("grpc INTERNAL", "grpc UNKNOWN") for o in after), summary
    assert any(o == "ok" for o in after), summary  # accepted during the delay and answered
    assert 503 in ready_after_sigterm and 200 not in ready_after_sigterm, ready_after_sigterm
    assert grpc_health == "NOT_SERVING"


def test_a_server_that_cannot_start_exits_with_status_1(tmp_path):
    """Single process, as DENDRITE_WORKERS=2 already does (tests/workers): a supervisor such as
    systemd or Kubernetes must see a failed start, not a clean exit."""
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 4})
    # an invalid startup model name fails start-up (a missing model is only that model's problem)
    proc = serve_to_the_end(tmp_path, "--http-port", "0", "--grpc-port", "0", "--control-mode", "explicit",
                            env={"DENDRITE_WORKERS": "1", "DENDRITE_STARTUP_MODELS": '["bad name"]'})  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "bad name" in proc.stderr
