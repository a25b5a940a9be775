"""Translation task: encoder once, then a decode loop over the decoder_step graph."""

from app.tasks.translation.decoding import DecodingSpec, GraphRunner, beam_search, greedy_decode
from app.tasks.translation.processing import Translation, TranslationCodec

__all__ = ["DecodingSpec", "GraphRunner", "Translation", "TranslationCodec", "beam_search", "greedy_decode"]
