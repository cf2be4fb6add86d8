"""Cut normalised text into sentencepiece pieces, with char offsets, in one of three ways.

``Segmentation.NONE``
    sentencepiece alone, over each whitespace-separated chunk.
``WordBoundary.CONSTRAINT`` (with jieba or dictionary words; the default)
    words are a constraint, not tokens: a piece lies inside one word or covers several
    whole words ("很 干净" may become "很干净", never "很干" + "净"). Among the cuts that
    respect word boundaries, the one with the best sentencepiece unigram score wins.
``WordBoundary.SPACE`` (the ERNIE-tiny release)
    words are joined with single spaces and sentencepiece encodes the joined string,
    so every word starts with "▁" (its own token when no "▁word" piece exists).

Whitespace in the input is a hard boundary in the first two modes, and never a token:
the char tokenizer drops whitespace too, and a lone "▁" token would only make sequences
longer. A piece is ``(sentencepiece id, start, end)`` in chars of the normalised text.
"""

from __future__ import annotations

import threading

from enum import Enum

import sentencepiece as spm

from ernie_tiny.tokenization.subword.normalize import SPM_SPACE
from ernie_tiny.tokenization.wordseg import WordSegmenter

PieceSpan = tuple[int, int, int]  # (sentencepiece id, start, end), chars of the normalised text
UNK_PENALTY = 10.0  # sentencepiece scores an unknown char as (lowest piece score - 10); so do we
MAX_CACHED_WORDS = 1 << 18  # word -> pieces cache; cleared when full (review text repeats words a lot)


class Segmentation(str, Enum):
    """What cuts the text into words before sentencepiece."""

    NONE = "none"  # no words: sentencepiece over each whitespace-separated chunk
    JIEBA = "jieba"  # jieba's precise mode, optional user dictionary
    WORDSEG = "wordseg"  # forward maximum matching over a word list (the ERNIE-tiny release)


class WordBoundary(str, Enum):
    """How word boundaries reach sentencepiece."""

    CONSTRAINT = "constraint"  # pieces may not straddle a word boundary
    SPACE = "space"  # words joined by spaces; sentencepiece sees "▁word"


def _spm_offsets_from_bytes(text: str, pieces: list[tuple[int, int, int]]) -> list[PieceSpan]:
    """Turn ``(id, byte_begin, byte_end)`` (UTF-8 offsets) into char offsets of ``text``."""
    char_at_byte = {0: 0}
    position = 0
    for index, char in enumerate(text):
        code = ord(char)
        position += 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
        char_at_byte[position] = index + 1
    return [(piece_id, char_at_byte[begin], char_at_byte[end]) for piece_id, begin, end in pieces]


def spm_offsets(processor: spm.SentencePieceProcessor, texts: list[str]) -> list[list[PieceSpan]]:
    """Pieces of each text, ``(id, start, end)`` in chars of that text (one batched C++ call)."""
    if not texts:
        return []
    try:  # newer sentencepiece (0.2.3 here): offsets in chars
        mapped = processor.encode(texts, out_type="offset_mapping")
        return [[(piece_id, start, end) for piece_id, (start, end) in zip(m["ids"], m["offsets"])] for m in mapped]
    except (ValueError, TypeError, RuntimeError):  # older sentencepiece: byte offsets from protos
        protos = processor.encode(texts, out_type="immutable_proto")
        return [_spm_offsets_from_bytes(text, [(p.id, p.begin, p.end) for p in proto.pieces])
                for text, proto in zip(texts, protos)]


