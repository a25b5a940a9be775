"""Recipe ``translation`` -> model ``translation-de-en``: a small Transformer trained from scratch
on the Ding dictionary's German-English example sentences.

Data: Debian ``trans-de-en`` (``/usr/share/trans/de-en``, GPL-2+), or a user TSV of
``source<TAB>target`` pairs. Sentence pairs (both sides end in . ? !) are split 90/3/7 by unique
German sentence, so no test sentence is seen in training in any translation. Ding's word/phrase
pairs may be mixed in as extra training data (a small share per epoch; half-and-half hurt).
Baseline on the same test sentences: word-by-word lookup in Ding's single-word pairs.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import sacrebleu
import torch
from tokenizers import Tokenizer
from torch.nn import functional as F

from app.tasks.translation.decoding import (
    GREEDY_FILE, GREEDY_GRAPH, DecodingSpec, GraphRunner, greedy_decode, greedy_tokens,
)  # fmt: skip
from app.tasks.translation.processing import TranslationTokenizer
from app.training.data.ding import DING_PATH, Pair, read_ding, read_pairs_tsv
from app.training.export import export_onnx, graph_facts, ort_session
from app.training.greedy_graph import compose_greedy
from app.training.nets.seq2seq import DecoderStepGraph, EncoderGraph, Seq2SeqShape, Seq2SeqTransformer
from app.training.parity import ParityError, check_parity
from app.training.progress import log, progress
from app.training.recipe import DataSource, DataSummary, Evaluation, ExportResult, HeldOut, Recipe
from app.training.schedule import warmup_then_linear_decay
from app.training.splits import Split, group_split
from app.training.text.subwords import BOS, EOS, PAD, train_unigram_tokenizer

MODEL_NAME = "translation-de-en"


@dataclass(frozen=True)
class TranslationProfile:
    max_sentence_pairs: int | None = None  # None: all
    vocab_size: int = 6000
    # small enough to take ~1,000 updates in the budget on 2 busy cores (a 8.4M model managed ~450)
    shape: dict = field(default_factory=lambda: {"d_model": 192, "heads": 4, "encoder_layers": 3, "decoder_layers": 2,
                                                 "feedforward": 768})
    phrase_pairs_per_epoch: float = 0.25  # share of word/phrase pairs per epoch, relative to sentence pairs
    max_phrase_words: int = 3
    tokens_per_batch: int = 3000  # padded source + target tokens per batch
    # Measured: 3.4-3.5 steps/s on 2 idle cores (8,000 steps in 38-40 minutes), 1.7-2.4 on slower or shared
    # ones, so the step count (deterministic) binds on an idle machine and the time cap only on a slow or busy
    # one. A cap of 2,400 s asked for 3.33 steps/s, which a fresh-clone run (3.37 on average) met only just:
    # its loss parted from a step-driven run's by step 900 and its chrF came out 0.06 apart. 2,520 s leaves 6%
    # slack and still fits the 45-minute budget with data, export and evaluation (41 s in that run).
    # Validation chrF was still rising at 5,000 (greedy 13.3 / 19.4 / 22.6 / 25.1 at 1k / 2k / 3k / 5k steps)
    steps: int = 8000
    time_cap_s: float = 2520.0  # stops early (and says so in the card) on a slow or busy machine
    learning_rate: float = 1.5e-3
    warmup_steps: int = 150
    label_smoothing: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64  # training pairs longer than this (in tokens) are skipped
    bf16_autocast: bool = False
    seed: int = 0
    test_fraction: float = 0.07
    validation_fraction: float = 0.03
    max_output_length: int = 96


PROFILES = {
    "full": TranslationProfile(),
    "smoke": TranslationProfile(
        max_sentence_pairs=300, vocab_size=300, steps=12, warmup_steps=2, tokens_per_batch=600, time_cap_s=60,
        phrase_pairs_per_epoch=0.2, test_fraction=0.1, validation_fraction=0.05, max_output_length=16,
        shape={"d_model": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "feedforward": 64},
    ),
}


@dataclass
class TranslationData:
    pairs: list[Pair]
    split: Split
    phrases: list[Pair]  # extra training pairs (dictionary words/phrases); empty for user data

    def part(self, name: str) -> list[Pair]:
        return [self.pairs[i] for i in getattr(self.split, name)]

    def sizes(self) -> dict[str, int]:
        sizes = {name: len(getattr(self.split, name)) for name in ("train", "validation", "test")}
        return {**sizes, "phrase_pairs_available": len(self.phrases)}


def load_data(profile: TranslationProfile, tsv_path: Path | None = None,
              ding_path: Path | None = None) -> TranslationData:
    if tsv_path is not None:
        pairs, phrases = read_pairs_tsv(tsv_path), []
    else:
        pairs, phrases = read_ding(ding_path) if ding_path else read_ding()
        phrases = [p for p in phrases
                   if len(p.source.split()) <= profile.max_phrase_words and "/" not in p.source + p.target]
    rng = random.Random(profile.seed)
    if profile.max_sentence_pairs is not None and len(pairs) > profile.max_sentence_pairs:
        pairs = rng.sample(pairs, profile.max_sentence_pairs)
    split = group_split([p.source for p in pairs], validation_fraction=profile.validation_fraction,
                        test_fraction=profile.test_fraction, seed=profile.seed)
    held_out = {pairs[i].source for i in split.validation + split.test}
    phrases = [p for p in phrases if p.source not in held_out]
    return TranslationData(pairs, split, phrases)


# ------------------------------------------------------------------------------ baseline

_WORD = re.compile(r"\w+|[^\w\s]")


def dictionary_baseline(data: TranslationData, sources: list[str]) -> list[str]:
    """Word-by-word: each German word replaced by the English side of its most frequent single-word
    Ding pair (case-insensitive); unknown words and punctuation are copied."""
    lexicon: dict[str, Counter] = {}
    for pair in data.phrases:
        if " " not in pair.source:
            lexicon.setdefault(pair.source.lower(), Counter())[pair.target] += 1
    best = {word: counts.most_common(1)[0][0] for word, counts in lexicon.items()}
    outputs = []
    for sentence in sources:
        words = [best.get(token.lower(), token) for token in _WORD.findall(sentence)]
        outputs.append(re.sub(r"\s+([.,?!;:])", r"\1", " ".join(words)))
    return outputs


# ------------------------------------------------------------------------------ training

@dataclass
class TrainingStats:
    steps: int = 0
    seconds: float = 0.0
    stopped_by_time_cap: bool = False
    # the first step at which the clock ran ahead of the step count and so set the rate schedule; from
    # there on the weights depend on the machine's speed. None: the run was step-driven (reproducible).
    clock_led_from_step: int | None = None
    losses: list[float] = field(default_factory=list)
    tokenizer_seconds: float = 0.0


def build_tokenizer(data: TranslationData, profile: TranslationProfile):
    texts = [t for p in data.part("train") for t in (p.source, p.target)]
    # a slice of the dictionary's phrases widens the vocabulary statistics without swamping them
    texts += [t for p in data.phrases[: len(texts) // 2] for t in (p.source, p.target)]
    return train_unigram_tokenizer(texts, profile.vocab_size)


def _encode_pairs(tokenizer, pairs: list[Pair], max_length: int) -> list[tuple[list[int], list[int]]]:
    sources = tokenizer.encode_batch([p.source for p in pairs])
    targets = tokenizer.encode_batch([p.target for p in pairs])  # ends with </s>
    encoded = []
    for source, target in zip(sources, targets):
        if len(source.ids) <= max_length and len(target.ids) < max_length:
            encoded.append((source.ids, target.ids))
    return encoded


def _token_batches(examples: list[tuple[list[int], list[int]]], tokens_per_batch: int,
                   rng: random.Random) -> list[list[int]]:
    """Batches of similar-length pairs, each holding about ``tokens_per_batch`` padded tokens."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0]), rng.random()))
    batches, current, longest = [], [], 0
    for index in order:
        length = max(len(examples[index][0]), len(examples[index][1]) + 1)
        if current and 2 * max(longest, length) * (len(current) + 1) > tokens_per_batch:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def _collate(examples: list[tuple[list[int], list[int]]], batch: list[int], pad_id: int, bos_id: int):
    source_width = max(len(examples[i][0]) for i in batch)
    target_width = max(len(examples[i][1]) for i in batch)
    source = torch.full((len(batch), source_width), pad_id, dtype=torch.long)
    target_in = torch.full((len(batch), target_width), pad_id, dtype=torch.long)
    target_out = torch.full((len(batch), target_width), pad_id, dtype=torch.long)
    for row, index in enumerate(batch):
        src, tgt = examples[index]
        source[row, : len(src)] = torch.tensor(src)
        target_in[row, : len(tgt)] = torch.tensor([bos_id] + tgt[:-1])
        target_out[row, : len(tgt)] = torch.tensor(tgt)
    return source, target_in, target_out


