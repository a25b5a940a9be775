"""Sentiment: text -> (input_ids, attention_mask) padded to length buckets -> logits -> label."""
