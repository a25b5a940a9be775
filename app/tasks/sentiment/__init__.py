"""Sentiment: text -> (input_ids, attention_mask) padded to length buckets -> logits -> label."""

from app.tasks.base import Task
from app.tasks.sentiment import client
from app.tasks.sentiment.pipeline import SentimentPipeline

TASK = Task(
    pipeline=SentimentPipeline,
    summary="sentiment of texts",
    rpc="Sentiment",
    client=client,
)
