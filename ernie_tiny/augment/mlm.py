"""Teacher masked-LM word replacement for Chinese words (TinyBERT's idea, made to work for Chinese).

TinyBERT's ``data_augmentation.py`` masks one English word at a time, feeds the masked
sentence to BERT's masked-LM head, keeps the top-M predicted word pieces (M=15) as
candidates and replaces the word by a random candidate; words that BERT splits into
several pieces fall back to GloVe neighbours, and non-[a-z] words are never touched.
A Chinese word is several characters, i.e. several char tokens, so here:

1. every character of the jieba word is replaced by [MASK] (a 2-char word -> 2 masks)
   in the ORIGINAL text, and the teacher predicts all masked positions in one pass;
2. each position's distribution is restricted to single CJK characters of the vocabulary;
3. candidate words are the ``top_k`` best of the product of the per-position
   probabilities (one pass makes the positions independent, so a beam of width
   ``top_k + 1`` over positions finds them exactly); the original word is dropped.

The augmenter then picks one candidate uniformly, as TinyBERT does. Candidates depend
only on (text, word span), so one forward pass serves all N augmented copies and the
results are cached. Only all-CJK words are asked for; Latin words, digits and
punctuation are never replaced by this strategy.

The teacher must have a TRAINED masked-LM head: a checkpoint saved with head
``masked_lm`` (pre-trained ERNIE weights that include the MLM output layer). The
fine-tuned classifier teachers of this pipeline have none, and no MLM pre-training is
offered here: a useful MLM takes far more than minutes of a 2-core CPU. Without one,
keep ``p_mlm = 0`` (the default) and use the three ERNIE Slim strategies.

This module is torch-free (the queries, the predictor protocol, the beam over
positions); :class:`ernie_tiny.augment.teacher.TeacherMaskedLM` runs the model.

Example::

    mlm = TeacherMaskedLM.from_pretrained("checkpoints/ernie-1.0-mlm", top_k=15)
    mlm.predict([MaskedWordQuery("房间很干净", 0, 2)])   # one list of 2-char words per query
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ernie_tiny.tokenization.char import is_cjk


@dataclass(frozen=True)
class MaskedWordQuery:
    """Predict replacements for ``text[start:end]`` (one jieba word) from the rest of ``text``."""

    text: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= len(self.text):
            raise ValueError(f"word span [{self.start}, {self.end}) is not inside a text of {len(self.text)} chars")

    @property
    def word(self) -> str:
        return self.text[self.start:self.end]


@runtime_checkable
class MaskedWordPredictor(Protocol):
    """Anything that returns candidate words (same length as the masked word, best first) per query."""

    def predict(self, queries: Sequence[MaskedWordQuery]) -> list[list[str]]: ...


class CallablePredictor:
    """Wrap a plain function ``fn(query) -> candidates`` as a :class:`MaskedWordPredictor`."""

    def __init__(self, fn: Callable[[MaskedWordQuery], Sequence[str]]):
        self.fn = fn

    def predict(self, queries: Sequence[MaskedWordQuery]) -> list[list[str]]:
        return [list(self.fn(query)) for query in queries]


def as_predictor(mlm: MaskedWordPredictor | Callable[[MaskedWordQuery], Sequence[str]]) -> MaskedWordPredictor:
    return mlm if isinstance(mlm, MaskedWordPredictor) else CallablePredictor(mlm)


def is_chinese_word(word: str) -> bool:
    """True when every character is a CJK ideograph: the only words the MLM strategy replaces."""
    return bool(word) and all(is_cjk(char) for char in word)


def top_words(log_probs: Sequence[Sequence[float]], token_ids: Sequence[Sequence[int]],
              beam: int) -> list[tuple[float, tuple[int, ...]]]:
    """The ``beam`` best id sequences under independent per-position scores, best first.

    log_probs, token_ids: (n, k) the k best log-probabilities and their ids at each of the
    n masked positions. Score of a sequence = sum of its positions' log-probabilities;
    ties are broken by the ids so the order never depends on the sort implementation.
    Exact: a prefix outside the best ``beam`` prefixes has ``beam`` better prefixes, each
    of which completes with the same suffix into a better sequence.
    """
    beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    for scores, ids in zip(log_probs, token_ids):
        expanded = [(total + score, prefix + (token,)) for total, prefix in beams
                    for score, token in zip(scores, ids) if score != float("-inf")]
        beams = sorted(expanded, key=lambda item: (-item[0], item[1]))[:beam]
    return beams
