"""Sentiment task: text -> (input_ids, attention_mask) padded to length buckets -> logits -> label."""

from app.tasks.sentiment.processing import EncodedBatch, SentimentCodec, SentimentPrediction

__all__ = ["EncodedBatch", "SentimentCodec", "SentimentPrediction"]
