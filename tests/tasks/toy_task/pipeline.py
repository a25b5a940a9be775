"""The toy task's request, response and pipeline: each number is one row of the model's input."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from app.tasks.base import Infer, Pipeline, TaskRequest, TaskResponse


class ToyRequest(TaskRequest):
    values: list[float] = Field(..., min_length=1, description="Numbers, one model row each.")

    def item_count(self) -> int:
        return len(self.values)


class ToyResponse(TaskResponse):
    results: list[float]


class ToyPipeline(Pipeline[ToyRequest, ToyResponse]):
    task = "toy"
    request_type = ToyRequest
    response_type = ToyResponse

    def __init__(self, version_dir, config, settings, inputs):
        super().__init__(version_dir, config, settings, inputs)
        self.input_name = self.only_input()

    async def predict(self, request: ToyRequest, infer: Infer) -> dict:
        outputs = await infer({self.input_name: np.array(request.values, dtype=np.float32)[:, None]})
        return {"results": self.output(outputs)[:, 0].tolist()}
