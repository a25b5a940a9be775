"""Task benchmark: /predict per task over REST and the typed gRPC service, and OIP gRPC raw tensors
(unary and streaming) vs REST binary tensors.

    python -m bench.tasks                      # (make bench) ~6 minutes on 2 cores (+1-2 to train smoke models)
    python -m bench.tasks --quick              # short cells, end-to-end smoke run
    python -m bench.tasks --repository models  # the default; tasks whose model is missing get smoke models

One real server (``python -m app serve``, REST and gRPC in one process) holds the model of every task.
For each task (image, sentiment, translation, recommendation), at 16 and 64 concurrent clients, over
REST (``POST /predict/{task}``, aiohttp) and over gRPC (``dendrite.v1.Predict``, grpc.aio over several
channels), a closed-loop load generator in its own process (bench.loadgen) sends realistic single-item
requests: a real photo (scikit-learn's sample images, JPEG), short tweet-like texts, short German
sentences, known user ids. Reported per cell: requests/s, p50/p99 latency at the client, mean batch
size (rows / session runs, from /metrics deltas), the pre/post-processing share (processing time /
in-server request time, both from /metrics deltas), server and client CPU per request, errors.
When the translation version has ``greedy.onnx``, translation is measured twice, side by side: decoded by the
Python loop and inside ONNX Runtime (a comparison table of req/s and pre/post share).

Then the Open Inference Protocol on image models: gRPC ``ModelInfer`` with ``raw_input_contents``,
the same requests on ``ModelStreamInfer`` streams (Triton's streaming extension: each client keeps one
stream open and sends its next request when the previous answer is in), and REST
``/v2/models/{m}/infer`` with binary tensors (all ask for binary/raw outputs), same model, same
concurrency, measured REST, gRPC, gRPC stream, gRPC stream, gRPC, REST (so drift on a busy machine cancels).

The machine's load average is recorded with the results; on a shared machine compare the ratios
inside one run, not absolute numbers across runs. Writes bench/results/tasks.{md,json}.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import yaml

from app.tasks import registry
from testkit.metrics import load_average, metric, parse_metrics
from testkit.server import Server

RESULTS = Path(__file__).parent / "results"
CONCURRENCY = (16, 64)
GRPC_CHANNELS = 4
# OIP cases (model:samples per request:clients): a small image model, where the per-call transport cost
# shows, one sample and 16 samples per request (larger messages amortise it); a 224x224 model, compute-bound.
OIP_CASES = "fashion-cnn:1:16,64;fashion-cnn:16:16;imagenet-efficientnet-lite0:1:16"

# ---------------------------------------------------------------------- models
def scan(repo: Path) -> dict[str, dict]:
    """Model name -> {task, dir, version, profile} for every model with a version in `repo`."""
    found = {}
    if not repo.is_dir():
        return found
    for folder in sorted(p for p in repo.iterdir() if (p / "config.yaml").is_file()):
        versions = sorted((int(v.name), v) for v in folder.iterdir() if v.is_dir() and v.name.isdigit()
                          and any(v.iterdir()))  # fmt: skip
        if not versions:
            continue
        task = (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("task")
        number, vdir = versions[-1]
        card = vdir / "card.json"
        profile = json.loads(card.read_text()).get("profile", "?") if card.is_file() else "no card"
        found[folder.name] = {"task": task, "dir": folder, "version": str(number), "profile": profile}
    return found


def default_models() -> dict[str, str]:
    from app.config import Settings

    return Settings().default_models


def train_smoke(models: list[str], smoke: Path) -> None:
    """Train the recipes of `models` with the smoke profile into `smoke` (in child processes: torch stays out of here)."""
    mapping = json.loads(subprocess.run(
        [sys.executable, "-c", "import json; from app.training.recipes import RECIPES; "
                               "print(json.dumps({c.name: k for k, c in RECIPES.items()}))"],
        capture_output=True, text=True, check=True).stdout)  # fmt: skip
    for name in models:
        if name not in mapping:
            sys.exit(f"no recipe trains model {name!r}")
        print(f"   training smoke model {name} (recipe {mapping[name]}) into {smoke}", flush=True)
        subprocess.run([sys.executable, "-m", "app.training", mapping[name], "--profile", "smoke",
                        "--repository", str(smoke)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def choose_models(repository: Path, smoke: Path, oip_models: list[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(task -> model info, OIP model name -> info): from `repository` where it has them, else smoke-trained."""
    given, defaults = scan(repository), default_models()
    chosen: dict[str, str] = {}
    missing = []
    for task in registry.tasks():
        name = defaults.get(task)
        if name not in given:
            name = next((n for n, m in given.items() if m["task"] == task), name)
        chosen[task] = name
        if name not in given:
            missing.append(name)
    missing += [m for m in oip_models if m not in given and m not in missing]
    have = scan(smoke)
    if todo := [m for m in missing if m not in have]:
        train_smoke(todo, smoke)
        have = scan(smoke)
    pick = {name: {**given[name], "source": str(repository)} if name in given else {**have[name], "source": "smoke"}
            for name in {*chosen.values(), *oip_models}}  # fmt: skip
    return {task: {"name": name, **pick[name]} for task, name in chosen.items()}, {m: pick[m] for m in oip_models}


