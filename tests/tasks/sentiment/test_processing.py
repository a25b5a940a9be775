"""Sentiment pre/post-processing: buckets, padding, truncation flags, softmax and label order."""

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from app.tasks.sentiment.processing import SentimentTokenizer

LABELS = ["negative", "neutral", "positive"]


def bert_like_tokenizer(padding_to: int | None = None) -> Tokenizer:
    words = ["i", "love", "hate", "this", "movie", "it", "is", "ok", "!", "."]
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    if padding_to:  # like all-MiniLM's tokenizer.json, which pads everything to 128
        tokenizer.enable_padding(length=padding_to, pad_id=0, pad_token="[PAD]")
    return tokenizer


def test_pads_to_the_smallest_bucket_that_fits_and_masks_padding():
    codec = SentimentTokenizer(bert_like_tokenizer(padding_to=128), LABELS, buckets=[4, 8, 16])
    batch = codec.encode(["I love this movie!", "ok"])
    assert batch.input_ids.shape == (2, 8)  # longest is 7 tokens with [CLS]/[SEP]
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    assert batch.attention_mask.sum(axis=1).tolist() == [7, 3]
    assert batch.input_ids[1, 3:].tolist() == [0] * 5
    assert batch.truncated == [False, False]
    assert codec.encode(["ok"]).input_ids.shape == (1, 4)


def test_long_text_is_truncated_to_the_largest_bucket_and_flagged():
    codec = SentimentTokenizer(bert_like_tokenizer(), LABELS, buckets=[4, 8])
    batch = codec.encode(["i love this movie " * 5, "ok"])
    assert batch.input_ids.shape == (2, 8)
    assert batch.input_ids[0, -1] == 3  # still ends with [SEP]
    assert batch.truncated == [True, False]


def test_decode_softmax_labels_and_flags():
    codec = SentimentTokenizer(bert_like_tokenizer(), LABELS)
    logits = np.array([[2.0, 0.0, -2.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    first, second = codec.decode(logits, [False, True])
    assert first.label == "negative" and second.label == "positive" and second.truncated
    assert sum(first.probabilities.values()) == pytest.approx(1.0)
    assert first.probabilities["negative"] == pytest.approx(np.exp(2) / (np.exp(2) + 1 + np.exp(-2)))
    with pytest.raises(ValueError, match="labels"):
        codec.decode(np.zeros((1, 2), dtype=np.float32))


def test_predict_groups_by_bucket_and_keeps_input_order():
    codec = SentimentTokenizer(bert_like_tokenizer(), LABELS, buckets=[4, 8, 16])
    seen_widths = []

    def infer(feeds):  # "positive" iff the text contains 'love' (id 5)
        seen_widths.append(feeds["input_ids"].shape[1])
        positive = (feeds["input_ids"] == 5).any(axis=1)
        return np.stack([~positive, np.zeros_like(positive), positive], axis=1).astype(np.float32) * 4

    texts = ["ok", "i love this movie, it is ok", "i hate it", "love"]
    predictions = codec.predict(texts, infer, batch_size=2)
    assert [p.label for p in predictions] == ["negative", "positive", "negative", "positive"]
    assert sorted(seen_widths) == [4, 8, 16]  # each text padded only to its own bucket


def test_rejects_bad_buckets():
    with pytest.raises(ValueError):
        SentimentTokenizer(bert_like_tokenizer(), LABELS, buckets=[16, 8])
