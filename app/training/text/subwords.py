"""Shared German+English subword vocabulary (Hugging Face ``tokenizers`` Unigram model), saved as a
``tokenizer.json`` that the serving code reads with ``tokenizers`` alone."""

from __future__ import annotations

import io
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0..3 in this order


def train_unigram_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Unigram LM pieces over Metaspace words (so decoding restores spaces exactly); every encoded
    sequence ends with ``</s>`` (the source side needs it; the target side is built explicitly).

    The pieces and their scores are learnt by sentencepiece's Unigram trainer, which gives the same
    vocabulary every run, and loaded into a ``tokenizers`` Unigram model, which is what serving reads.
    (``tokenizers``' own UnigramTrainer returned a different vocabulary in every process: hash-map order.)"""
    import sentencepiece as spm  # training only (the train extra); serving reads tokenizer.json

    normalizer = normalizers.NFKC()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([normalizer.normalize_str(t) for t in texts]), model_writer=model,
        model_type="unigram", vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=True, split_by_whitespace=True,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece=PAD, bos_piece=BOS, eos_piece=EOS, unk_piece=UNK,
        num_threads=1, max_sentence_length=1 << 16, minloglevel=2,
    )  # fmt: skip
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(pieces.id_to_piece(i), pieces.get_score(i)) for i in range(pieces.get_piece_size())]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=SPECIAL_TOKENS.index(UNK)))
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 2)])
    for index, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != index:
            raise RuntimeError(f"special token {token} got id {tokenizer.token_to_id(token)}, expected {index}")
    return tokenizer


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A small BERT-style (uncased WordPiece, ``[CLS] text [SEP]``) tokenizer: the stand-in for the
    pretrained vocabulary when a classifier is trained from scratch (smoke runs, no download)."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special,
                                                                   show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                                                 ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    return tokenizer
