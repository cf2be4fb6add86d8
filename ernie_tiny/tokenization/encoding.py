"""What every tokenizer returns: ids, type ids and the character span of each token.

This module imports no torch (the onnxruntime path uses it). Both the teacher's char tokenizer (``ernie_tiny.tokenization.char``) and the
student's subword tokenizer (``ernie_tiny.tokenization.subword``) return :class:`Encoding`, so
that distillation can align a student token with the teacher tokens that cover
the same characters, and so that batching code never cares which tokenizer ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import NamedTuple, Protocol, TypeVar

import numpy as np

from ernie_tiny.tokenization.speedups import compiled_speedups

# Special tokens shared by ERNIE 1.0 and ERNIE-tiny vocabularies.
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
VOCAB_SPECIALS = (PAD, CLS, SEP, MASK, UNK)  # the first lines of a vocab.txt we build: ERNIE's order, [PAD]=0


class TokenSpan(NamedTuple):
    """Where a token came from: characters ``[start, end)`` of input text ``text_index``.

    Special tokens have ``text_index == -1`` and ``start == end == k`` where ``k``
    numbers the special tokens of the sequence in order ([CLS]=0, first [SEP]=1,
    second [SEP]=2), so [CLS]/[SEP] of two tokenizers can be matched to each other.
    A named tuple, not a dataclass: tokenizers build one per token, and a tuple is built in C
    (:func:`span_of`), several times faster than a frozen dataclass.
    """

    text_index: int
    start: int
    end: int

    @property
    def is_special(self) -> bool:
        return self.text_index < 0


span_of = partial(tuple.__new__, TokenSpan)  # span_of((text_index, start, end)): a TokenSpan, built in C
SPECIAL_SPANS = tuple(TokenSpan(-1, k, k) for k in range(3))  # [CLS], first [SEP], second [SEP]
MAX_SHARED_SPANS = 1 << 16


class _SharedSpans(dict):
    """``(text_index, start, end) -> TokenSpan``, one object per distinct span: looking a span up
    costs half of building it, and a few thousand spans cover most texts (spans are immutable)."""

    def __missing__(self, key: tuple[int, int, int]) -> TokenSpan:
        if len(self) >= MAX_SHARED_SPANS:
            self.clear()
        span = self[key] = span_of(key)
        return span


_SHARED_SPANS = _SharedSpans()
shared_span = _SHARED_SPANS.__getitem__  # shared_span((text_index, start, end)) -> TokenSpan


def spans_of(text_index: int, starts: list[int], ends: list[int]) -> Iterator[TokenSpan]:
    """The :class:`TokenSpan` of each ``(start, end)`` of one text (the per-token work in C)."""
    return map(shared_span, zip(repeat(text_index), starts, ends))


@dataclass
class Encoding:
    """One tokenized example: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``."""

    tokens: list[str]
    input_ids: list[int]
    token_type_ids: list[int]
    spans: list[TokenSpan]
    unk_mask: list[bool] = field(default_factory=list)  # True where the token is [UNK]
    truncated: bool = False  # True when max_len cut tokens off

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if not self.unk_mask:
            self.unk_mask = [t == UNK for t in self.tokens]
        lengths = {len(self.tokens), len(self.token_type_ids), len(self.spans), len(self.unk_mask)}
        if lengths != {n}:
            raise ValueError(f"Encoding fields disagree in length: {lengths} vs {n} input ids")

    def __len__(self) -> int:
        return len(self.input_ids)


def pad_to_arrays(encodings: list[Encoding], pad_id: int = 0, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Right-pad encodings into int64 arrays ``input_ids``, ``token_type_ids``, ``attention_mask`` of shape (B, T).

    Pads to the longest encoding, or to ``pad_to``. numpy only, so that onnxruntime
    inference never imports torch.
    """
    if not encodings:
        raise ValueError("pad_to_arrays needs at least one encoding")
    width = max(len(e) for e in encodings) if pad_to is None else pad_to
    input_ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(encodings), width), dtype=np.int64)
    attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        n = min(len(enc), width)
        input_ids[row, :n] = enc.input_ids[:n]
        token_type_ids[row, :n] = enc.token_type_ids[:n]
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


T = TypeVar("T")  # what a sequence holds: token strings (char tokenizer) or ids (subword tokenizer)


def truncate_longest_first(parts: list[list], budget: int) -> list[list]:
    """Cut one text, or a pair, to ``budget`` tokens: one token at a time from the end of the longer
    text (of b on ties), as BERT and Hugging Face do. ``parts`` is ``[a]`` or ``[a, b]``."""
    lengths = longest_first_lengths([len(part) for part in parts], budget)
    return [part[:length] for part, length in zip(parts, lengths)]


def longest_first_lengths(lengths: list[int], budget: int) -> list[int]:
    """The lengths :func:`truncate_longest_first` keeps of parts this long."""
    if len(lengths) == 1:
        return [min(lengths[0], budget)]
    len_a, len_b = lengths
    while len_a + len_b > budget:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return [len_a, len_b]


