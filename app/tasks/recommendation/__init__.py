"""Recommendation: a user id in, the top-k unseen items with titles and scores out."""

from app.tasks.base import Task
from app.tasks.recommendation import client
from app.tasks.recommendation.pipeline import RecommendationPipeline

TASK = Task(
    pipeline=RecommendationPipeline,
    summary="recommended movies for a user",
    rpc="Recommendation",
    client=client,
)
