"""Import a pretrained Hugging Face Marian (opus-mt) translation checkpoint as a served model, through
the same two-graph export (``encoder``, ``decoder_step``), parity checks and serving decode loop as the
translation recipe. A real checkpoint (e.g. ``Helsinki-NLP/opus-mt-de-en``, downloaded by the user
with ``huggingface-cli download`` or ``git clone``) is a folder holding ``config.json``,
the weights, ``source.spm``, ``target.spm`` and ``vocab.json``.

    python -m app.training.recipes.marian CHECKPOINT_DIR --name translation-opus-de-en [--repository models]

Marian's two SentencePiece models share one id space (``vocab.json``); they are converted into a single
``tokenizer.json`` (Unigram pieces in Marian id order, scored by the source model) that the serving
code reads with ``tokenizers`` alone: source pieces encode the input, every piece decodes the output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from torch import nn

from app.tasks.translation.processing import TranslationTokenizer
from app.training.card import machine, write_card
from app.training.progress import log, setup_logging
from app.training.recipes.translation import (
    CODEC_PARAMETERS,
    TOKENIZER_FILE,
    export_seq2seq,
    translation_model_config,
)
from app.training.versioning import ensure_config, next_version, publish, staging_dir

UNSEEN_PIECE_SCORE = -100.0  # target-only pieces: never preferred when encoding a source


class MarianEncoderGraph(nn.Module):
    """``encoder``: (src_ids) -> memory; the padding mask is derived from the pad id, as Marian's
    tokenizer pads with it."""

    def __init__(self, model: nn.Module, pad_id: int):
        super().__init__()
        self.encoder = model.get_encoder()
        self.pad_id = pad_id

    def forward(self, src_ids: torch.Tensor) -> torch.Tensor:
        mask = (src_ids != self.pad_id).long()
        return self.encoder(input_ids=src_ids, attention_mask=mask, return_dict=True).last_hidden_state


class MarianDecoderStepGraph(nn.Module):
    """``decoder_step``: (tgt_prefix, memory, memory_mask) -> logits of the next token (no cache: the
    prefix is recomputed each step, which keeps the graph stateless for the dynamic batcher)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.get_decoder()
        self.lm_head = model.lm_head
        self.register_buffer("final_logits_bias", model.final_logits_bias.clone(), persistent=False)

    def forward(self, tgt_prefix: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.decoder(input_ids=tgt_prefix, encoder_hidden_states=memory, encoder_attention_mask=memory_mask,
                              use_cache=False, return_dict=True).last_hidden_state
        return self.lm_head(hidden[:, -1, :]) + self.final_logits_bias


def marian_tokenizer(checkpoint: Path) -> Tokenizer:
    """One ``tokenizers`` Unigram tokenizer in Marian's id space (``vocab.json``), scored by ``source.spm``,
    appending ``</s>`` to every encoded source like Marian's own tokenizer."""
    import sentencepiece

    vocab: dict[str, int] = json.loads((checkpoint / "vocab.json").read_text(encoding="utf-8"))
    source = sentencepiece.SentencePieceProcessor(model_file=str(checkpoint / "source.spm"))
    scores = {source.id_to_piece(i): source.get_score(i) for i in range(source.get_piece_size())}
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError(f"{checkpoint / 'vocab.json'}: ids are not 0..{len(by_id) - 1}")
    pieces = [(piece, float(scores.get(piece, UNSEEN_PIECE_SCORE))) for piece, _ in by_id]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=vocab["<unk>"], byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    tokenizer.add_special_tokens(["</s>", "<unk>", "<pad>"])
    return tokenizer


def codec_parameters(config: Any, max_source_length: int = 512, max_output_length: int = 256) -> dict[str, Any]:
    """Decoding settings of a Marian config: decoding starts from the pad id, which is never generated."""
    return {
        "tokenizer": TOKENIZER_FILE,
        "pad_id": int(config.pad_token_id),
        "start_id": int(config.decoder_start_token_id),
        "eos_id": int(config.eos_token_id),
        "suppressed_ids": [int(config.pad_token_id)],
        "max_source_length": min(max_source_length, int(config.max_position_embeddings)),
        "max_output_length": min(max_output_length, int(config.max_position_embeddings) - 1),
    }


def import_marian(checkpoint: Path, name: str, repository: Path = Path("models"),
                  parity_sources: list[str] | None = None) -> Path:
    """Export a Marian checkpoint folder into ``repository/name/<next version>``; returns the version folder."""
    from transformers import MarianMTModel

    checkpoint = Path(checkpoint)
    started = time.perf_counter()
    model = MarianMTModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    tokenizer = marian_tokenizer(checkpoint)
    parameters = codec_parameters(model.config)
    codec = TranslationTokenizer(tokenizer, **{k: parameters[k] for k in CODEC_PARAMETERS if k in parameters})
    sources = parity_sources or ["Guten Morgen.", "Wie spät ist es?", "Das Haus ist klein, aber sehr gemütlich.",
                                 "Ich habe keine Zeit."]
    source_batch, memory_mask, _ = codec.encode_sources(sources)
    model_dir = Path(repository) / name
    ensure_config(model_dir, translation_model_config(parameters))
    with staging_dir(repository, name) as staging:
        exported = export_seq2seq(MarianEncoderGraph(model, parameters["pad_id"]), MarianDecoderStepGraph(model),
                                  staging, source_batch, memory_mask, codec.spec)
        tokenizer.save(str(staging / TOKENIZER_FILE))
        version = next_version(model_dir)
        write_card(staging, {
            "model": name, "version": version, "task": "translation",
            "recipe": __name__, "imported_from": str(checkpoint),
            "architecture": model.config.model_type,
            "parameter_count": sum(p.numel() for p in model.parameters()),
            "parity": exported.parity,
            "graphs": {graph_name: graph.as_card() for graph_name, graph in exported.graphs.items()},
            "assets": [TOKENIZER_FILE],
            "metrics": {}, "evaluation_protocol": "not evaluated here: an imported checkpoint keeps its published figures",
            "export_seconds": round(time.perf_counter() - started, 1),
            "environment": machine(),
        })  # fmt: skip
        version_dir = publish(staging, version)
    log.info("imported %s as %s", checkpoint, version_dir)
    return version_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.training.recipes.marian", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="Marian checkpoint folder (config.json, weights, *.spm, vocab.json)")
    parser.add_argument("--name", required=True, help="model name in the repository, e.g. translation-opus-de-en")
    parser.add_argument("--repository", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    setup_logging()
    print(import_marian(args.checkpoint, args.name, args.repository))
    return 0


if __name__ == "__main__":
    sys.exit(main())