def join_with_specials(parts: list[list[tuple[T, int, int]]], cls: T, sep: T
                       ) -> tuple[list[T], list[int], list[TokenSpan]]:
    """``[CLS] a [SEP] (b [SEP])`` from ``(item, start, end)`` triples: items, type ids and spans.

    ``item`` is whatever the tokenizer builds sequences of (token strings or ids); specials get
    :class:`TokenSpan` ``(-1, k, k)`` with ``k`` numbering them in order.
    """
    items, type_ids, spans = [cls], [0], [TokenSpan(-1, 0, 0)]
    for text_index, part in enumerate(parts):
        for item, start, end in part:
            items.append(item)
            type_ids.append(text_index)
            spans.append(TokenSpan(text_index, start, end))
        items.append(sep)
        type_ids.append(text_index)
        spans.append(TokenSpan(-1, text_index + 1, text_index + 1))
    return items, type_ids, spans


Columns = tuple[list[int], list[int], list[int]]  # (token ids, starts, ends) of one text's tokens


def encoding_from_columns(columns_a: Columns, columns_b: Columns | None, max_len: int, cls_id: int, sep_id: int,
                          unk_id: int, id_to_token: list[str]) -> Encoding:
    """``[CLS] a [SEP] (b [SEP])`` from each text's token columns, truncated longest-first to ``max_len``:
    :func:`join_with_specials` and :func:`truncate_longest_first` with the per-token work in C."""
    ids_a, starts_a, ends_a = columns_a
    cls_span, sep_a_span, sep_b_span = SPECIAL_SPANS
    if columns_b is None:
        truncated = len(ids_a) > max_len - 2
        if truncated:
            ids_a, starts_a = ids_a[:max_len - 2], starts_a[:max_len - 2]  # zip stops at the shortest
        ids = [cls_id, *ids_a, sep_id]
        spans = [cls_span, *spans_of(0, starts_a, ends_a), sep_a_span]
        type_ids = [0] * len(ids)
    else:
        ids_b, starts_b, ends_b = columns_b
        truncated = len(ids_a) + len(ids_b) > max_len - 3
        if truncated:
            keep_a, keep_b = longest_first_lengths([len(ids_a), len(ids_b)], max_len - 3)
            ids_a, starts_a, ids_b, starts_b = ids_a[:keep_a], starts_a[:keep_a], ids_b[:keep_b], starts_b[:keep_b]
        ids = [cls_id, *ids_a, sep_id, *ids_b, sep_id]
        spans = [cls_span, *spans_of(0, starts_a, ends_a), sep_a_span, *spans_of(1, starts_b, ends_b), sep_b_span]
        type_ids = [0] * (len(ids_a) + 2)
        type_ids.extend([1] * (len(ids_b) + 1))
    return Encoding(list(map(id_to_token.__getitem__, ids)), ids, type_ids, spans, list(map(unk_id.__eq__, ids)),
                    truncated)


def encodings_from_columns(columns: list[Columns], has_b: list[bool], max_len: int, cls_id: int, sep_id: int,
                           unk_id: int, id_to_token: list[str], compiled: bool = True) -> list[Encoding]:
    """:func:`encoding_from_columns` for every example of a batch: ``columns`` holds each example's text a,
    then its text b where ``has_b`` says so. The loop runs in C (``encodings_from_columns`` in
    ``_speedups.c``) where it is built; ``compiled=False`` (or no build) runs it here, its reference."""
    speedups = compiled_speedups() if compiled else None
    if speedups is not None:
        return speedups.encodings_from_columns(columns, has_b, max_len, cls_id, sep_id, unk_id, id_to_token,
                                               _SHARED_SPANS, SPECIAL_SPANS, Encoding)
    if len(columns) != len(has_b) + sum(map(bool, has_b)):
        raise ValueError(f"{len(columns)} texts' columns for {len(has_b)} examples with has_b {sum(map(bool, has_b))}")
    texts = iter(columns)
    return [encoding_from_columns(next(texts), next(texts) if pair else None, max_len, cls_id, sep_id, unk_id,
                                  id_to_token) for pair in has_b]


class SpecialTokenIds:
    """Ids of the ERNIE special tokens and the token -> id lookup, for a tokenizer with a ``vocab`` dict."""

    vocab: dict[str, int]

    @property
    def pad_id(self) -> int:
        return self.vocab[PAD]

    @property
    def unk_id(self) -> int:
        return self.vocab[UNK]

    @property
    def cls_id(self) -> int:
        return self.vocab[CLS]

    @property
    def sep_id(self) -> int:
        return self.vocab[SEP]

    @property
    def mask_id(self) -> int:
        return self.vocab[MASK]

    def token_to_id(self, token: str) -> int:
        """The token's id, or [UNK]'s id for a token outside the vocabulary."""
        return self.vocab.get(token, self.unk_id)


class Tokenizer(Protocol):
    """What the model code needs of a tokenizer (char teacher or subword student)."""

    kind: str  # "char" or "subword": saved in checkpoint config.json as "tokenizer_kind"

    @property
    def vocab_size(self) -> int: ...

    @property
    def pad_id(self) -> int: ...

    def encode(self, text_a: str, text_b: str | None = None, max_len: int = 128) -> Encoding:
        """``[CLS] a [SEP] (b [SEP])``, truncated longest-first to ``max_len`` tokens."""
        ...

    def encode_batch(self, pairs: list[tuple[str, str | None]], max_len: int = 128) -> list[Encoding]: ...

    def save(self, directory: str) -> None:
        """Write the tokenizer files into ``directory`` (vocab.txt and any model files)."""
        ...
