"""Recommendation: a user id in, ranked items with titles and scores out."""

from __future__ import annotations

import numpy as np
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.config import Settings
from app.tasks.base import BODY_ROOM_BYTES, Infer, Pipeline, TaskRequest, TaskResponse
from app.tasks.recommendation.processing import Catalogue, recommend

MAX_K = 100


class RecommendationRequest(TaskRequest):
    # MovieLens user 196 (an unknown id would still answer, with cold_start: true).
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": "196", "k": 3}]})

    user_id: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v)] = Field(
        ..., min_length=1, max_length=64, description="The user's id in the training data (a string; integers are accepted).")
    k: int | None = Field(None, ge=1, le=MAX_K, description=f"How many items (1..{MAX_K}; default: the model's).")
    exclude_seen: bool | None = Field(None, description="Leave out items the user already interacted with "
                                                         "(default: the model's, normally true).")  # fmt: skip

    @classmethod
    def body_limit(cls, settings: Settings) -> tuple[int, str]:
        return cls.capped_body_limit(settings, BODY_ROOM_BYTES, "a recommendation request has no items to carry")


class Item(BaseModel):
    item_id: str
    title: str
    score: float = Field(description="Model score (0 for cold-start answers, which rank by popularity).")


class RecommendationResponse(TaskResponse):
    user_id: str
    cold_start: bool = Field(description="True when the user is unknown: the most popular items are returned.")
    items: list[Item]


class RecommendationPipeline(Pipeline[RecommendationRequest, RecommendationResponse]):
    task = "recommendation"
    request_type = RecommendationRequest
    response_type = RecommendationResponse

    def __init__(self, version_dir, config, settings, inputs):
        super().__init__(version_dir, config, settings, inputs)
        self.catalogue = Catalogue.load(version_dir)
        self.input_name = self.only_input()
        self.default_k = int(self.parameters.get("top_k", 10))
        self.default_exclude_seen = bool(self.parameters.get("exclude_seen", True))

    async def predict(self, request: RecommendationRequest, infer: Infer) -> dict:
        index = self.catalogue.user_index(request.user_id)
        scores = None
        if index is not None:
            outputs = await infer({self.input_name: np.array([index], dtype=np.int64)})
            scores = self.output(outputs)[0]
        exclude = self.default_exclude_seen if request.exclude_seen is None else request.exclude_seen
        items = recommend(self.catalogue, request.user_id, scores, request.k or self.default_k, exclude)
        return {
            "user_id": request.user_id,
            "cold_start": index is None,
            "items": [{"item_id": r.item_id, "title": r.title, "score": r.score} for r in items],
        }
