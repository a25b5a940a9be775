"""Translation: German texts in, English texts out (greedy by default, beam search on request).

Two ways to decode. A version that has the ``greedy`` graph (``greedy.onnx``, the model's
encoder and decoder step in an ONNX Loop: app.training.greedy_graph) decodes greedy requests inside
ONNX Runtime: one session run per batch of sentences, the requests batched by the dynamic batcher
like any other graph's (sources padded to a multiple of ``SOURCE_BUCKET`` tokens so that requests of
similar length meet; the encoder masks padding; short texts are tokenised on the event loop). Otherwise, and for beam search or with
``parameters.decoding: python``, the Python loop: concurrent requests with the same decoding options
are coalesced and decoded together as one batch (app.batching.coalescer), so N concurrent users cost
one decode loop, not N. The loop runs on a worker thread; each of its graph runs goes through the
model's dynamic batcher.
"""

from __future__ import annotations

import asyncio

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from app.batching.batcher import BatchObserver
from app.batching.coalescer import Coalescer, Group
from app.config import Settings
from app.runtime import workers
from app.tasks.base import Infer, Pipeline, TaskRequest, TaskResponse
from app.tasks.translation.decoding import GREEDY_GRAPH, greedy_tokens
from app.tasks.translation.processing import TranslationTokenizer

MAX_OUTPUT_TOKENS = 256
SOURCE_BUCKET = 16  # in-graph decoding: sources padded to a multiple of this, so requests share batches
INLINE_TEXT_CHARS = 4096  # in-graph decoding: tokenised on the event loop up to this many characters
DECODING = ("graph", "python")  # parameters.decoding: where greedy requests decode when both can


class TranslationRequest(TaskRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [{"texts": ["Wo ist der Bahnhof?"], "beam_size": 1}]})

    texts: list[str] = Field(..., min_length=1, description="German texts.")
    beam_size: int = Field(1, ge=1, le=8, description="1 = greedy decoding; >1 = beam search.")
    max_length: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS,
                                   description="Most output tokens per text (default: the model's).")  # fmt: skip


    def free_texts(self) -> list[str]:
        return self.texts

    def item_count(self) -> int:
        return len(self.texts)

    @classmethod
    def body_limit(cls, settings: Settings) -> tuple[int, str]:
        return cls.texts_body_limit(settings)


class TranslationResult(BaseModel):
    text: str
    source_truncated: bool = Field(description="The source was longer than the model reads and was cut.")


class TranslationResponse(TaskResponse):
    translations: list[TranslationResult]


class TranslationPipeline(Pipeline[TranslationRequest, TranslationResponse]):
    task = "translation"
    request_type = TranslationRequest
    response_type = TranslationResponse
    optional_graphs = frozenset({GREEDY_GRAPH})  # versions exported before it decode with the loop

    def __init__(self, version_dir, config, settings, inputs):
        super().__init__(version_dir, config, settings, inputs)
        if set(config.graphs) - {GREEDY_GRAPH} != {"encoder", "decoder_step"}:
            raise ValueError(f"a translation model needs graphs: {{encoder: ..., decoder_step: ...}} "
                             f"(and optionally {GREEDY_GRAPH}: ...)")  # fmt: skip
        decoding = self.parameters.get("decoding", "graph")
        if decoding not in DECODING:
            raise ValueError(f"parameters.decoding must be one of {DECODING}, not {decoding!r}")
        self.greedy_in_graph = GREEDY_GRAPH in inputs and decoding == "graph"  # inputs: the graphs loaded
        self.tokenizer = TranslationTokenizer.from_files(self.file("tokenizer", "tokenizer.json"), self.parameters)
        db = config.dynamic_batching
        self.coalescer = Coalescer(self._translate, max_items=config.max_batch_size or 32,
                                   max_waiting=db.max_queue_size,  # the effective config's (never None)
                                   max_groups=settings.decode_threads,
                                   retry_after_s=settings.retry_after_seconds, name=version_dir.parent.name)

    def observe(self, observer: BatchObserver) -> None:
        self.coalescer.observer = observer

    async def predict(self, request: TranslationRequest, infer: Infer) -> dict:
        if request.beam_size == 1 and self.greedy_in_graph:
            return {"translations": await self._greedy_in_graph(request, infer)}
        # Requests meet only requests with the same decoding options. The pipeline belongs to one
        # model version, so every caller's `infer` runs the same graphs.
        items = [(text, infer) for text in request.texts]
        results = await self.coalescer.submit((request.beam_size, request.max_length), items, infer.deadline)
        return {"translations": results}

    async def _translate(self, key, items: list[tuple[str, Infer]], group: Group) -> list[dict]:
        beam_size, max_length = key
        texts, callers = [text for text, _ in items], {id(f): f for _, f in items}
        infer = items[0][1].with_deadline(group.deadline)
        loop = asyncio.get_running_loop()

        def run(graph: str, feeds):  # called on the worker thread; computes through the batcher
            outputs = asyncio.run_coroutine_threadsafe(infer(feeds, graph=graph), loop).result()
            return list(outputs.values())

        translations = await workers.decode(
            self.tokenizer.translate, texts, run, beam_size=beam_size, max_output_length=max_length,
            batch_size=self.config.max_batch_size or 32, keep=group.live)
        # Every caller of the group waited on the same graph runs (for its processing-time metric).
        for caller in callers.values():
            caller.waited += infer.waited
        return [{"text": t.text, "source_truncated": t.source_truncated} for t in translations]

    async def _greedy_in_graph(self, request: TranslationRequest, infer: Infer) -> list[dict]:
        batch = self.config.max_batch_size or len(request.texts)
        chunks = [request.texts[i : i + batch] for i in range(0, len(request.texts), batch)]
        parts = await asyncio.gather(*(self._greedy_chunk(chunk, request.max_length, infer) for chunk in chunks))
        return [t for part in parts for t in part]

    async def _greedy_chunk(self, texts: list[str], max_length: int | None, infer: Infer) -> list[dict]:
        # Tokenising a few sentences takes tens of microseconds, less than a hop to a worker thread and back
        # (measured: the hops were half of the in-graph path's server time): only long texts leave the loop.
        inline = sum(len(t) for t in texts) <= INLINE_TEXT_CHARS
        src_ids, mask, truncated = (self._bucketed_sources(texts) if inline
                                    else await workers.preprocess(self._bucketed_sources, texts))  # fmt: skip
        outputs = await infer({"src_ids": src_ids, "memory_mask": mask}, graph=GREEDY_GRAPH)
        limit = min(max_length or self.tokenizer.spec.max_output_length, self.tokenizer.spec.max_output_length)
        tokens = greedy_tokens(next(iter(outputs.values())), self.tokenizer.spec.eos_id, limit)
        detokenize = lambda: [self.tokenizer.detokenize(t) for t in tokens]  # noqa: E731
        texts_out = detokenize() if inline else await workers.preprocess(detokenize)
        return [{"text": t, "source_truncated": cut} for t, cut in zip(texts_out, truncated)]

    def _bucketed_sources(self, texts: list[str]):
        src_ids, mask, truncated = self.tokenizer.encode_sources(texts)
        width = src_ids.shape[1]
        bucket = max(width, min(-(-width // SOURCE_BUCKET) * SOURCE_BUCKET, self.tokenizer.max_source_length))
        if bucket > width:
            src_ids = np.pad(src_ids, ((0, 0), (0, bucket - width)), constant_values=self.tokenizer.pad_id)
            mask = np.pad(mask, ((0, 0), (0, bucket - width)))
        return src_ids, mask, truncated