def link_repo(root: Path, models: dict[str, dict]) -> Path:
    """A repository of the chosen versions (hard links where the file system allows, else copies: the
    server refuses model folders that resolve outside its repository, so no symlinks)."""

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    repo = root / "repo"
    for name, info in models.items():
        (repo / name).mkdir(parents=True)
        config = yaml.safe_load((info["dir"] / "config.yaml").read_text())
        for key, values in info.get("overrides", {}).items():  # a variant of the model: graphs, parameters
            config[key] = {**config.get(key, {}), **values}
        (repo / name / "config.yaml").write_text(yaml.safe_dump(config))
        shutil.copytree(info["dir"] / info["version"], repo / name / info["version"], copy_function=link)
    return repo


def translation_variants(info: dict) -> dict[str, dict]:
    """The translation model twice when its version has the in-graph greedy search (greedy.onnx): decoded
    by the Python loop and inside ONNX Runtime, measured side by side (docs/text-models.md)."""
    from app.tasks.translation.decoding import GREEDY_FILE, GREEDY_GRAPH

    if not (info["dir"] / info["version"] / GREEDY_FILE).is_file():
        return {}
    return {"python loop": {**info, "name": f"{info['name']}-loop", "overrides": {"parameters": {"decoding": "python"}}},
            "in-graph": {**info, "name": f"{info['name']}-in-graph",
                         "overrides": {"graphs": {GREEDY_GRAPH: GREEDY_FILE}, "parameters": {"decoding": "graph"}}}}


# ---------------------------------------------------------------------- requests
def photos() -> list[bytes]:
    """The image task's sample photos as files."""
    return [base64.b64decode(body["images"][0]) for body in registry.get("image").client.samples(Path())]


def task_payloads(task: str, info: dict) -> tuple[list[dict], str, list[bytes]]:
    """(REST JSON bodies, gRPC method, serialized gRPC requests): the task's own samples, one per request."""
    from google.protobuf import json_format

    from app.transports.grpc.messages import PREDICT_SERVICE, message_class

    declared = registry.get(task)
    rest = [{"model": info["name"], **body} for body in declared.client.samples(info["dir"] / info["version"])]
    # protobuf's JSON mapping reads base64 into bytes fields: the same files as the REST bodies
    message = message_class(declared.grpc_request)
    grpc_ = [json_format.ParseDict(body, message()).SerializeToString() for body in rest]
    return rest, f"/{PREDICT_SERVICE}/{declared.rpc}", grpc_


def check_task(server: Server, task: str, rest: dict, method: str, grpc_body: bytes) -> str:
    """One parsed answer over each transport before the load (a broken setup fails here, not as a table of errors)."""
    import grpc

    from app.transports.grpc.messages import message_class

    r = httpx.post(f"{server.url}/predict/{task}", json=rest, timeout=120)
    if r.status_code != 200:
        raise RuntimeError(f"REST /predict/{task}: {r.status_code} {r.text[:300]}")
    reply_type = message_class(registry.get(task).grpc_response)
    with grpc.insecure_channel(server.grpc_target) as ch:
        raw = ch.unary_unary(method)(grpc_body, timeout=120)
    reply_type.FromString(raw)
    answer = {k: v for k, v in r.json().items() if k not in ("model", "version")}
    return json.dumps(answer, ensure_ascii=False)[:120]


