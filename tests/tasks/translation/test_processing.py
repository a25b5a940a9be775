"""TranslationTokenizer end to end over a fake two-graph model that copies its source."""

import numpy as np
import pytest

from app.tasks.translation.processing import TranslationTokenizer
from app.training.text.subwords import BOS, EOS, PAD, train_unigram_tokenizer

SENTENCES = ["Guten Morgen.", "Wie spät ist es?", "Das Haus ist klein.", "Ich habe keine Zeit.",
             "Der Hund schläft im Garten.", "Good morning.", "The house is small."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_unigram_tokenizer(SENTENCES * 5, vocab_size=80)


@pytest.fixture()
def codec(tokenizer):
    return TranslationTokenizer(tokenizer, pad_id=tokenizer.token_to_id(PAD), start_id=tokenizer.token_to_id(BOS),
                            eos_id=tokenizer.token_to_id(EOS), max_source_length=24, max_output_length=40)


def copying_model(vocab_size: int, eos_id: int, calls: list):
    """encoder: memory[b, s, 0] = source id; decoder_step: the source token at the prefix's position."""

    def run(graph, feeds):
        calls.append(graph)
        if graph == "encoder":
            return [feeds["src_ids"][:, :, None].astype(np.float32)]
        prefix, memory, mask = feeds["tgt_prefix"], feeds["memory"], feeds["memory_mask"]
        position = prefix.shape[1] - 1
        logits = np.zeros((prefix.shape[0], vocab_size), dtype=np.float32)
        for row in range(prefix.shape[0]):
            # past its source (a finished sentence still riding along in a beam batch): end again
            token = int(memory[row, position, 0]) if position < mask[row].sum() else eos_id
            logits[row, token] = 10.0
        return [logits]

    return run


def test_encode_sources_pads_masks_and_ends_with_eos(codec, tokenizer):
    src, mask, truncated = codec.encode_sources(["Guten Morgen.", "Der Hund schläft im Garten."])
    assert src.dtype == np.int64 and mask.dtype == np.int64 and src.shape == mask.shape
    lengths = mask.sum(axis=1)
    assert lengths[0] < lengths[1] == src.shape[1]
    assert src[0, lengths[0] - 1] == tokenizer.token_to_id(EOS)
    assert (src[0, lengths[0]:] == tokenizer.token_to_id(PAD)).all()
    assert truncated == [False, False]
    _, long_mask, flags = codec.encode_sources(["Der Hund schläft im Garten. " * 4])
    assert long_mask.shape[1] == 24 and flags == [True]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translate_copy_model_returns_sources_in_input_order(codec, tokenizer, beam_size):
    calls = []
    texts = ["Der Hund schläft im Garten.", "Guten Morgen.", "Wie spät ist es?"]
    model = copying_model(tokenizer.get_vocab_size(), tokenizer.token_to_id(EOS), calls)
    out = codec.translate(texts, model, beam_size=beam_size, batch_size=2)
    assert [t.text for t in out] == texts
    assert all(t.token_ids[-1] == tokenizer.token_to_id(EOS) for t in out)
    assert calls.count("encoder") == 2  # once per batch of two


def test_max_output_length_cuts_and_detokenize_stops_at_eos(codec, tokenizer):
    model = copying_model(tokenizer.get_vocab_size(), tokenizer.token_to_id(EOS), [])
    out = codec.translate(["Der Hund schläft im Garten."], model, max_output_length=2)
    assert len(out[0].token_ids) == 2 and out[0].text
    eos = tokenizer.token_to_id(EOS)
    ids = tokenizer.encode("Guten Morgen.").ids  # ends with EOS
    assert codec.detokenize(ids + [eos] + tokenizer.encode("Haus").ids) == "Guten Morgen."


def test_from_files_reads_parameters(tmp_path, tokenizer):
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    codec = TranslationTokenizer.from_files(tmp_path / "tokenizer.json", {
        "tokenizer": "tokenizer.json", "pad_id": 0, "start_id": 1, "eos_id": 2, "max_source_length": 7,
        "max_output_length": 9, "source_language": "de"})
    assert codec.max_source_length == 7 and codec.spec.max_output_length == 9
    assert codec.spec.suppressed_ids == (0, 1)
