"""The Marian (opus-mt) import path on a tiny randomly initialised Marian built here (no download):
the converted tokenizer and the exported graphs reproduce Hugging Face's tokenizer and generate()."""

import json

import pytest
import torch

from app.protocol.model_config import load_config
from app.tasks.translation.processing import TranslationTokenizer
from app.training.recipes.marian import import_marian
from app.training.recipes.translation import onnx_runner

transformers = pytest.importorskip("transformers")
sentencepiece = pytest.importorskip("sentencepiece")

GERMAN = ["Guten Morgen.", "Wie spät ist es?", "Das Haus ist klein.", "Ich habe keine Zeit.", "Der Hund schläft."]
ENGLISH = ["Good morning.", "What time is it?", "The house is small.", "I have no time.", "The dog sleeps."]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("marian")
    for name, texts in (("source", GERMAN), ("target", ENGLISH)):
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts * 20), model_prefix=str(folder / name), vocab_size=40, model_type="unigram",
            hard_vocab_limit=False, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, minloglevel=2)
        (folder / f"{name}.model").rename(folder / f"{name}.spm")
    vocab = {"</s>": 0, "<unk>": 1}  # Marian's layout: one id space for both languages, <pad> last
    for name in ("source", "target"):
        processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / f"{name}.spm"))
        for i in range(processor.get_piece_size()):
            vocab.setdefault(processor.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    config = transformers.MarianConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=len(vocab) - 1, eos_token_id=0, decoder_start_token_id=len(vocab) - 1, forced_eos_token_id=None)
    torch.manual_seed(0)
    transformers.MarianMTModel(config).save_pretrained(folder)
    return folder


def test_import_matches_hugging_face_tokenizer_and_generate(checkpoint, tmp_path):
    version_dir = import_marian(checkpoint, "translation-opus-test", tmp_path)
    config = load_config(version_dir.parent / "config.yaml", "translation-opus-test")
    card = json.loads((version_dir / "card.json").read_text())
    assert [p["max_abs_diff"] <= 1e-4 for p in card["parity"][:2]] == [True, True]
    assert card["parity"][2]["sentences_with_different_tokens"] == 0

    codec = TranslationTokenizer.from_files(version_dir / "tokenizer.json", config.parameters)
    hf_tokenizer = transformers.MarianTokenizer(str(checkpoint / "source.spm"), str(checkpoint / "target.spm"),
                                                str(checkpoint / "vocab.json"))
    texts = ["Guten Morgen.", "Der Hund schläft. Wie spät ist es?", "Ich habe Zeit."]
    src_ids, _, _ = codec.encode_sources(texts)
    assert src_ids.tolist() == hf_tokenizer(texts, padding=True)["input_ids"]

    model = transformers.MarianMTModel.from_pretrained(checkpoint).eval()
    run = onnx_runner(version_dir)
    for beam_size in (1, 3):
        with torch.no_grad():
            generated = model.generate(**hf_tokenizer(texts, return_tensors="pt", padding=True), num_beams=beam_size,
                                       do_sample=False, max_new_tokens=8, early_stopping=False)
        expected = [[t for t in row[1:] if t != config.parameters["pad_id"]] for row in generated.tolist()]
        ours = [t.token_ids for t in codec.translate(texts, run, beam_size=beam_size, max_output_length=8)]
        assert ours == expected