def oip_payloads(server: Server, model: str, samples: int) -> tuple[tuple[str, dict, bytes], bytes]:
    """(REST binary-tensor request, serialized gRPC ModelInferRequest with raw_input_contents) for `samples` rows;
    the gRPC request serves ModelInfer and ModelStreamInfer alike."""
    from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb

    meta = httpx.get(f"{server.url}/v2/models/{model}").json()
    spec, out = meta["inputs"][0], meta["outputs"][0]["name"]
    shape = [samples if d < 0 else d for d in spec["shape"]]
    dtype = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32}[spec["datatype"]]
    raw = np.random.default_rng(0).standard_normal(shape).astype(dtype).tobytes()
    header = orjson.dumps({"inputs": [{"name": spec["name"], "shape": shape, "datatype": spec["datatype"],
                                       "parameters": {"binary_data_size": len(raw)}}],
                           "outputs": [{"name": out, "parameters": {"binary_data": True}}]})  # fmt: skip
    rest = (f"/v2/models/{model}/infer",
            {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
            header + raw)  # fmt: skip
    request = pb.ModelInferRequest(
        model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(name=spec["name"], datatype=spec["datatype"], shape=shape)],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=out)], raw_input_contents=[raw])  # fmt: skip
    return rest, request.SerializeToString()


OIP_METHODS = {"grpc": "/inference.GRPCInferenceService/ModelInfer",
               "grpc-stream": "/inference.GRPCInferenceService/ModelStreamInfer"}  # fmt: skip


def check_oip(server: Server, rest: tuple[str, dict, bytes], grpc_body: bytes) -> None:
    """One parsed answer per OIP kind before the load (the load generator does not parse answers)."""
    import grpc

    from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb

    path, headers, body = rest
    r = httpx.post(server.url + path, content=body, headers=headers, timeout=120)
    if r.status_code != 200:
        raise RuntimeError(f"REST {path}: {r.status_code} {r.text[:300]}")
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(server.grpc_target, options=options) as ch:
        pb.ModelInferResponse.FromString(ch.unary_unary(OIP_METHODS["grpc"])(grpc_body, timeout=120))
        (answer,) = ch.stream_stream(OIP_METHODS["grpc-stream"])(iter([grpc_body]), timeout=120)
    answer = pb.ModelStreamInferResponse.FromString(answer)
    if answer.error_message or not answer.infer_response.outputs:
        raise RuntimeError(f"gRPC ModelStreamInfer: {answer.error_message or 'no outputs'}")