def build_model(profile: TranslationProfile, vocab_size: int, pad_id: int) -> Seq2SeqTransformer:
    torch.manual_seed(profile.seed)
    return Seq2SeqTransformer(Seq2SeqShape(vocab_size=vocab_size, pad_id=pad_id, **profile.shape))


def _batch_stream(sentences: list[tuple[list[int], list[int]]], tokenizer, data: TranslationData,
                  profile: TranslationProfile, rng: random.Random):
    """Endless (examples, batch indices): each epoch is every training sentence pair plus a fresh
    random share of dictionary phrase pairs."""
    phrase_count = min(int(profile.phrase_pairs_per_epoch * len(sentences)), len(data.phrases))
    while True:
        extra = rng.sample(data.phrases, phrase_count) if phrase_count else []
        examples = sentences + _encode_pairs(tokenizer, extra, profile.max_length)
        for batch in _token_batches(examples, profile.tokens_per_batch, rng):
            yield examples, batch


def train(model: Seq2SeqTransformer, tokenizer, data: TranslationData, profile: TranslationProfile) -> TrainingStats:
    """AdamW, warm-up then linear decay until ``profile.steps`` or ``profile.time_cap_s``, whichever
    comes first; label-smoothed cross-entropy."""
    torch.manual_seed(profile.seed)
    rng = random.Random(profile.seed)
    pad_id, bos_id = tokenizer.token_to_id(PAD), tokenizer.token_to_id(BOS)
    sentences = _encode_pairs(tokenizer, data.part("train"), profile.max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=profile.learning_rate, betas=(0.9, 0.98),
                                  weight_decay=profile.weight_decay)
    stats = TrainingStats()
    started = time.perf_counter()
    stream = _batch_stream(sentences, tokenizer, data, profile, rng)
    running = None
    model.train()
    for _ in progress(range(profile.steps), desc=f"{MODEL_NAME} train", unit="step"):
        examples, batch = next(stream)
        source, target_in, target_out = _collate(examples, batch, pad_id, bos_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=profile.bf16_autocast):
            logits = model(source, target_in)
        loss = F.cross_entropy(logits.float().flatten(0, 1), target_out.flatten(), ignore_index=pad_id,
                               label_smoothing=profile.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        stats.steps += 1
        # progress = the larger of steps done and time used: with a free machine the step count binds
        # (deterministic); on a slow or shared one the time cap does, and the rate still decays to its floor
        step_share, time_share = stats.steps / profile.steps, (time.perf_counter() - started) / profile.time_cap_s
        # (during warm-up the rate ignores progress, so only a lead after it changes anything)
        if time_share > step_share and stats.steps >= profile.warmup_steps and stats.clock_led_from_step is None:
            stats.clock_led_from_step = stats.steps
            log.warning("%s: slower than %.2f steps/s at step %d: the time cap sets the rate schedule from here, "
                        "so this run's weights depend on the machine's speed (recorded in the card)", MODEL_NAME,
                        profile.steps / profile.time_cap_s, stats.steps)
        done = max(step_share, time_share)
        for group in optimizer.param_groups:
            group["lr"] = profile.learning_rate * warmup_then_linear_decay(stats.steps, done, profile.warmup_steps)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if stats.steps % 100 == 0:
            stats.losses.append(round(running, 4))
            log.info("%s step %d/%d: smoothed loss %.3f", MODEL_NAME, stats.steps, profile.steps, running)
        if time.perf_counter() - started > profile.time_cap_s:
            stats.stopped_by_time_cap = stats.steps < profile.steps
            if stats.stopped_by_time_cap:
                log.warning("%s: time cap of %.0f s reached after %d of %d steps", MODEL_NAME,
                            profile.time_cap_s, stats.steps, profile.steps)
            break
    model.eval()
    stats.seconds = time.perf_counter() - started
    return stats


# ------------------------------------------------------------------------------ export and evaluation

ENCODER_FILE = "encoder.onnx"
DECODER_STEP_FILE = "decoder_step.onnx"
TOKENIZER_FILE = "tokenizer.json"
PARITY_SENTENCES = 16


def export_seq2seq(encoder: torch.nn.Module, decoder_step: torch.nn.Module, version_dir: Path,
                   source_batch: np.ndarray, memory_mask: np.ndarray, spec: DecodingSpec) -> ExportResult:
    """Export ``encoder(src_ids) -> memory`` and ``decoder_step(tgt_prefix, memory, memory_mask)
    -> next_logits``, check each graph against torch on ``source_batch`` (held-out sentences), and
    check that greedy decoding through the serving loop gives the same tokens with torch and with
    ONNX Runtime. Shared by the trained model and imported Marian checkpoints."""
    version_dir = Path(version_dir)
    src = torch.from_numpy(source_batch)
    with torch.no_grad():
        memory = encoder(src)
    # examples: batch >= 2 and target length >= 2, or the exporter specialises those axes
    prefix = torch.full((src.shape[0], 3), spec.start_id, dtype=torch.long)
    mask = torch.from_numpy(memory_mask)
    encoder_graph = export_onnx(encoder, (src,), version_dir / ENCODER_FILE, ["src_ids"], ["memory"],
                                dynamic_axes={"src_ids": {1: "source"}})
    decoder_graph = export_onnx(
        decoder_step, (prefix, memory, mask), version_dir / DECODER_STEP_FILE,
        ["tgt_prefix", "memory", "memory_mask"], ["next_logits"],
        dynamic_axes={"tgt_prefix": {1: "target"}, "memory": {1: "source"}, "memory_mask": {1: "source"}},
    )  # fmt: skip
    parity = [check_parity(encoder, version_dir / ENCODER_FILE, {"src_ids": source_batch})]
    parity.append(check_parity(decoder_step, version_dir / DECODER_STEP_FILE,
                               {"tgt_prefix": prefix.numpy(), "memory": memory.numpy(), "memory_mask": memory_mask}))
    parity.append(decode_parity(encoder, decoder_step, version_dir, source_batch, memory_mask, spec))
    greedy = compose_greedy(onnx.load(version_dir / ENCODER_FILE), onnx.load(version_dir / DECODER_STEP_FILE), spec)
    onnx.save(greedy, version_dir / GREEDY_FILE)
    parity.append(greedy_parity(version_dir, source_batch, memory_mask, spec))
    graphs = {"encoder": encoder_graph, "decoder_step": decoder_graph,
              GREEDY_GRAPH: graph_facts(version_dir / GREEDY_FILE, "composed from encoder + decoder_step (greedy_graph)")}
    return ExportResult(graphs=graphs, parity=parity)


def torch_runner(encoder: torch.nn.Module, decoder_step: torch.nn.Module) -> GraphRunner:
    graphs = {"encoder": encoder, "decoder_step": decoder_step}

    @torch.no_grad()
    def run(name: str, feeds):  # type: ignore[no-untyped-def]
        return [graphs[name](*(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values())).numpy()]

    return run


def onnx_runner(version_dir: Path, files: dict[str, str] | None = None) -> GraphRunner:
    files = files or {"encoder": ENCODER_FILE, "decoder_step": DECODER_STEP_FILE}
    sessions = {name: ort_session(Path(version_dir) / file) for name, file in files.items()}
    return lambda name, feeds: sessions[name].run(None, dict(feeds))


def decode_parity(encoder: torch.nn.Module, decoder_step: torch.nn.Module, version_dir: Path,
                  source_batch: np.ndarray, memory_mask: np.ndarray, spec: DecodingSpec) -> dict[str, Any]:
    """Greedy decoding of the same held-out sentences through torch and through ONNX Runtime must
    produce identical tokens (raises ParityError otherwise)."""
    decoded = {}
    for label, run in (("torch", torch_runner(encoder, decoder_step)), ("onnx", onnx_runner(version_dir))):
        memory = np.asarray(run("encoder", {"src_ids": source_batch})[0])
        decoded[label] = greedy_decode(run, memory, memory_mask, spec)
    mismatched = sum(a != b for a, b in zip(decoded["torch"], decoded["onnx"]))
    figures = {"graph": "encoder + decoder_step (greedy decode loop)", "batch": int(source_batch.shape[0]),
               "decoded_tokens": sum(len(t) for t in decoded["onnx"]), "sentences_with_different_tokens": mismatched}
    log.info("decode parity: %d of %d sentences differ", mismatched, source_batch.shape[0])
    if mismatched:
        raise ParityError(f"greedy decoding differs between torch and ONNX Runtime on {mismatched} of "
                          f"{source_batch.shape[0]} held-out sentences")
    return figures


def greedy_parity(version_dir: Path, source_batch: np.ndarray, memory_mask: np.ndarray,
                  spec: DecodingSpec) -> dict[str, Any]:
    """The in-graph greedy search must produce the Python loop's tokens over the same exported graphs
    on the held-out sentences (raises ParityError otherwise)."""
    run = onnx_runner(version_dir)
    memory = np.asarray(run("encoder", {"src_ids": source_batch})[0])
    loop = greedy_decode(run, memory, memory_mask, spec)
    tokens = ort_session(Path(version_dir) / GREEDY_FILE).run(None, {"src_ids": source_batch, "memory_mask": memory_mask})[0]
    graph = greedy_tokens(tokens, spec.eos_id)
    mismatched = sum(a != b for a, b in zip(loop, graph))
    log.info("in-graph greedy parity: %d of %d sentences differ", mismatched, source_batch.shape[0])
    if mismatched:
        raise ParityError(f"in-graph greedy search differs from the decode loop on {mismatched} of "
                          f"{source_batch.shape[0]} held-out sentences")
    return {"graph": f"{GREEDY_FILE} (greedy search in an ONNX Loop) vs the decode loop", "batch": int(source_batch.shape[0]),
            "decoded_tokens": sum(len(t) for t in graph), "sentences_with_different_tokens": mismatched}


def translation_metrics(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    return {"bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2)}


class TranslationRecipe(Recipe):
    name = MODEL_NAME
    task = "translation"
    expected_minutes = 45.0
    source = DataSource(
        name="Ding German-English dictionary 1.9: example sentence pairs (plus word/phrase pairs as extra data)",
        origin="Debian package trans-de-en (/usr/share/trans/de-en)",
        licence="GPL-2.0-or-later",
        url="https://www-user.tu-chemnitz.de/~fri/ding/",
    )
    selection = ("fixed step budget and time cap, set by validation chrF (greedy); the last step is exported; "
                 "nothing chosen on test")

    def __init__(self, profile="full", data_path=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(profile, data_path)
        self.settings = PROFILES[self.profile]
        self.hyperparameters = {**asdict(self.settings), "optimizer": "AdamW (0.9, 0.98), warm-up + linear decay",
                                "loss": "label-smoothed cross-entropy", "tokenizer": "shared Unigram (tokenizers)"}

    def load_data(self) -> DataSummary:
        self.data = load_data(self.settings, self.data_path)
        self.test = HeldOut(self.data.part("test"))
        # the tokenizer is trained on the training side only, before the model is built
        self.tokenizer = build_tokenizer(self.data, self.settings)
        split = self.settings
        return DataSummary(
            location=str(self.data_path or DING_PATH),
            splits=self.data.sizes(),
            split_method=f"{1 - split.test_fraction - split.validation_fraction:.0%}/{split.validation_fraction:.0%}/"
            f"{split.test_fraction:.0%} train/validation/test by unique German sentence (all translations of a "
            f"sentence on one side); dictionary phrase pairs whose German side is a held-out sentence are dropped; "
            f"seed {split.seed}",
            notes=["sentence pair = both sides end in . ? or !; Ding annotations ({f}, [Br.], (...), <...>) removed",
                   f"{len(self.data.phrases)} word/phrase pairs of at most {split.max_phrase_words} German words "
                   f"available; {split.phrase_pairs_per_epoch:.0%} of the sentence count mixed into each epoch"]
            if self.data_path is None else [],
        )

    def build_model(self) -> torch.nn.Module:
        return build_model(self.settings, self.tokenizer.get_vocab_size(), self.tokenizer.token_to_id(PAD))

    def train(self, model: torch.nn.Module) -> dict[str, Any]:
        stats = train(model, self.tokenizer, self.data, self.settings)  # type: ignore[arg-type]
        return {"steps": stats.steps, "planned_steps": self.settings.steps,
                "stopped_by_time_cap": stats.stopped_by_time_cap,
                "rate_schedule_clock_led_from_step": stats.clock_led_from_step, "loss_every_100_steps": stats.losses,
                "architecture": model.shape.as_dict()}  # type: ignore[union-attr]

    def _codec(self, tokenizer: Tokenizer, parameters: dict[str, Any]) -> TranslationTokenizer:
        return TranslationTokenizer(tokenizer, **{k: parameters[k] for k in CODEC_PARAMETERS if k in parameters})

    def export(self, model: torch.nn.Module, version_dir: Path) -> ExportResult:
        codec = self._codec(self.tokenizer, self._parameters())
        sources = [p.source for p in self.data.part("validation")[:PARITY_SENTENCES]]
        source_batch, memory_mask, _ = codec.encode_sources(sources)
        return export_seq2seq(EncoderGraph(model), DecoderStepGraph(model), version_dir,  # type: ignore[arg-type]
                              source_batch, memory_mask, codec.spec)

    def write_assets(self, version_dir: Path) -> list[str]:
        self.tokenizer.save(str(Path(version_dir) / TOKENIZER_FILE))
        return [TOKENIZER_FILE]

    def _parameters(self) -> dict[str, Any]:
        return {"tokenizer": TOKENIZER_FILE, "pad_id": self.tokenizer.token_to_id(PAD),
                "start_id": self.tokenizer.token_to_id(BOS), "eos_id": self.tokenizer.token_to_id(EOS),
                "max_source_length": 128, "max_output_length": self.settings.max_output_length,
                "source_language": "de", "target_language": "en"}

    def model_config(self) -> dict[str, Any]:
        return translation_model_config(self._parameters())

    def evaluate_onnx(self, version_dir: Path, parameters: dict[str, Any]) -> Evaluation:
        codec = TranslationTokenizer.from_files(Path(version_dir) / parameters["tokenizer"], parameters)
        run = onnx_runner(version_dir)
        test = self.test.read()  # type: ignore[union-attr]
        sources, references = [p.source for p in test], [p.target for p in test]
        started = time.perf_counter()
        greedy = codec.translate(sources, run, beam_size=1)
        greedy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        beam = codec.translate(sources, run, beam_size=BEAM_SIZE)
        beam_seconds = time.perf_counter() - started
        metrics = translation_metrics([t.text for t in greedy], references)
        beam_metrics = translation_metrics([t.text for t in beam], references)
        metrics.update({f"{k}_beam{BEAM_SIZE}": v for k, v in beam_metrics.items()})
        metrics.update({"test_sentences": len(test), "greedy_seconds": round(greedy_seconds, 1),
                        f"beam{BEAM_SIZE}_seconds": round(beam_seconds, 1)})
        baseline = translation_metrics(dictionary_baseline(self.data, sources), references) if self.data.phrases else {}
        return Evaluation(
            metrics=metrics,
            baselines={"dictionary_word_by_word": baseline} if baseline else {},
            protocol="held-out German sentences translated through app.tasks.translation.TranslationTokenizer (tokenizer.json, "
            f"encoder once, greedy and beam-{BEAM_SIZE} decode loops over decoder_step) in ONNX Runtime; sacreBLEU "
            "corpus BLEU and chrF (default settings) against the single Ding reference. Baseline: each word replaced "
            "by its most frequent single-word Ding translation",
            examples=[{"source": s, "reference": r, "greedy": g.text, f"beam{BEAM_SIZE}": b.text}
                      for s, r, g, b in list(zip(sources, references, greedy, beam))[:8]],
        )


BEAM_SIZE = 4
CODEC_PARAMETERS = ("pad_id", "start_id", "eos_id", "max_source_length", "max_output_length", "suppressed_ids")


def translation_model_config(parameters: dict[str, Any]) -> dict[str, Any]:
    """config.yaml of a translation model (trained here or imported)."""
    return {
        "task": "translation",
        "graphs": {"encoder": ENCODER_FILE, "decoder_step": DECODER_STEP_FILE, GREEDY_GRAPH: GREEDY_FILE},
        "max_batch_size": 32,
        "dynamic_batching": {"max_queue_delay_microseconds": 1000},
        "warmup": {"batch_sizes": [1, 8]},
        "parameters": parameters,
    }
