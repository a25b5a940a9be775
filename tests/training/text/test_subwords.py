"""The shared subword vocabulary: the same texts give the same tokenizer in every process."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from app.training.text.subwords import EOS, SPECIAL_TOKENS, train_unigram_tokenizer

# German and English sentences with many near-tied pieces: a trainer whose result depends on hash-map order
# (tokenizers' own UnigramTrainer did) gives a different vocabulary in another process.
TEXTS = [f"{de} {n}" for n in range(40) for de in (
    "Der Hund schläft im Garten.", "Die Kinder spielen draußen.", "Ich habe keine Zeit.", "Wo ist der Bahnhof?",
    "The dog sleeps in the garden.", "The children play outside.", "I have no time.", "Where is the station?")]

PROGRAM = """
import hashlib, sys
from tests.training.text.test_subwords import TEXTS
from app.training.text.subwords import train_unigram_tokenizer
sys.stdout.write(hashlib.sha256(train_unigram_tokenizer(TEXTS, 120).to_str().encode()).hexdigest())
"""


def test_same_texts_give_the_same_vocabulary_in_every_process():
    here = hashlib.sha256(train_unigram_tokenizer(TEXTS, 120).to_str().encode()).hexdigest()
    others = {subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout for seed in (1, 2)}  # fmt: skip
    assert others == {here}


def test_special_tokens_come_first_and_every_sequence_ends_with_eos():
    tokenizer = train_unigram_tokenizer(TEXTS, 120)
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    encoded = tokenizer.encode("Der Hund spielt im Bahnhof.")
    assert encoded.tokens[-1] == EOS
    assert tokenizer.decode(encoded.ids) == "Der Hund spielt im Bahnhof."
