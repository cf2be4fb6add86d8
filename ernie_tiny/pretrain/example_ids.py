"""An example's texts as ids, type ids and each text's token start chars: what masking needs, fast.

The char tokenizer (BERT's BasicTokenizer + WordPiece in Python) spends ~20 us per character,
which capped masked examples at ~330/s per worker. Its output is a function of local pieces of
the text: BasicTokenizer ends a word at every CJK character, so the tokens of a text are the
tokens of its CJK characters and of the runs of other characters between them, each tokenized
alone. :class:`ExampleEncoder` memoises both (a CJK character's id; a run's ids and starts, e.g.
``，`` or the ``1998`` of ``1998年``) and asks the tokenizer itself for anything new, so it returns exactly ``tokenizer.encode``'s ids (a parity test checks
it on the embedded corpus). Other tokenizers (subword) go through ``tokenizer.encode``. Example::

    encoder = ExampleEncoder(tokenizer)
    ids = encoder.encode("江泽民在北京", None, max_len=128)
    ids.input_ids, ids.text_tokens[0].starts     # [CLS] 江 泽 ... [SEP]; 0, 1, 2, ...
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ernie_tiny.tokenization.char import CharTokenizer, is_cjk
from ernie_tiny.tokenization.encoding import truncate_longest_first

MAX_MEMO = 1 << 17  # memoised runs before the memo starts over (bounds memory on a corpus of unique runs)


@dataclass(frozen=True)
class TextTokens:
    """The tokens of one text of an example."""

    positions: np.ndarray  # (T,) int64 consecutive positions in the example
    starts: np.ndarray  # (T,) int64 first source character of each token in its text


@dataclass(frozen=True)
class ExampleIds:
    input_ids: np.ndarray  # (L,) int64: [CLS] a [SEP] (b [SEP])
    token_type_ids: np.ndarray  # (L,) int64: 0 on a, 1 on b
    text_tokens: tuple[TextTokens, ...]  # one per text


class ExampleEncoder:
    """``tokenizer.encode`` reduced to ids and token starts, memoised for the char tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.memoised = type(tokenizer) is CharTokenizer  # a subclass might tokenize differently
        self._cjk_ids: dict[str, int] = {}  # char -> its token id if CJK, else -1
        self._segments: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # text without CJK chars -> ids, starts

    def __getstate__(self) -> dict:
        return {"tokenizer": self.tokenizer}  # workers rebuild the memo

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["tokenizer"])

    def _cjk_id(self, char: str) -> int:
        """The token id of a character, or -1 when it is not CJK (memoised: both answers)."""
        token = self._cjk_ids.get(char)
        if token is None:
            tokens = self.tokenizer.tokenize_with_spans(char) if is_cjk(char) else []
            # any other char goes with the run around it (a run may hold CJK chars: only its ends matter)
            token = self.tokenizer.vocab[tokens[0][0]] if len(tokens) == 1 else -1
            self._cjk_ids[char] = token
        return token

    def _segment(self, segment: str) -> tuple[list[int], list[int]]:
        """Ids and start chars of the tokens of a run of characters that starts and ends the text or a CJK char."""
        tokens = self._segments.get(segment)
        if tokens is None:
            if len(self._segments) >= MAX_MEMO:
                self._segments.clear()
            spans = self.tokenizer.tokenize_with_spans(segment)
            tokens = self._segments[segment] = ([self.tokenizer.vocab[t] for t, _, _ in spans],
                                                [start for _, start, _ in spans])
        return tokens

    def tokens(self, text: str) -> tuple[list[int], list[int]]:
        """Ids and start chars of the tokens of ``text``, as the char tokenizer's ``tokenize_with_spans``."""
        get = self._cjk_ids.get
        codes = [get(char, -2) for char in text]  # id of a CJK char, -1 another char, -2 not seen yet
        if -2 in codes:
            codes = [self._cjk_id(char) if code == -2 else code for char, code in zip(text, codes)]
        if -1 not in codes:
            return codes, list(range(len(text)))
        # maximal runs of non-CJK characters: each is tokenized alone (BasicTokenizer ends a word at a CJK char)
        ids: list[int] = []
        starts: list[int] = []
        i, n = 0, len(codes)
        while i < n:
            j = i + 1
            if codes[i] >= 0:
                while j < n and codes[j] >= 0:
                    j += 1
                ids += codes[i:j]
                starts += range(i, j)
            else:
                while j < n and codes[j] < 0:
                    j += 1
                segment_ids, segment_starts = self._segment(text[i:j])
                ids += segment_ids
                starts += [start + i for start in segment_starts]
            i = j
        return ids, starts

    def encode(self, text_a: str, text_b: str | None, max_len: int) -> ExampleIds:
        """``[CLS] a [SEP] (b [SEP])`` truncated longest-first to ``max_len``, as ``tokenizer.encode`` does."""
        if not self.memoised:
            return self._from_encoding(self.tokenizer.encode(text_a, text_b, max_len=max_len))
        parts = [self.tokens(text_a)] + ([self.tokens(text_b)] if text_b is not None else [])
        budget = max_len - len(parts) - 1
        if budget < 0:
            raise ValueError(f"max_len {max_len} leaves no room for the {len(parts) + 1} special tokens")
        lengths = [len(ids) for ids, _ in parts]
        if sum(lengths) > budget:
            lengths = [len(part) for part in truncate_longest_first([range(n) for n in lengths], budget)]
        ids, type_ids, texts = [self.tokenizer.cls_id], [0], []
        for text_index, ((part_ids, starts), n) in enumerate(zip(parts, lengths)):
            texts.append(TextTokens(np.arange(len(ids), len(ids) + n, dtype=np.int64),
                                    np.array(starts[:n], dtype=np.int64)))
            ids += part_ids[:n]
            ids.append(self.tokenizer.sep_id)
            type_ids += [text_index] * (n + 1)
        return ExampleIds(np.array(ids, dtype=np.int64), np.array(type_ids, dtype=np.int64), tuple(texts))

    @staticmethod
    def _from_encoding(encoding) -> ExampleIds:
        texts = []
        for text_index in range(max(encoding.token_type_ids) + 1):
            positions = [i for i, span in enumerate(encoding.spans) if span.text_index == text_index]
            texts.append(TextTokens(np.array(positions, dtype=np.int64),
                                    np.array([encoding.spans[i].start for i in positions], dtype=np.int64)))
        return ExampleIds(np.array(encoding.input_ids, dtype=np.int64), np.array(encoding.token_type_ids,
                                                                                 dtype=np.int64), tuple(texts))
