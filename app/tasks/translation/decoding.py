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
# Which sources of the batch are still wanted (a bool per source), asked before every step:
# a source whose caller left stops being decoded.
Keep = Callable[[], np.ndarray]
# The optional graph that decodes greedily inside ONNX Runtime (app.training.greedy_graph builds it).
GREEDY_GRAPH, GREEDY_FILE = "greedy", "greedy.onnx"


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
                  max_length: int | None = None, keep: Keep | None = None) -> list[list[int]]:
    """Token ids per source (without the start token, ending at EOS when one was produced).
    Finished rows leave the batch, so each step only computes the sentences still running;
    so do rows ``keep`` no longer wants (their ids stop where they were)."""
    limit = min(max_length or spec.max_output_length, spec.max_output_length)
    batch = memory.shape[0]
    outputs: list[list[int]] = [[] for _ in range(batch)]
    active = np.arange(batch)
    prefix = np.full((batch, 1), spec.start_id, dtype=np.int64)
    for _ in range(limit):
        if keep is not None:
            wanted = keep()[active]
            if not wanted.all():
                prefix, active = prefix[wanted], active[wanted]
                if not active.size:
                    break
        next_ids = _next_logits(run, prefix, memory[active], memory_mask[active], spec).argmax(axis=-1)
        for row, token in zip(active, next_ids):
            outputs[row].append(int(token))
        still_running = next_ids != spec.eos_id
        if not still_running.any():
            break
        prefix = np.concatenate([prefix, next_ids[:, None].astype(np.int64)], axis=1)[still_running]
        active = active[still_running]
    return outputs


def _top_candidates(totals: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest values, best first, ties by index (as a stable sort would
    give) without sorting the whole beams x vocabulary row."""
    count = min(count, totals.size)
    threshold = np.partition(totals, totals.size - count)[totals.size - count]
    candidates = np.flatnonzero(totals >= threshold)
    return candidates[np.lexsort((candidates, -totals[candidates]))[:count]]


def beam_search(run: GraphRunner, memory: np.ndarray, memory_mask: np.ndarray, spec: DecodingSpec,
                beam_size: int = 4, length_penalty: float = 1.0, max_length: int | None = None,
                keep: Keep | None = None) -> list[list[int]]:
    """Batched beam search: every running source keeps ``beam_size`` live hypotheses in one
    decoder_step batch of ``running sources x beams`` rows. A hypothesis ends at EOS; its score is
    the summed log probability divided by length**length_penalty. A source stops (and leaves the
    batch) once it holds ``beam_size`` finished hypotheses and its best live one, normalised at its
    current length, scores lower (Hugging Face's default heuristic). A source ``keep`` no longer
    wants leaves the batch too (its result: what it had finished, else nothing)."""
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
    running = list(range(sources))  # row block b of the batch belongs to source running[b]

    for step in range(1, limit + 1):
        if keep is not None:
            wanted = keep()
            blocks = [block for block, source in enumerate(running) if wanted[source]]
            if len(blocks) < len(running):
                rows = (np.arange(beam_size)[None, :] + beam_size * np.array(blocks, dtype=np.int64)[:, None]).ravel()
                prefix, memory_rows, mask_rows, scores = prefix[rows], memory_rows[rows], mask_rows[rows], scores[rows]
                running = [running[block] for block in blocks]
                if not running:
                    break
        log_probs = log_softmax(_next_logits(run, prefix, memory_rows, mask_rows, spec).astype(np.float64))
        vocab = log_probs.shape[1]
        totals = (scores[:, None] + log_probs).reshape(len(running), beam_size * vocab)
        new_rows, new_tokens, new_scores, still_running = [], [], [], []
        for block, source in enumerate(running):
            rows, tokens, block_scores = [], [], []
            for flat in _top_candidates(totals[block], 2 * beam_size):
                total = totals[block, flat]
                if not np.isfinite(total):
                    break
                beam, token = divmod(int(flat), vocab)
                row = block * beam_size + beam
                if token == spec.eos_id:
                    hypothesis = [int(t) for t in prefix[row, 1:]] + [token]
                    finished[source].append((total / step ** length_penalty, hypothesis))
                    continue
                rows.append(row)
                tokens.append(token)
                block_scores.append(total)
                if len(rows) == beam_size:
                    break
            if not rows:  # every continuation ended (or, with everything suppressed, none is possible)
                if not finished[source]:
                    finished[source].append((-np.inf, [int(t) for t in prefix[block * beam_size, 1:]]))
                continue
            if len(finished[source]) >= beam_size:
                best_finished = max(score for score, _ in finished[source])
                if best_finished >= max(block_scores) / step ** length_penalty:
                    continue  # done: its rows leave the batch
            while len(rows) < beam_size:  # fewer live continuations than beams: pad with dead ones
                rows.append(rows[0])
                tokens.append(spec.eos_id)
                block_scores.append(-np.inf)
            new_rows += rows
            new_tokens += tokens
            new_scores += block_scores
            still_running.append(source)
        if not still_running:
            running = []
            break
        prefix = np.concatenate([prefix[new_rows], np.array(new_tokens, dtype=np.int64)[:, None]], axis=1)
        memory_rows, mask_rows = memory_rows[new_rows], mask_rows[new_rows]  # a row keeps its source
        scores = np.array(new_scores)
        running = still_running

    live_best = {}  # sources still running at the limit: their best live hypothesis
    for block, source in enumerate(running):
        best = block * beam_size + int(np.argmax(scores[block * beam_size:(block + 1) * beam_size]))
        live_best[source] = [int(t) for t in prefix[best, 1:]]
    return [max(finished[source], key=lambda item: item[0])[1] if finished[source] else live_best.get(source, [])
            for source in range(sources)]


def greedy_tokens(tokens: np.ndarray, eos_id: int, max_length: int | None = None) -> list[list[int]]:
    """Each row of the graph's ``tokens`` as ``greedy_decode`` returns it: without the start token,
    ending at the first EOS (included), at most ``max_length`` tokens."""
    rows = []
    for row in np.asarray(tokens)[:, 1:].tolist():
        if eos_id in row:
            row = row[: row.index(eos_id) + 1]
        rows.append(row[:max_length] if max_length else row)
    return rows
