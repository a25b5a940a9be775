"""Network architectures the text recipes train: a MiniLM (BERT) classifier and a seq2seq Transformer."""
