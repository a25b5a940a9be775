"""Translation pre/post-processing (serving code: numpy + tokenizers only): tokenise sources,
run the encoder once per batch, decode (greedy or beam) over ``decoder_step``, detokenise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from app.tasks.translation.decoding import DecodingSpec, GraphRunner, Keep, beam_search, greedy_decode


@dataclass(frozen=True)
class Translation:
    text: str
    token_ids: list[int]
    source_truncated: bool  # the source was longer than max_source_length and was cut


class TranslationTokenizer:
    """``parameters`` are the model config's (``config.yaml`` ``parameters`` and the card): pad_id,
    start_id, eos_id, max_source_length, max_output_length, optional suppressed_ids."""

    def __init__(self, tokenizer: Tokenizer, *, pad_id: int, start_id: int, eos_id: int,
                 max_source_length: int = 128, max_output_length: int = 128,
                 suppressed_ids: Sequence[int] | None = None):
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # private copy: settings below are ours
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_source_length)
        self.pad_id = pad_id
        self.max_source_length = max_source_length
        suppressed = tuple(suppressed_ids) if suppressed_ids is not None else tuple({pad_id, start_id} - {eos_id})
        self.spec = DecodingSpec(start_id=start_id, eos_id=eos_id, suppressed_ids=suppressed,
                                 max_output_length=max_output_length)

    @classmethod
    def from_files(cls, tokenizer_file: Path, parameters: Mapping[str, Any]) -> "TranslationTokenizer":
        keys = ("pad_id", "start_id", "eos_id", "max_source_length", "max_output_length", "suppressed_ids")
        return cls(Tokenizer.from_file(str(tokenizer_file)), **{k: parameters[k] for k in keys if k in parameters})

    def encode_sources(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """(src_ids, memory_mask, truncated): int64 [batch, longest] padded with pad_id, mask 1 on tokens.
        The tokenizer's post-processor appends the end-of-sentence token the model was trained with."""
        if not texts:
            raise ValueError("no texts to translate")
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        src_ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            src_ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return src_ids, mask, [bool(e.overflowing) for e in encodings]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        ids = list(token_ids)
        if self.spec.eos_id in ids:
            ids = ids[: ids.index(self.spec.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def translate(self, texts: Sequence[str], run: GraphRunner, *, beam_size: int = 1,
                  max_output_length: int | None = None, length_penalty: float = 1.0,
                  batch_size: int = 32, keep: Keep | None = None) -> list[Translation]:
        """Translations in input order. Sources are grouped by length into batches of
        ``batch_size`` so little padding is computed. ``keep`` (a bool per text, asked at every
        step) drops texts nobody waits for any more; theirs are cut short or empty."""
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        results: list[Translation | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            chunk_keep = None if keep is None else (lambda chunk=chunk: np.asarray(keep())[chunk])
            src_ids, mask, truncated = self.encode_sources([texts[i] for i in chunk])
            if chunk_keep is not None and not chunk_keep().any():
                outputs = [[] for _ in chunk]
            else:
                memory = np.asarray(run("encoder", {"src_ids": src_ids})[0])
                if beam_size == 1:
                    outputs = greedy_decode(run, memory, mask, self.spec, max_output_length, chunk_keep)
                else:
                    outputs = beam_search(run, memory, mask, self.spec, beam_size, length_penalty, max_output_length,
                                          chunk_keep)
            for index, tokens, cut in zip(chunk, outputs, truncated):
                results[index] = Translation(self.detokenize(tokens), tokens, cut)
        return results  # type: ignore[return-value]
