"""Sentiment: text -> (input_ids, attention_mask) padded to length buckets -> logits -> label."""

from app.tasks.base import Task
from app.tasks.sentiment import client
from app.tasks.sentiment.pipeline import SentimentPipeline

TASK = Task(
    pipeline=SentimentPipeline,
    summary="sentiment of texts",
    rpc="Sentiment",
    grpc_request="dendrite.v1.SentimentRequest",
    grpc_response="dendrite.v1.SentimentResponse",
    add_arguments=client.add_arguments,
    request_fields=client.request_fields,
    format=client.format_answer,
    samples=client.samples,
)
