"""Autoregressive decoding over two exported graphs (serving code: numpy only).

``encoder(src_ids) -> memory`` runs once per batch; ``decoder_step(tgt_prefix, memory,
memory_mask) -> next_logits`` runs once per output position. Both go through a caller-supplied
``run(graph_name, feeds) -> outputs`` so the server can route each step through its dynamic
batcher; offline evaluation passes plain ONNX Runtime sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

GraphRunner = Callable[[str, Mapping[str, np.ndarray]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class DecodingSpec:
    start_id: int  # first token of every target prefix (BOS; Marian uses its pad id)
    eos_id: int
    suppressed_ids: tuple[int, ...] = ()  # never generated (pad, start)
    max_output_length: int = 128  # tokens after the start token, end-of-sentence included


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _next_logits(run: GraphRunner, prefix: np.ndarray, memory: np.ndarray, memory_mask: np.ndarray,
                 spec: DecodingSpec) -> np.ndarray:
    logits = np.asarray(run("decoder_step", {"tgt_prefix": prefix, "memory": memory, "memory_mask": memory_mask})[0],
                        dtype=np.float32)
    if spec.suppressed_ids:
        logits = logits.copy()
        logits[:, list(spec.suppressed_ids)] = -np.inf
    return logits


def greedy_decode(run: GraphRunner, memory: np.ndarray, memory_mask: np.ndarray, spec: DecodingSpec,
                  max_length: int | None = None) -> list[list[int]]:
    """Token ids per source (without the start token, ending at EOS when one was produced).
    Finished rows leave the batch, so each step only computes the sentences still running."""
    limit = min(max_length or spec.max_output_length, spec.max_output_length)
    batch = memory.shape[0]
    outputs: list[list[int]] = [[] for _ in range(batch)]
    active = np.arange(batch)
    prefix = np.full((batch, 1), spec.start_id, dtype=np.int64)
    for _ in range(limit):
        next_ids = _next_logits(run, prefix, memory[active], memory_mask[active], spec).argmax(axis=-1)
        for row, token in zip(active, next_ids):
            outputs[row].append(int(token))
        still_running = next_ids != spec.eos_id
        if not still_running.any():
            break
        prefix = np.concatenate([prefix, next_ids[:, None].astype(np.int64)], axis=1)[still_running]
        active = active[still_running]
    return outputs


def beam_search(run: GraphRunner, memory: np.ndarray, memory_mask: np.ndarray, spec: DecodingSpec,
                beam_size: int = 4, length_penalty: float = 1.0, max_length: int | None = None) -> list[list[int]]:
    """Batched beam search: every source keeps ``beam_size`` live hypotheses in one decoder_step
    batch of ``sources x beams`` rows. A hypothesis ends at EOS; its score is the summed log
    probability divided by length**length_penalty. A source stops once it holds ``beam_size``
    finished hypotheses and its best live one, normalised at its current length, scores lower."""
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    limit = min(max_length or spec.max_output_length, spec.max_output_length)
    sources = memory.shape[0]
    memory_rows = np.repeat(memory, beam_size, axis=0)
    mask_rows = np.repeat(memory_mask, beam_size, axis=0)
    prefix = np.full((sources * beam_size, 1), spec.start_id, dtype=np.int64)
    # only the first beam of each source is live at the start; the others are copies
    scores = np.tile(np.array([0.0] + [-np.inf] * (beam_size - 1)), sources)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(sources)]
    done = np.zeros(sources, dtype=bool)

    for step in range(1, limit + 1):
        log_probs = log_softmax(_next_logits(run, prefix, memory_rows, mask_rows, spec).astype(np.float64))
        vocab = log_probs.shape[1]
        totals = (scores[:, None] + log_probs).reshape(sources, beam_size * vocab)
        new_rows, new_tokens, new_scores = [], [], []
        for source in range(sources):
            if done[source]:  # keep shapes: carry dead beams along
                base = source * beam_size
                new_rows.extend(range(base, base + beam_size))
                new_tokens.extend([spec.eos_id] * beam_size)
                new_scores.extend([-np.inf] * beam_size)
                continue
            candidates = np.argsort(-totals[source], kind="stable")[: 2 * beam_size]
            kept = 0
            for flat in candidates:
                total = totals[source, flat]
                if not np.isfinite(total):
                    break
                beam, token = divmod(int(flat), vocab)
                row = source * beam_size + beam
                if token == spec.eos_id:
                    tokens = [int(t) for t in prefix[row, 1:]] + [token]
                    finished[source].append((total / step ** length_penalty, tokens))
                    continue
                new_rows.append(row)
                new_tokens.append(token)
                new_scores.append(total)
                kept += 1
                if kept == beam_size:
                    break
            for _ in range(beam_size - kept):  # fewer live continuations than beams: pad with dead ones
                new_rows.append(source * beam_size)
                new_tokens.append(spec.eos_id)
                new_scores.append(-np.inf)
            best_live = max(new_scores[-beam_size:])
            if len(finished[source]) >= beam_size:
                best_finished = max(score for score, _ in finished[source])
                # heuristic stop (as Hugging Face's default): the best live hypothesis, normalised
                # at its current length, no longer beats the best finished one
                if best_finished >= best_live / step ** length_penalty:
                    done[source] = True
        prefix = np.concatenate([prefix[new_rows], np.array(new_tokens, dtype=np.int64)[:, None]], axis=1)
        scores = np.array(new_scores)
        if done.all():
            break

    results = []
    for source in range(sources):
        if finished[source]:
            results.append(max(finished[source], key=lambda item: item[0])[1])
        else:  # no hypothesis reached EOS within the limit: the best live one, cut at the limit
            rows = slice(source * beam_size, (source + 1) * beam_size)
            best = int(np.argmax(scores[rows]))
            results.append([int(t) for t in prefix[source * beam_size + best, 1:]])
    return results
