"""Recommendation: a user id in, the top-k unseen items with titles and scores out."""

from app.tasks.base import Task
from app.tasks.recommendation import client
from app.tasks.recommendation.pipeline import RecommendationPipeline

TASK = Task(
    pipeline=RecommendationPipeline,
    summary="recommended movies for a user",
    rpc="Recommendation",
    grpc_request="dendrite.v1.RecommendationRequest",
    grpc_response="dendrite.v1.RecommendationResponse",
    add_arguments=client.add_arguments,
    request_fields=client.request_fields,
    format=client.format_answer,
    samples=client.samples,
)