# ---------------------------------------------------------------------- cells
def drive(spec: dict, tmp: Path) -> dict:
    path = tmp / "spec.pickle"
    path.write_bytes(pickle.dumps(spec))
    out = tmp / "result.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "bench.loadgen", str(path), str(out)], capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"load generator failed:\n{proc.stdout[-1000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def cell(server: Server, tmp: Path, *, kind: str, model: str, version: str, concurrency: int, payloads: list,
         method: str | None, args) -> dict:  # fmt: skip
    spec = {"kind": kind, "concurrency": concurrency, "warmup": args.warmup, "seconds": args.seconds,
            "metrics_url": f"{server.url}/metrics", "payloads": payloads, "url": server.url,
            "target": server.grpc_target, "method": method, "channels": args.channels}  # fmt: skip
    res = drive(spec, tmp)
    m0, m1 = parse_metrics(res.pop("metrics_before")), parse_metrics(res.pop("metrics_after"))

    def delta(name: str, **labels) -> float:
        return metric(m1, name, **labels) - metric(m0, name, **labels)

    mv = {"model": model, "version": version}
    rows = delta("dendrite_inference_count_total", **mv)
    runs = delta("dendrite_execution_count_total", **mv)
    protocol = "rest" if kind == "rest" else "grpc"  # the data plane's label: a stream's requests count as grpc
    req_sum = delta("dendrite_request_duration_seconds_sum", **mv, protocol=protocol)
    req_n = delta("dendrite_request_duration_seconds_count", **mv, protocol=protocol)
    proc_sum = delta("dendrite_processing_duration_seconds_sum", **mv)
    proc_n = delta("dendrite_processing_duration_seconds_count", **mv)
    cpu = delta("process_cpu_seconds_total")
    ok = max(1, res["ok"])
    return {**res, "protocol": kind, "concurrency": concurrency, "model": model, "version": version,
            "mean_batch": rows / runs if runs else None, "server_ms": 1e3 * req_sum / req_n if req_n else None,
            "processing_share": proc_sum / req_sum if req_sum and proc_n else None,
            "processing_ms": 1e3 * proc_sum / proc_n if proc_n else None,
            "server_cpu_ms": 1e3 * cpu / ok, "client_cpu_ms": 1e3 * res["client_cpu_s"] / ok,
            "error_count": sum(res["errors"].values()), "loadavg": os.getloadavg()[0]}  # fmt: skip


def show(label: str, r: dict) -> None:
    def ms(v):
        return f"{v * 1e3:7.1f}" if v is not None else "      -"

    share = f"{r['processing_share']:.0%}" if r["processing_share"] is not None else "-"
    batch = f"{r['mean_batch']:.1f}" if r["mean_batch"] is not None else "-"
    print(f"   {label:28s} {r['protocol']:11s} c={r['concurrency']:<3d} {r['rps']:7.1f} req/s  p50 {ms(r['p50'])} ms  "
          f"p99 {ms(r['p99'])} ms  batch {batch:>5s}  pre/post {share:>4s}  server CPU {r['server_cpu_ms']:.2f} ms/req  "
          f"errors {r['error_count']}  load {r['loadavg']:.1f}", flush=True)  # fmt: skip


# ---------------------------------------------------------------------- report
def _ms(v) -> str:
    return f"{v * 1e3:.1f}" if v is not None else "-"


def _opt(v, fmt) -> str:
    return format(v, fmt) if v is not None else "-"


def table(task_rows: list[dict], oip_rows: list[dict], meta: dict) -> str:
    lines = [
        "# Task benchmark", "",
        f"{meta['when']}, {meta['cpus']} CPU cores shared with other work: load average {meta['load_start']} at the "
        f"start, {meta['load_end']} at the end (1/5/15 min). Closed-loop clients in a separate process "
        f"(aiohttp for REST, grpc.aio over {meta['channels']} channels for gRPC), one item per request, "
        f"{meta['warmup']:g} s warm-up + {meta['seconds']:g} s measured per cell. Compare ratios within this run: "
        f"absolute numbers move with the machine's other load.", "",
        "Models: " + "; ".join(f"{t}: `{m['name']}` v{m['version']} ({m['profile']} profile, from {m['source']})"
                               for t, m in meta["models"].items()) + ".", "",
        "mean batch = rows / ONNX Runtime session runs; pre/post = task pre- and post-processing time / in-server "
        "request time (both from /metrics deltas); server CPU = server process CPU seconds per request.", "",
        "| task | protocol | clients | req/s | p50 ms | p99 ms | mean batch | pre/post share | pre/post ms/req | "
        "server CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in task_rows:
        share = f"{r['processing_share']:.0%}" if r["processing_share"] is not None else "-"
        lines.append(f"| {r['task']} | {r['protocol']} | {r['concurrency']} | {r['rps']:.1f} | {_ms(r['p50'])} | "
                     f"{_ms(r['p99'])} | {_opt(r['mean_batch'], '.1f')} | {share} | {_opt(r['processing_ms'], '.2f')} | "
                     f"{r['server_cpu_ms']:.2f} | {r['error_count']} |")  # fmt: skip
    loop = {(r["protocol"], r["concurrency"]): r for r in task_rows if r["task"] == "translation (python loop)"}
    graph = {(r["protocol"], r["concurrency"]): r for r in task_rows if r["task"] == "translation (in-graph)"}
    if loop and graph:
        lines += [
            "", "## Translation: greedy decoding inside ONNX Runtime vs the Python loop", "",
            "The same model version twice: `parameters.decoding: python` (encoder, then one decoder_step run per "
            "output position, requests coalesced into decode groups) and the `greedy` graph (one session run per "
            "batch of requests: greedy.onnx, encoder + decoder step in an ONNX Loop), cells alternated.", "",
            "| protocol | clients | req/s loop | req/s in-graph | in-graph / loop | pre/post share loop | "
            "pre/post share in-graph | p50 ms loop / in-graph | mean batch loop / in-graph |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        for key in sorted(loop, key=lambda k: (k[1], k[0])):
            a, b = loop[key], graph.get(key)
            if b is None:
                continue
            share = lambda r: f"{r['processing_share']:.0%}" if r["processing_share"] is not None else "-"  # noqa: E731
            lines.append(f"| {key[0]} | {key[1]} | {a['rps']:.1f} | {b['rps']:.1f} | **{b['rps'] / a['rps']:.2f}x** | "
                         f"{share(a)} | {share(b)} | {_ms(a['p50'])} / {_ms(b['p50'])} | "
                         f"{_opt(a['mean_batch'], '.1f')} / {_opt(b['mean_batch'], '.1f')} |")  # fmt: skip
    if oip_rows:
        lines += [
            "", "## Open Inference Protocol: gRPC raw tensors (unary and stream) vs REST binary tensors", "",
            "Same model, same concurrency and request, measured REST, gRPC, gRPC stream, gRPC stream, gRPC, REST; "
            "req/s is the mean of the two runs of each (each run listed). All ask for binary/raw outputs. gRPC is one "
            "unary ModelInfer call per request; gRPC stream is ModelStreamInfer (Triton's streaming extension), one "
            "stream per client kept open, the next request sent when the previous answer is in (closed loop, like "
            "the others). Bar: gRPC raw >= REST binary. 'by server CPU' is REST's server CPU per request over "
            "gRPC's (unary or stream): the throughput ratio to expect where the server is CPU-bound on cores of its "
            "own (on a shared machine the measured req/s also move with the neighbours and with how many runnable "
            "threads each transport gives the server).", "",
            "| model | samples/request (message) | clients | REST binary req/s | gRPC raw req/s | gRPC stream req/s | "
            "gRPC / REST | stream / REST | gRPC / REST by server CPU | stream / REST by server CPU | "
            "p50/p99 ms REST; gRPC; stream | server CPU ms/req REST / gRPC / stream | "
            "client CPU ms/req REST / gRPC / stream | mean batch REST / gRPC / stream | errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        def each(runs):
            return " / ".join(format(r["rps"], ".0f") for r in runs)

        def mean(kinds, key, fmt):  # "REST / gRPC / stream", each the mean over that kind's runs
            return " / ".join(format(np.mean([r[key] or 0 for r in runs]), fmt) for runs in kinds)

        for o in oip_rows:
            kinds = [o["rest"], o["grpc"], o["stream"]]
            lines.append(
                f"| {o['model']} | {o['samples']} ({o['input']}) | {o['concurrency']} | "
                f"{o['rest_rps']:.1f} ({each(o['rest'])}) | {o['grpc_rps']:.1f} ({each(o['grpc'])}) | "
                f"{o['stream_rps']:.1f} ({each(o['stream'])}) | **{o['ratio']:.2f}** | **{o['stream_ratio']:.2f}** | "
                f"{o['cpu_ratio']:.2f} | {o['stream_cpu_ratio']:.2f} | "
                + "; ".join(f"{_ms(runs[0]['p50'])} / {_ms(runs[0]['p99'])}" for runs in kinds) + " | "
                f"{mean(kinds, 'server_cpu_ms', '.2f')} | {mean(kinds, 'client_cpu_ms', '.2f')} | "
                f"{mean(kinds, 'mean_batch', '.1f')} | "
                f"{sum(r['error_count'] for runs in kinds for r in runs)} |")  # fmt: skip
    lines += ["", f"Reproduce: `{meta['command']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("models"),
                        help="model repository; a task whose model is missing gets a smoke-trained one")
    parser.add_argument("--smoke-dir", type=Path,
                        help="where smoke models are trained (and reused from on later runs); default: a temp dir")
    parser.add_argument("--quick", action="store_true", help="short cells (end-to-end smoke run)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per cell")
    parser.add_argument("--channels", type=int, default=GRPC_CHANNELS, help="gRPC channels (connections) per load generator")
    parser.add_argument("--tasks", default=",".join(registry.tasks()), help="comma-separated subset of the tasks")
    parser.add_argument("--oip", default=OIP_CASES,
                        help="OIP gRPC-raw (unary, stream) vs REST-binary cases, "
                             "'model:samples per request:clients[,clients]' "
                             "separated by ';' ('' to skip)")
    parser.add_argument("--oip-seconds", type=float, default=5.0, help="measured seconds per OIP run (6 runs per row)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.oip_seconds = 2.0, 0.5, 1.5
    tasks = [t for t in args.tasks.split(",") if t]
    oip_cases = [(m, int(n), [int(c) for c in cs.split(",")])
                 for m, n, cs in (case.split(":") for case in args.oip.split(";") if case)]  # fmt: skip
    oip_models = list(dict.fromkeys(m for m, _, _ in oip_cases))
    RESULTS.mkdir(exist_ok=True)
    load_start = load_average()
    print(f"== task bench, load average {load_start}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        smoke = args.smoke_dir or tmp / "smoke"
        smoke.mkdir(parents=True, exist_ok=True)
        task_models, oip_info = choose_models(args.repository, smoke, oip_models)
        task_models = {t: task_models[t] for t in tasks}
        variants = translation_variants(task_models["translation"]) if "translation" in task_models else {}
        served = {m["name"]: m for m in task_models.values()} | oip_info | {v["name"]: v for v in variants.values()}
        for t, m in task_models.items():
            print(f"   {t}: {m['name']} v{m['version']} ({m['profile']} profile, from {m['source']})", flush=True)
        server = Server(link_repo(tmp, served), grpc=True, timeout=600)
        task_rows, oip_rows = [], []
        try:
            for task, info in task_models.items():
                # the task's model, or its decoding variants side by side, alternating cell by cell (drift cancels)
                runs = {f"{task} ({label})": v for label, v in variants.items()} if task == "translation" and variants \
                    else {task: info}  # fmt: skip
                loads = {}
                for label, model in runs.items():
                    rest, method, grpc_bodies = task_payloads(task, model)
                    print(f"\n== {label}: {model['name']} ({check_task(server, task, rest[0], method, grpc_bodies[0])})",
                          flush=True)  # fmt: skip
                    rest_payloads = [(f"/predict/{task}", {"Content-Type": "application/json"}, orjson.dumps(b)) for b in rest]
                    loads[label] = (model, method, {"rest": rest_payloads, "grpc": grpc_bodies})
                for c in CONCURRENCY:
                    for kind in ("rest", "grpc"):
                        for label, (model, method, payloads) in loads.items():
                            r = cell(server, tmp, kind=kind, model=model["name"], version=model["version"], concurrency=c,
                                     payloads=payloads[kind], method=method, args=args)  # fmt: skip
                            r["task"] = label
                            show(label, r)
                            task_rows.append(r)
            oip_args = argparse.Namespace(**{**vars(args), "seconds": args.oip_seconds})
            for model, samples, concurrency in oip_cases:
                rest_req, grpc_req = oip_payloads(server, model, samples)
                check_oip(server, rest_req, grpc_req)
                n_bytes = len(grpc_req)
                print(f"\n== OIP {model}: {samples} sample(s) per request, {n_bytes / 1024:.0f} KiB", flush=True)
                for c in concurrency:
                    runs = {"rest": [], "grpc": [], "grpc-stream": []}
                    for kind in ("rest", "grpc", "grpc-stream", "grpc-stream", "grpc", "rest"):
                        payloads = [rest_req] if kind == "rest" else [grpc_req]
                        r = cell(server, tmp, kind=kind, model=model, version=oip_info[model]["version"], concurrency=c,
                                 payloads=payloads, method=OIP_METHODS.get(kind), args=oip_args)  # fmt: skip
                        show(f"OIP {model}", r)
                        runs[kind].append(r)
                    rps = {k: float(np.mean([r["rps"] for r in v])) for k, v in runs.items()}
                    cpu = {k: float(np.mean([r["server_cpu_ms"] for r in v])) for k, v in runs.items()}
                    rest_rps = rps["rest"]
                    oip_rows.append({"model": model, "samples": samples, "input": f"{n_bytes / 1024:.0f} KiB", "concurrency": c,
                                     "rest": runs["rest"], "grpc": runs["grpc"], "stream": runs["grpc-stream"],
                                     "rest_rps": rest_rps, "grpc_rps": rps["grpc"], "stream_rps": rps["grpc-stream"],
                                     "cpu_ratio": cpu["rest"] / cpu["grpc"], "stream_cpu_ratio": cpu["rest"] / cpu["grpc-stream"],
                                     "ratio": rps["grpc"] / rest_rps if rest_rps else float("nan"),
                                     "stream_ratio": rps["grpc-stream"] / rest_rps if rest_rps else float("nan")})  # fmt: skip
                    o = oip_rows[-1]
                    print(f"   -> / REST binary at c={c}: gRPC raw {o['ratio']:.2f}, gRPC stream "
                          f"{o['stream_ratio']:.2f} by req/s; {o['cpu_ratio']:.2f}, {o['stream_cpu_ratio']:.2f} "
                          "by server CPU per request", flush=True)  # fmt: skip
        finally:
            server.stop()
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "load_start": load_start,
            "load_end": load_average(), "channels": args.channels, "warmup": args.warmup, "seconds": args.seconds,
            "models": {t: {k: str(v) for k, v in m.items()} for t, m in task_models.items()},
            "command": " ".join(["python -m bench.tasks", *sys.argv[1:]])}  # fmt: skip
    md = table(task_rows, oip_rows, meta)
    (RESULTS / "tasks.md").write_text(md)
    (RESULTS / "tasks.json").write_text(json.dumps({"meta": meta, "tasks": task_rows, "oip": oip_rows}, indent=2,
                                                   default=str))  # fmt: skip
    print("\n" + md)
    print(f"wrote {RESULTS}/tasks.md, tasks.json")


if __name__ == "__main__":
    main()
