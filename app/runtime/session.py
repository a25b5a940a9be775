"""ONNX Runtime sessions: one pool of ``instance_group.count`` sessions per graph.

Sessions run off the event loop, each on its own worker thread (ORT releases the GIL during
``run``), so instances of one model compute in parallel and the loop stays responsive.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from app.protocol.datatypes import ORT_TO_OIP
from app.errors import InvalidInput
from app.protocol.model_config import InstanceGroup, TensorSpec, intra_op_threads
from app.runtime.providers import check_running, request_for

log = logging.getLogger(__name__)


# ONNX Runtime's own wording for an index out of range (Gather, embedding lookups): parsed only to
# say which value was refused; any other INVALID_ARGUMENT gets the general sentence.
_INDEX_OUT_OF_RANGE = re.compile(r"idx=(-?\d+) must be within the inclusive range \[-?\d+,\s*(-?\d+)\]")


def refused_input(label: str, exc: Exception, inputs: list[str]) -> InvalidInput:
    """ONNX Runtime's INVALID_ARGUMENT at run time means the values of an input (validated for name,
    datatype and shape already) are ones the graph cannot take: the client's mistake, said in our
    words rather than ORT's."""
    found = _INDEX_OUT_OF_RANGE.search(str(exc))
    if not found:  # our words for the client; ONNX Runtime's own (a shape, a dtype, warm-up) for the log
        log.warning("%s refused a run: %s", label, exc)
    detail = (f": index {found.group(1)} is outside 0..{found.group(2)}" if found
              else ": a value is outside what the model accepts")  # fmt: skip
    which = f"input {inputs[0]!r}" if len(inputs) == 1 else "the input"
    return InvalidInput(f"model {label} refused {which}{detail}")


@dataclass(frozen=True)
class RuntimeOptions:
    intra_op_threads: int = 1
    allow_spinning: bool = False
    cpu_mem_arena: bool = True
    max_intra_op_threads: int = 0  # 0 = no cap; with several workers, cores / workers


def graph_specs(session: ort.InferenceSession, batched: bool) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs/outputs as read from the graph; symbolic or unknown dims become -1.
    With batching, the leading (batch) dimension is dropped, as in config.yaml."""

    def spec(arg: ort.NodeArg) -> TensorSpec:
        dims = [d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or [])]
        if batched:
            dims = dims[1:]
        return TensorSpec(name=arg.name, datatype=ORT_TO_OIP.get(arg.type, "FP32"), shape=dims)

    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


class SessionPool:
    """``count`` identical sessions of one ONNX graph, each with a dedicated worker thread."""

    def __init__(self, path: Path, group: InstanceGroup, options: RuntimeOptions, label: str = ""):
        self.path = path
        self.label = label or path.name
        self.group = group
        self.sessions: list[ort.InferenceSession] = []
        self.providers: list[str] = []
        request = request_for(group, ort.get_available_providers())
        threads = intra_op_threads(
            group.intra_op_threads if group.intra_op_threads is not None else options.intra_op_threads,
            options.max_intra_op_threads)  # fmt: skip
        for _ in range(group.count):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.enable_cpu_mem_arena = options.cpu_mem_arena
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "1" if options.allow_spinning else "0")
            so.log_severity_level = 3
            session = ort.InferenceSession(str(path), sess_options=so, providers=request.as_ort)
            self.providers.append(check_running(group, session.get_providers()))
            self.sessions.append(session)
        log.info("%s: %d instance(s) on %s, %d intra-op thread(s)", self.label, group.count, self.providers, threads)
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{self.label}-{i}") for i in range(group.count)
        ]
        # ONNX Runtime would print its own ERROR line for every run that fails, a refused input included:
        # failures reach the client (InvalidInput) or our log (the batcher) with their reason instead.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4
        self.input_names = [i.name for i in self.sessions[0].get_inputs()]
        self.output_names = [o.name for o in self.sessions[0].get_outputs()]

    @property
    def count(self) -> int:
        return len(self.sessions)

    def run_sync(self, instance: int, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        try:
            return self.sessions[instance].run(outputs or self.output_names, feeds, self._run_options)
        except InvalidArgument as exc:
            raise refused_input(self.label, exc, list(feeds)) from exc

    async def run(
        self, instance: int, feeds: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> tuple[list[np.ndarray], float]:
        """Run on ``instance``'s worker thread; returns the outputs and the compute seconds."""

        def timed() -> tuple[list[np.ndarray], float]:
            start = time.perf_counter()
            result = self.run_sync(instance, feeds, outputs)
            return result, time.perf_counter() - start

        return await asyncio.get_running_loop().run_in_executor(self._executors[instance], timed)

    def close(self) -> None:
        for ex in self._executors:
            ex.shutdown(wait=True)
        self.sessions.clear()