def whitespace_chunks(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each space-separated chunk (normalised text has single inner spaces only)."""
    out = []
    start = 0
    for part in text.split(" "):
        if part:
            out.append((start, start + len(part)))
        start += len(part) + 1
    return out


class PieceEncoder:
    """Encode normalised texts into :data:`PieceSpan` lists, by segmentation and word boundary."""

    def __init__(self, processor: spm.SentencePieceProcessor, segmenter: WordSegmenter | None,
                 boundary: WordBoundary = WordBoundary.CONSTRAINT, lower_words: bool = False):
        """``lower_words`` (space-joined words only): lower-case each word after segmentation, as the release does."""
        self.processor = processor
        self.segmenter = segmenter
        self.boundary = boundary
        self.lower_words = lower_words
        self._word_cache: dict[str, tuple[tuple[PieceSpan, ...], float]] = {}
        # one batch at a time fills, clears and reads the word cache (`serve` tokenizes in threads);
        # ConstrainedTokens, which reads this cache too, holds the same lock
        self.lock = threading.Lock()
        scores = [processor.get_score(i) for i in range(processor.get_piece_size())]
        # Pieces a multi-word span may become: ordinary and user-defined pieces, never <unk>/control.
        self._piece_table: dict[str, tuple[float, int]] = {}
        for piece_id, score in enumerate(scores):
            if not (processor.is_unknown(piece_id) or processor.is_control(piece_id) or processor.is_unused(piece_id)):
                self._piece_table[processor.id_to_piece(piece_id)] = (score, piece_id)
        self._scores = scores
        self._has_text = [bool(piece_text(processor.id_to_piece(i))) for i in range(len(scores))]
        self._unk_score = min(scores) - UNK_PENALTY
        self._max_piece_chars = max((len(p) for p in self._piece_table), default=1)
        # Every proper prefix of a piece: the multi-word search stops as soon as the words so far
        # cannot begin any piece (most of the time after the second word).
        self._piece_prefixes = {piece[:end] for piece in self._piece_table for end in range(1, len(piece))}

    def encode(self, texts: list[str]) -> list[list[PieceSpan]]:
        """Pieces of each normalised text, offsets into that text."""
        if self.segmenter is None:
            return self._encode_chunks(texts)
        with self.lock:
            if self.boundary is WordBoundary.SPACE:
                return self._encode_space_joined(texts)
            return self._encode_constrained(texts)

    # ---- no words: sentencepiece per whitespace chunk ---------------------------------------

    def _encode_chunks(self, texts: list[str]) -> list[list[PieceSpan]]:
        chunk_spans = [whitespace_chunks(text) for text in texts]
        flat = [text[s:e] for text, spans in zip(texts, chunk_spans) for s, e in spans]
        encoded = iter(spm_offsets(self.processor, flat))
        out = []
        for spans in chunk_spans:
            pieces: list[PieceSpan] = []
            for chunk_start, _ in spans:
                pieces.extend((i, chunk_start + s, chunk_start + e) for i, s, e in next(encoded))
            out.append(pieces)
        return out

    # ---- words as a constraint ---------------------------------------------------------------

    def _words(self, text: str) -> list[list[tuple[int, int]]]:
        """Per whitespace chunk, the ``(start, end)`` of each word."""
        out = []
        for chunk_start, chunk_end in whitespace_chunks(text):
            words = []
            position = chunk_start
            for word in self.segmenter.words(text[chunk_start:chunk_end]):
                words.append((position, position + len(word)))
                position += len(word)
            out.append(words)
        return out

    def _cache_words(self, words: set[str]) -> None:
        missing = [w for w in words if w not in self._word_cache]
        if not missing:
            return
        if len(self._word_cache) + len(missing) > MAX_CACHED_WORDS:
            self._word_cache.clear()  # and every word of this call is needed now, not only the new ones
            missing = list(words)
        for word, pieces in zip(missing, spm_offsets(self.processor, missing)):
            score = sum(self._unk_score if self.processor.is_unknown(i) else self._scores[i] for i, _, _ in pieces)
            self._word_cache[word] = (tuple(pieces), score)

    def _encode_constrained(self, texts: list[str]) -> list[list[PieceSpan]]:
        word_spans = [self._words(text) for text in texts]
        self._cache_words({text[s:e] for text, chunks in zip(texts, word_spans) for words in chunks for s, e in words})
        out = []
        for text, chunks in zip(texts, word_spans):
            pieces: list[PieceSpan] = []
            for words in chunks:
                pieces.extend(self._best_cut(text, words))
            out.append(pieces)
        return out

    def _best_cut(self, text: str, words: list[tuple[int, int]]) -> list[PieceSpan]:
        """Viterbi over word boundaries: each step is one word cut by sentencepiece, or one piece
        covering words ``k..m-1`` whole. Scores are sentencepiece's unigram log-probabilities."""
        n = len(words)
        table, prefixes, cache = self._piece_table, self._piece_prefixes, self._word_cache
        best = [float("-inf")] * (n + 1)
        step: list[tuple[int, int] | None] = [None] * (n + 1)  # (first word, piece id or -1 = word's own cut)
        best[0] = 0.0
        for k in range(n):
            base = best[k]
            start, end = words[k]
            word = text[start:end]
            word_score = cache[word][1]
            if base + word_score > best[k + 1]:
                best[k + 1], step[k + 1] = base + word_score, (k, -1)
            if word not in prefixes:
                continue
            for m in range(k + 2, n + 1):
                candidate = text[start:words[m - 1][1]]
                entry = table.get(candidate)
                if entry is not None and base + entry[0] > best[m]:
                    best[m], step[m] = base + entry[0], (k, entry[1])
                if candidate not in prefixes:
                    break
        pieces: list[PieceSpan] = []
        m = n
        while m > 0:
            k, piece_id = step[m]
            if piece_id >= 0:
                pieces.append((piece_id, words[k][0], words[m - 1][1]))
            else:
                start = words[k][0]
                word_pieces = cache[text[start:words[k][1]]][0]
                pieces.extend((i, start + s, start + e) for i, s, e in reversed(word_pieces))
            m = k
        pieces.reverse()
        return pieces

    # ---- words joined by spaces (ERNIE-tiny release) ------------------------------------------

    def _encode_space_joined(self, texts: list[str]) -> list[list[PieceSpan]]:
        joined_texts = []
        joined_origins = []  # per joined char: index in the normalised text, -1 for an inserted space
        for text in texts:
            parts: list[str] = []
            origin: list[int] = []
            for words in self._words(text):
                for start, end in words:
                    if parts:
                        parts.append(" ")
                        origin.append(-1)
                    if self.lower_words:
                        # the word lower-cased whole (final sigma in context), each char's share keeping its
                        # source index: a char's lower-case form has the same length alone as in context
                        lowered = text[start:end].lower()
                        parts.append(lowered)
                        for index in range(start, end):
                            origin.extend([index] * len(text[index].lower()))
                    else:
                        parts.append(text[start:end])
                        origin.extend(range(start, end))
            joined_texts.append("".join(parts))
            joined_origins.append(origin)
        out = []
        for text, origin, pieces in zip(texts, joined_origins, spm_offsets(self.processor, joined_texts)):
            mapped: list[PieceSpan] = []
            for piece_id, start, end in pieces:
                inside = [o for o in origin[start:end] if o >= 0]
                if not inside and self._has_text[piece_id]:
                    # the model's NFKC expanded one char into several ("ﬁ" -> "f" "i") and cut inside
                    # it: sentencepiece gives the char to the last piece, the others share it
                    source = [o for o in origin[start:start + 1] + origin[max(0, start - 1):start] if o >= 0]
                    inside = source[:1]
                if inside:
                    mapped.append((piece_id, inside[0], inside[-1] + 1))
                else:  # a lone "▁": an inserted space, no source char; zero width before the next word
                    following = next((o for o in origin[end:] if o >= 0), len(text))
                    mapped.append((piece_id, following, following))
            out.append(mapped)
        return out


def piece_text(piece: str) -> str:
    """A piece's text without sentencepiece's space mark."""
    return piece.replace(SPM_SPACE, "")
