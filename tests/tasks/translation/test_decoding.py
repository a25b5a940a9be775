"""Greedy and beam decoding over a toy decoder_step whose probabilities are known exactly."""

import numpy as np
import pytest

from app.tasks.translation.decoding import DecodingSpec, beam_search, greedy_decode

PAD, START, EOS, A, B, C = 0, 1, 2, 3, 4, 5
VOCAB = 6
ENDS = np.eye(VOCAB)[EOS] * 0.9 + 0.1 / VOCAB  # after a token a table does not list: end
SPEC = DecodingSpec(start_id=START, eos_id=EOS, suppressed_ids=(PAD, START), max_output_length=10)


def table_runner(tables, calls=None):
    """decoder_step from per-source transition tables: tables[s][last token] -> probabilities.
    The source index travels in memory[:, 0, 0] (batches may be subsets or repeats of sources)."""

    def run(graph, feeds):
        assert graph == "decoder_step"
        prefix, memory = feeds["tgt_prefix"], feeds["memory"]
        assert prefix.dtype == np.int64 and feeds["memory_mask"].shape[0] == prefix.shape[0]
        if calls is not None:
            calls.append(prefix.shape)
        rows = [np.log(np.maximum(tables[int(m)].get(int(last), ENDS), 1e-12))
                for m, last in zip(memory[:, 0, 0], prefix[:, -1])]
        return [np.array(rows, dtype=np.float32)]

    return run


def memory_for(sources):
    memory = np.zeros((len(sources), 3, 2), dtype=np.float32)
    memory[:, 0, 0] = sources
    return memory, np.ones((len(sources), 3), dtype=np.int64)


def chain(*tokens):
    """A table that walks START -> tokens... deterministically (prob 0.9 each step)."""
    table = {}
    previous = START
    for token in tokens:
        probs = np.full(VOCAB, 0.1 / (VOCAB - 1))
        probs[token] = 0.9
        table[previous] = probs
        previous = token
    return table


def test_greedy_follows_each_source_and_drops_finished_rows():
    tables = [chain(A, EOS), chain(B, C, A, EOS)]
    calls = []
    memory, mask = memory_for([0, 1])
    assert greedy_decode(table_runner(tables, calls), memory, mask, SPEC) == [[A, EOS], [B, C, A, EOS]]
    assert [shape[0] for shape in calls] == [2, 2, 1, 1]  # the finished sentence leaves the batch
    assert [shape[1] for shape in calls] == [1, 2, 3, 4]


def test_greedy_stops_at_max_length_and_never_emits_suppressed_tokens():
    loop = {t: np.eye(VOCAB)[PAD] * 0.5 + np.eye(VOCAB)[A] * 0.4 + np.eye(VOCAB)[EOS] * 0.1 for t in range(VOCAB)}
    memory, mask = memory_for([0])
    assert greedy_decode(table_runner([loop]), memory, mask, SPEC, max_length=4) == [[A, A, A, A]]


def test_beam_finds_the_more_probable_sentence_greedy_misses():
    # START -> A (0.6) then anything at 0.2; START -> B (0.4) then EOS (0.9): B EOS = 0.36 > A x = 0.12
    table = {START: np.array([0, 0, 0, 0.6, 0.4, 0]),
             A: np.array([0, 0, 0.2, 0.2, 0.2, 0.4]), B: np.array([0, 0, 0.9, 0.05, 0.05, 0]),
             C: np.array([0, 0, 1.0, 0, 0, 0])}  # fmt: skip
    memory, mask = memory_for([0, 0])
    run = table_runner([table])
    assert greedy_decode(run, memory, mask, SPEC)[0] == [A, C, EOS]
    assert beam_search(run, memory, mask, SPEC, beam_size=2, length_penalty=0.0) == [[B, EOS], [B, EOS]]
    # beam size 1 is greedy
    assert beam_search(run, memory, mask, SPEC, beam_size=1, length_penalty=0.0)[0] == [A, C, EOS]


def test_beam_batches_sources_times_beams_and_handles_different_lengths():
    tables = [chain(A, EOS), chain(B, C, A, EOS)]
    calls = []
    memory, mask = memory_for([0, 1])
    out = beam_search(table_runner(tables, calls), memory, mask, SPEC, beam_size=3)
    assert out == [[A, EOS], [B, C, A, EOS]]
    # 2 sources x 3 beams, until the short sentence is done and its beams leave the batch
    assert [shape[0] for shape in calls][:2] == [6, 6] and calls[-1][0] == 3


def test_beam_without_eos_returns_the_best_live_hypothesis_cut_at_the_limit():
    never_ends = {t: np.array([0, 0, 0, 0.7, 0.3, 0]) for t in range(VOCAB)}
    memory, mask = memory_for([0])
    assert beam_search(table_runner([never_ends]), memory, mask, SPEC, beam_size=2, max_length=3) == [[A, A, A]]
    with pytest.raises(ValueError):
        beam_search(table_runner([never_ends]), memory, mask, SPEC, beam_size=0)


@pytest.mark.parametrize("beam_size", [1, 2])
def test_a_source_nobody_waits_for_leaves_the_batch_at_the_next_step(beam_size):
    tables = [chain(A, B, C, EOS), chain(B, C, A, EOS)]
    calls = []
    wanted = np.array([True, True])

    def keep():
        if len(calls) == 2:  # the first caller leaves after two steps
            wanted[0] = False
        return wanted

    memory, mask = memory_for([0, 1])
    if beam_size == 1:
        out = greedy_decode(table_runner(tables, calls), memory, mask, SPEC, keep=keep)
    else:
        out = beam_search(table_runner(tables, calls), memory, mask, SPEC, beam_size, keep=keep)
    assert out[1] == [B, C, A, EOS]  # the other source is decoded in full
    assert len(out[0]) <= 2
    assert [shape[0] for shape in calls][:2] == [2 * beam_size] * 2
    assert all(shape[0] == beam_size for shape in calls[2:])  # the leaver's rows are not computed


def test_nothing_is_decoded_once_every_source_left():
    calls = []
    memory, mask = memory_for([0])
    out = greedy_decode(table_runner([chain(A, EOS)], calls), memory, mask, SPEC, keep=lambda: np.array([False]))
    assert out == [[]] and calls == []
