"""Text helpers shared by the text recipes (sentiment, translation): corpora, splits, models."""
