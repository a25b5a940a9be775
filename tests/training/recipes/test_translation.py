"""The translation recipe: the user TSV format and split on a file the test writes, the dictionary
baseline, and the recipe end to end (smoke profile) in the shared smoke repository."""

import dataclasses
import json
import random

import numpy as np

from app.protocol.model_config import load_config
from app.tasks.translation.decoding import greedy_tokens
from app.tasks.translation.processing import TranslationTokenizer
from app.training.export import ort_session
from app.training.recipes.translation import (PROFILES, TranslationData, build_model, build_tokenizer, dictionary_baseline,
                                              load_data, onnx_runner, train)
from app.training.data.ding import Pair
from app.training.splits import Split
from app.training.text.subwords import PAD

NOUNS = [("Hund", "dog"), ("Haus", "house"), ("Garten", "garden"), ("Auto", "car"), ("Baum", "tree")]
ADJECTIVES = [("klein", "small"), ("groß", "big"), ("alt", "old"), ("neu", "new")]


def write_pairs(path):
    lines = [f"Der {de} ist {de_adj}.\tThe {en} is {en_adj}.\n"
             for de, en in NOUNS for de_adj, en_adj in ADJECTIVES]
    lines += [f"Wo ist der {de}?\tWhere is the {en}?\n" for de, en in NOUNS]
    lines *= 8  # repeated pairs: the split must still keep each German sentence on one side
    random.Random(0).shuffle(lines)
    path.write_text("".join(lines), encoding="utf-8")


def test_split_keeps_every_source_sentence_on_one_side(tmp_path):
    write_pairs(tmp_path / "pairs.tsv")
    data = load_data(PROFILES["smoke"], tmp_path / "pairs.tsv")
    train = {p.source for p in data.part("train")}
    assert train.isdisjoint(p.source for p in data.part("test") + data.part("validation"))
    assert data.part("test") and not data.phrases


def test_dictionary_baseline_translates_word_by_word():
    data = TranslationData(pairs=[], split=Split([], [], []),
                           phrases=[Pair("Hund", "dog"), Pair("klein", "small"), Pair("klein", "little"),
                                    Pair("klein", "small"), Pair("der Hund", "the dog")])
    assert dictionary_baseline(data, ["Der Hund ist klein."]) == ["Der dog ist small."]


def test_smoke_run_publishes_two_graphs_that_decode_like_torch(smoke_repository):
    version_dir = smoke_repository / "translation-de-en" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["card.json", "decoder_step.onnx", "encoder.onnx",
                                                             "greedy.onnx", "tokenizer.json"]
    config = load_config(version_dir.parent / "config.yaml", "translation-de-en")
    assert config.graphs == {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx", "greedy": "greedy.onnx"}
    card = json.loads((version_dir / "card.json").read_text())
    encoder_parity, step_parity, decode_parity, greedy_parity = card["parity"]
    assert encoder_parity["max_abs_diff"] <= 1e-4 and step_parity["max_abs_diff"] <= 1e-4
    assert step_parity["top_k_mismatched_rows"] == 0 and decode_parity["sentences_with_different_tokens"] == 0
    # the in-graph greedy search (greedy.onnx) gives the decode loop's tokens on the held-out sentences
    assert greedy_parity["sentences_with_different_tokens"] == 0 and greedy_parity["decoded_tokens"] > 0
    assert set(card["graphs"]) == {"encoder", "decoder_step", "greedy"}
    assert {"bleu", "chrf", "bleu_beam4", "chrf_beam4"} <= set(card["metrics"])
    assert set(card["baselines"]["dictionary_word_by_word"]) == {"bleu", "chrf"}
    assert card["model_selection"]["selected_on"] == "validation" and card["model_selection"]["test_reads"] == 1

    codec = TranslationTokenizer.from_files(version_dir / "tokenizer.json", config.parameters)
    run = onnx_runner(version_dir)
    texts = ["Der Hund ist klein.", "Wo ist das große alte Haus im Garten?", "Haus"]
    for beam_size in (1, 3):
        out = codec.translate(texts, run, beam_size=beam_size, max_output_length=6)
        assert len(out) == 3 and all(len(t.token_ids) <= 6 for t in out)
    memory = run("encoder", {"src_ids": codec.encode_sources(texts)[0]})[0]
    assert memory.dtype == np.float32 and memory.shape[0] == 3
    src_ids, mask, _ = codec.encode_sources(texts)
    tokens = ort_session(version_dir / "greedy.onnx").run(None, {"src_ids": src_ids, "memory_mask": mask})[0]
    loop = codec.translate(texts, run, beam_size=1)
    assert greedy_tokens(tokens, codec.spec.eos_id) == [t.token_ids for t in loop]


def test_training_records_when_the_clock_takes_over_the_rate_schedule(tmp_path):
    """Reproducible only while the step count drives the schedule: a run the time cap overtakes says
    from which step, and a run that keeps pace says none."""
    write_pairs(tmp_path / "pairs.tsv")
    profile = PROFILES["smoke"]
    data = load_data(profile, tmp_path / "pairs.tsv")
    tokenizer = build_tokenizer(data, profile)
    pad_id = tokenizer.token_to_id(PAD)

    paced = train(build_model(profile, tokenizer.get_vocab_size(), pad_id), tokenizer, data, profile)
    assert paced.steps == profile.steps and paced.clock_led_from_step is None and not paced.stopped_by_time_cap

    slow = dataclasses.replace(profile, steps=1000, time_cap_s=0.2, warmup_steps=0)
    overtaken = train(build_model(slow, tokenizer.get_vocab_size(), pad_id), tokenizer, data, slow)
    assert overtaken.clock_led_from_step is not None and overtaken.clock_led_from_step <= overtaken.steps < 1000
    assert overtaken.stopped_by_time_cap
