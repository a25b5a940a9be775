"""Sentiment: texts in, a label and class probabilities per text out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.config import Settings
from app.runtime import workers
from app.tasks.base import Infer, Pipeline, TaskRequest, TaskResponse
from app.tasks.sentiment.processing import DEFAULT_BUCKETS, SentimentTokenizer


class SentimentRequest(TaskRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [{"texts": ["What a wonderful film!"]}]})

    texts: list[str] = Field(..., min_length=1,
                             description="Texts to classify. An empty text is classified like any other "
                                         "(as [CLS][SEP]); texts longer than the model's longest bucket "
                                         "are truncated and flagged.")  # fmt: skip


    def free_texts(self) -> list[str]:
        return self.texts

    def item_count(self) -> int:
        return len(self.texts)

    @classmethod
    def body_limit(cls, settings: Settings) -> tuple[int, str]:
        return cls.texts_body_limit(settings)


class SentimentResult(BaseModel):
    label: str
    probabilities: dict[str, float]
    truncated: bool = Field(description="The text was longer than the model reads and was cut.")


class SentimentResponse(TaskResponse):
    predictions: list[SentimentResult]


class SentimentPipeline(Pipeline[SentimentRequest, SentimentResponse]):
    task = "sentiment"
    request_type = SentimentRequest
    response_type = SentimentResponse

    def __init__(self, version_dir, config, settings, inputs):
        super().__init__(version_dir, config, settings, inputs)
        labels = self.parameters.get("labels")
        if not isinstance(labels, list) or not labels:
            raise ValueError("parameters.labels must list the class names in output order")
        buckets = self.parameters.get("buckets", DEFAULT_BUCKETS)
        self.tokenizer = SentimentTokenizer.from_files(self.file("tokenizer", "tokenizer.json"), labels, buckets)

    async def predict(self, request: SentimentRequest, infer: Infer) -> dict:
        batch = await workers.preprocess(self.tokenizer.encode, request.texts)
        outputs = await infer(batch.feeds())
        logits = self.output(outputs)
        return {"predictions": [p.__dict__ for p in self.tokenizer.decode(logits, batch.truncated)]}
