"""Text-only training tools of the text recipes (sentiment, translation): subword tokenizers,
length-bucketed batches, baselines. Corpora are in app.training.data, networks in app.training.nets."""
