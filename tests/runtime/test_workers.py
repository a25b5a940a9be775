"""Worker pools: one kind of blocking work cannot starve another (app/runtime/workers.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

import httpx
import numpy as np
from onnx import TensorProto, helper
from PIL import Image

from app.config import Settings
from app.runtime import workers
from testkit.models import COPY_WORDS, OPSET, save, write_copying_translation
from tests.support import live_server


async def test_a_full_decode_pool_does_not_delay_preprocessing():
    workers.configure(Settings(decode_threads=2, preprocess_threads=1, load_threads=1))
    release = threading.Event()
    try:
        busy = [asyncio.ensure_future(workers.decode(release.wait, 30)) for _ in range(8)]  # 2 running, 6 queued
        started = time.perf_counter()
        assert await asyncio.wait_for(workers.preprocess(lambda: "done"), 5) == "done"
        assert await asyncio.wait_for(workers.load(lambda: "loaded"), 5) == "loaded"
        assert time.perf_counter() - started < 1
        assert workers.size("decode") == 2 and workers.size("preprocess") == 1
    finally:
        release.set()
        workers.configure(Settings())  # the defaults again, for the tests after this one
    assert all(await asyncio.gather(*busy))


async def test_small_work_stays_on_the_loop_and_big_work_leaves_it():
    loop_thread = threading.get_ident()
    assert await workers.offload_if_large(10, threading.get_ident) == loop_thread
    assert await workers.offload_if_large(workers.OFFLOAD_BYTES + 1, threading.get_ident) != loop_thread


def write_image_model(repo):
    """Mean colour per channel as the logits of three classes: a real (tiny) image model."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "mean_colour", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])])  # fmt: skip
    folder = repo / "colours"
    save(helper.make_model(graph, opset_imports=OPSET), folder / "1" / "model.onnx")
    (folder / "1" / "labels.json").write_text(json.dumps(["red", "green", "blue"]))
    (folder / "config.yaml").write_text(json.dumps({
        "task": "image", "max_batch_size": 8,
        "parameters": {"preprocess": {"color_mode": "RGB", "size": [16, 16], "mean": [0, 0, 0], "std": [1, 1, 1]}}}))


def test_image_requests_are_not_starved_by_decode_loops(tmp_path):
    """32 translations with their own options (32 decode loops of 21 paced steps, each holding a
    thread while it waits on the batcher) and image requests at the same time: the images do not
    wait for the decode loops. (With one shared pool of 6 threads they waited for seconds.)"""
    write_copying_translation(tmp_path, "copy", step_delay_us=20_000, max_batch_size=32)
    write_image_model(tmp_path)
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), (200, 10, 10), np.uint8)).save(buf, format="PNG")
    image = {"model": "colours", "images": [base64.b64encode(buf.getvalue()).decode()]}
    text = " ".join(COPY_WORDS[:20])
    with live_server(tmp_path, decode_threads=4) as s:

        async def scenario() -> tuple[list[float], list[int]]:
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as client:
                translations = [asyncio.create_task(client.post("/predict/translation", json={
                    "model": "copy", "texts": [text], "max_length": 30 + i})) for i in range(32)]  # fmt: skip
                await asyncio.sleep(0.3)  # every decode thread is taken, the other loops queue for one
                latencies = []
                for _ in range(5):
                    started = time.perf_counter()
                    r = await client.post("/predict/image", json=image)
                    assert r.status_code == 200 and r.json()["predictions"][0]["labels"][0]["label"] == "red", r.text
                    latencies.append(time.perf_counter() - started)
                statuses = [(await t).status_code for t in translations]
                return latencies, statuses

        latencies, statuses = asyncio.run(scenario())
    assert statuses == [200] * 32
    assert max(latencies) < 1.0, latencies


def test_big_json_images_and_multipart_files_are_classified_alike(tmp_path):
    """A JSON body over OFFLOAD_BYTES (parsed and base64-decoded on the preprocess pool) and the same
    files uploaded as multipart (passed on as bytes) get the same answers."""
    write_image_model(tmp_path)
    rng = np.random.default_rng(0)
    files = []
    for colour in ((250, 5, 5), (5, 250, 5), (5, 5, 250)):
        noise = rng.integers(0, 4, (200, 200, 3), dtype=np.uint8)  # incompressible: a big PNG
        buf = io.BytesIO()
        Image.fromarray((np.array(colour, np.uint8) + noise).astype(np.uint8)).save(buf, format="PNG")
        files.append(buf.getvalue())
    body = {"model": "colours", "images": [base64.b64encode(f).decode() for f in files]}
    assert len(json.dumps(body)) > workers.OFFLOAD_BYTES // 4
    body["images"] *= 4  # 12 images, well over OFFLOAD_BYTES
    with live_server(tmp_path) as s:
        big = httpx.post(f"{s.url}/predict/image", json=body, timeout=30)
        upload = httpx.post(f"{s.url}/predict/image", data={"model": "colours"}, timeout=30,
                            files=[("images", (f"{i}.png", f, "image/png")) for i, f in enumerate(files)])
    assert big.status_code == 200 and upload.status_code == 200, (big.text, upload.text)
    top = [p["labels"][0]["label"] for p in big.json()["predictions"]]
    assert top == ["red", "green", "blue"] * 4
    assert upload.json()["predictions"] == big.json()["predictions"][:3]
