"""Pre- and post-processing for the sentiment classifier (serving code: numpy + tokenizers only).

Requests are padded to the smallest length bucket that fits their longest text, so requests
that arrive together share a shape and the dynamic batcher can stack them (Triton batches
only equal shapes). Texts longer than the largest bucket are truncated and reported so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

DEFAULT_BUCKETS = (16, 32, 64, 128)


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray  # int64 [batch, bucket]
    attention_mask: np.ndarray  # int64 [batch, bucket]
    truncated: list[bool]  # per text: did it lose tokens past the largest bucket

    def feeds(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


@dataclass(frozen=True)
class SentimentPrediction:
    label: str
    probabilities: dict[str, float]
    truncated: bool


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class SentimentTokenizer:
    def __init__(self, tokenizer: Tokenizer, labels: Sequence[str], buckets: Sequence[int] = DEFAULT_BUCKETS):
        if not labels:
            raise ValueError("labels must not be empty")
        if not buckets or list(buckets) != sorted(set(buckets)) or buckets[0] < 2:
            raise ValueError(f"buckets must be increasing lengths >= 2, got {list(buckets)}")
        self.labels = list(labels)
        self.buckets = list(buckets)
        self.max_length = self.buckets[-1]
        # a tokenizer.json may carry its own padding/truncation settings (all-MiniLM's pads to 128):
        # this tokenizer owns both, so they are reset on a private copy
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = self._pad_id()

    @classmethod
    def from_files(cls, tokenizer_file: Path, labels: Sequence[str],
                   buckets: Sequence[int] = DEFAULT_BUCKETS) -> "SentimentTokenizer":
        return cls(Tokenizer.from_file(str(tokenizer_file)), labels, buckets)

    def _pad_id(self) -> int:
        for token in ("[PAD]", "<pad>"):
            token_id = self.tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def bucket_for(self, length: int) -> int:
        for bucket in self.buckets:
            if length <= bucket:
                return bucket
        return self.max_length

    def encode(self, texts: Sequence[str]) -> EncodedBatch:
        """All texts padded to one bucket: the smallest that fits the longest of them."""
        if not texts:
            raise ValueError("no texts to encode")
        encodings = self.tokenizer.encode_batch(list(texts))
        width = self.bucket_for(max(len(e.ids) for e in encodings))
        input_ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            input_ids[row, : len(encoding.ids)] = encoding.ids
            attention_mask[row, : len(encoding.ids)] = 1
        truncated = [bool(e.overflowing) for e in encodings]
        return EncodedBatch(input_ids, attention_mask, truncated)

    def decode(self, logits: np.ndarray, truncated: Sequence[bool] | None = None) -> list[SentimentPrediction]:
        if logits.ndim != 2 or logits.shape[1] != len(self.labels):
            raise ValueError(f"logits of shape {logits.shape} do not match {len(self.labels)} labels")
        probabilities = softmax(logits.astype(np.float64))
        flags = list(truncated) if truncated is not None else [False] * len(logits)
        return [
            SentimentPrediction(
                label=self.labels[int(row.argmax())],
                probabilities={label: float(p) for label, p in zip(self.labels, row)},
                truncated=flag,
            )
            for row, flag in zip(probabilities, flags)
        ]

    def batches_by_bucket(self, texts: Sequence[str], batch_size: int) -> Iterator[tuple[list[int], EncodedBatch]]:
        """(original indices, batch) for many texts at once: texts grouped by their own bucket so a
        short text is never padded to a long neighbour's length (offline evaluation, bulk calls)."""
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]
        by_bucket: dict[int, list[int]] = {}
        for index, length in enumerate(lengths):
            by_bucket.setdefault(self.bucket_for(length), []).append(index)
        for bucket in sorted(by_bucket):
            indices = by_bucket[bucket]
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                yield chunk, self.encode([texts[i] for i in chunk])

    def predict(self, texts: Sequence[str], infer: Callable[[dict[str, np.ndarray]], np.ndarray],
                batch_size: int = 64) -> list[SentimentPrediction]:
        """Encode, run ``infer(feeds) -> logits`` bucket by bucket, decode; results in input order."""
        results: list[SentimentPrediction | None] = [None] * len(texts)
        for indices, batch in self.batches_by_bucket(texts, batch_size):
            for index, prediction in zip(indices, self.decode(infer(batch.feeds()), batch.truncated)):
                results[index] = prediction
        return results  # type: ignore[return-value]
