"""Translation: German texts in, English texts out (greedy by default, beam search on request).

Concurrent requests with the same decoding options are coalesced and decoded together as one
batch (app.batching.coalescer), so N concurrent users cost one decode loop, not N. The loop runs
on a worker thread; each of its graph runs goes through the model's dynamic batcher.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from app.batching.batcher import BatchObserver
from app.batching.coalescer import Coalescer, Group
from app.config import Settings
from app.runtime import workers
from app.tasks.base import Infer, Pipeline, TaskRequest, TaskResponse
from app.tasks.translation.processing import TranslationTokenizer

MAX_OUTPUT_TOKENS = 256


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

    def __init__(self, version_dir, config, settings, inputs):
        super().__init__(version_dir, config, settings, inputs)
        if set(config.graphs) != {"encoder", "decoder_step"}:
            raise ValueError("a translation model needs graphs: {encoder: ..., decoder_step: ...}")
        self.tokenizer = TranslationTokenizer.from_files(self.file("tokenizer", "tokenizer.json"), self.parameters)
        db = config.dynamic_batching
        self.coalescer = Coalescer(self._translate, max_items=config.max_batch_size or 32,
                                   max_waiting=db.max_queue_size,  # the effective config's (never None)
                                   max_groups=settings.decode_threads,
                                   retry_after_s=settings.retry_after_seconds, name=version_dir.parent.name)

    def observe(self, observer: BatchObserver) -> None:
        self.coalescer.observer = observer

    async def predict(self, request: TranslationRequest, infer: Infer) -> dict:
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
