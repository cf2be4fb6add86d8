"""How much shorter subword sequences are than char sequences on a task's texts, and how fast each runs.

The char baseline is the ERNIE 1.0 char tokenizer (``ernie_tiny.tokenization.char``).
Without ERNIE's own ``vocab.txt`` it gets a *conservative* vocabulary built from the
measured texts: every char plus every whole Latin/digit word, so each basic piece (a CJK
char, a punctuation mark, a Latin/digit run) is exactly one token. That is a lower bound of
the real WordPiece length (WordPiece can only split a run further), so the reported
reduction is a lower bound too. Usage::

    examples = load_split("lcqmc", "../shared/data/lcqmc", "dev")     # ernie_tiny.tasks
    pairs = [(e.text_a, e.text_b) for e in examples]
    stats = measure_lengths(SubwordTokenizer.from_directory("runs/tokenizer"), pairs)
    stats.reduction_text_pct
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ernie_tiny.tokenization.encoding import Encoding, Tokenizer

LONG_ENOUGH = 1 << 20  # max_len for measuring: nothing is truncated


def conservative_char_tokenizer(texts: list[str]):  # noqa: ANN201 (CharTokenizer, imported lazily)
    """A char tokenizer whose vocabulary holds every char and every whole Latin/digit word of ``texts``."""
    from ernie_tiny.tokenization.char import CharTokenizer, basic_pieces

    vocab = dict(CharTokenizer.from_texts(texts).vocab)
    for text in texts:
        for piece in basic_pieces(text, True):
            word = "".join(char for char, _ in piece)
            if word not in vocab:
                vocab[word] = len(vocab)
    return CharTokenizer(vocab)


@dataclass
class LengthSummary:
    mean: float
    p50: float
    p95: float
    max: int

    @classmethod
    def of(cls, lengths: list[int]) -> "LengthSummary":
        values = np.asarray(lengths, dtype=np.float64)
        return cls(round(float(values.mean()), 2), float(np.percentile(values, 50)),
                   float(np.percentile(values, 95)), int(values.max()))


@dataclass
class TokenizerRun:
    """Lengths and speed of one tokenizer over the examples (each example: one text or a pair)."""

    name: str
    vocab_size: int
    with_specials: LengthSummary  # [CLS] a [SEP] (b [SEP])
    text_only: LengthSummary  # tokens of the texts alone
    text_tokens: int  # all text tokens, summed over the examples
    total_tokens: int  # the same with specials
    unk_share: float  # [UNK] tokens / text tokens
    seconds: float
    examples_per_s: float
    texts_per_s: float
    tokens_per_s: float


@dataclass
class LengthStats:
    n_examples: int
    n_texts: int
    char: TokenizerRun
    subword: TokenizerRun
    reduction_text_pct: float  # 1 - mean subword text tokens / mean char text tokens
    reduction_with_specials_pct: float  # the same with [CLS]/[SEP] counted
    subword_training: dict[str, Any]
    char_baseline: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _timed_run(name: str, tokenizer: Tokenizer, pairs: list[tuple[str, str | None]]) -> TokenizerRun:
    tokenizer.encode_batch(pairs[:1], max_len=LONG_ENOUGH)  # loads lazy parts (jieba's dictionary)
    started = time.perf_counter()
    encodings: list[Encoding] = tokenizer.encode_batch(pairs, max_len=LONG_ENOUGH)
    seconds = max(time.perf_counter() - started, 1e-9)
    n_specials = [2 if b is None else 3 for _, b in pairs]
    full = [len(e) for e in encodings]
    text_only = [n - s for n, s in zip(full, n_specials)]
    unk = sum(sum(e.unk_mask) for e in encodings)
    n_texts = sum(1 if b is None else 2 for _, b in pairs)
    return TokenizerRun(name=name, vocab_size=tokenizer.vocab_size, with_specials=LengthSummary.of(full),
                        text_only=LengthSummary.of(text_only), text_tokens=sum(text_only),
                        total_tokens=sum(full), unk_share=unk / max(1, sum(text_only)),
                        seconds=round(seconds, 4), examples_per_s=round(len(pairs) / seconds, 1),
                        texts_per_s=round(n_texts / seconds, 1), tokens_per_s=round(sum(full) / seconds, 1))


def measure_lengths(subword: Tokenizer, pairs: list[tuple[str, str | None]], char: Tokenizer | None = None
                    ) -> LengthStats:
    """Compare ``subword`` with ``char`` (default: :func:`conservative_char_tokenizer` of the texts)."""
    if not pairs:
        raise ValueError("no examples to measure")
    texts = [t for a, b in pairs for t in ((a,) if b is None else (a, b))]
    baseline = "ERNIE char tokenizer with the given vocab.txt"
    if char is None:
        char = conservative_char_tokenizer(texts)
        baseline = "ERNIE char tokenizer, vocab = every char + whole Latin/digit word of the texts (lower bound)"
    char_run = _timed_run("char", char, pairs)
    subword_run = _timed_run("subword", subword, pairs)
    return LengthStats(
        n_examples=len(pairs), n_texts=len(texts), char=char_run, subword=subword_run,
        reduction_text_pct=_reduction_pct(subword_run.text_tokens, char_run.text_tokens),
        reduction_with_specials_pct=_reduction_pct(subword_run.total_tokens, char_run.total_tokens),
        subword_training=dict(getattr(getattr(subword, "config", None), "training", {}) or {}),
        char_baseline=baseline,
    )


def _reduction_pct(subword_tokens: int, char_tokens: int) -> float:
    """``100 * (1 - subword / char)``; both are totals over the same examples, so this is the ratio of means."""
    return round(100 * (1 - subword_tokens / char_tokens), 2) if char_tokens else 0.0
