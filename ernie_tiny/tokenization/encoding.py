"""What every tokenizer returns: ids, type ids and the character span of each token.

This module imports no torch (the onnxruntime path uses it). Both the teacher's char tokenizer (``ernie_tiny.tokenization.char``) and the
student's subword tokenizer (``ernie_tiny.tokenization.subword``) return :class:`Encoding`, so
that distillation can align a student token with the teacher tokens that cover
the same characters, and so that batching code never cares which tokenizer ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

# Special tokens shared by ERNIE 1.0 and ERNIE-tiny vocabularies.
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
VOCAB_SPECIALS = (PAD, CLS, SEP, MASK, UNK)  # the first lines of a vocab.txt we build: ERNIE's order, [PAD]=0


@dataclass(frozen=True)
class TokenSpan:
    """Where a token came from: characters ``[start, end)`` of input text ``text_index``.

    Special tokens have ``text_index == -1`` and ``start == end == k`` where ``k``
    numbers the special tokens of the sequence in order ([CLS]=0, first [SEP]=1,
    second [SEP]=2), so [CLS]/[SEP] of two tokenizers can be matched to each other.
    """

    text_index: int
    start: int
    end: int

    @property
    def is_special(self) -> bool:
        return self.text_index < 0


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
    if len(parts) == 1:
        return [parts[0][:budget]]
    len_a, len_b = len(parts[0]), len(parts[1])
    while len_a + len_b > budget:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return [parts[0][:len_a], parts[1][:len_b]]


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
