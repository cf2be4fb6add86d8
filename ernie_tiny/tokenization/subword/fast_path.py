"""The subword tokenizer's hot path: texts -> ``(vocab id, start, end)`` tokens, words as a constraint.

The same tokens as the readable path (``normalize_text`` -> ``PieceEncoder.encode`` -> vocab ids
and original spans in ``SubwordTokenizer``), which stays as the reference of the parity tests,
computed with less Python per char and per token:

- normalisation is one ``str.translate`` where every char maps to one char (``origin`` is then
  the identity and is never built);
- the words of all texts of a batch come from one segmenter call (``JiebaSegmenter.words_of_texts``);
- each word's pieces are cached already in vocab ids, with their lengths, the word's score and
  whether it can begin a multi-word piece; the Viterbi over word boundaries builds nothing until
  a multi-word piece wins, and spans are running sums of piece lengths (``itertools.accumulate``);
- spans are mapped through ``origin`` only for the texts whose normalisation moved chars;
- the per-token loop (the Viterbi and the tokens of each chunk) runs in C (``encode_texts`` in
  ``tokenization/_speedups.c``, built at install) for a whole batch in one call; where it is not
  built, the same loop runs here in Python (``compiled=False`` forces it: the reference of the C loop).

Usage (``SubwordTokenizer`` builds one)::

    fast = ConstrainedTokens(tokenizer.pieces, spm_to_vocab, do_lower_case=True, nfkc=True)
    fast.encode(["酒店很干净"])  # [[(id, 0, 2), (id, 2, 5)]]
"""

from __future__ import annotations

from itertools import accumulate, chain
from operator import itemgetter

from ernie_tiny.tokenization.subword.normalize import normalize_one_to_one, normalize_text_by_char
from ernie_tiny.tokenization.speedups import compiled_speedups
from ernie_tiny.tokenization.subword.pieces import MAX_CACHED_WORDS, PieceEncoder

Token = tuple[int, int, int]  # (vocab id, start, end)
# A word (or a multi-word piece): (vocab ids of its pieces, their (start, end) in the word, their lengths
# when they tile the word else None, sentencepiece score, whether the word can begin a multi-word piece,
# its length in chars, and for a word that can: next word -> (the two words' piece entry or None, whether
# they can begin a longer piece), filled as pairs are met)
Unit = tuple[tuple[int, ...], tuple[tuple[int, int], ...], "tuple[int, ...] | None", float, bool, int,
             "dict[str, tuple[tuple[float, int] | None, bool]] | None"]


_IDS, _LENGTHS, _SCORE, _FOLLOWERS = itemgetter(0), itemgetter(2), itemgetter(3), itemgetter(6)
_NEG = float("-inf")
MAX_CACHED_PAIRS = 1 << 21  # word pairs remembered inside the word cache; past it the cache starts again


class ConstrainedTokens:
    """Vocab-id tokens with ORIGINAL-text spans for a :class:`PieceEncoder` in word-constraint mode."""

    def __init__(self, pieces: PieceEncoder, spm_to_vocab: list[int], do_lower_case: bool, nfkc: bool,
                 compiled: bool = True):
        """``compiled``: use the C loop where it is built (False: always the Python loop)."""
        if pieces.segmenter is None:
            raise ValueError("ConstrainedTokens needs a word segmenter")
        self._pieces = pieces
        self._words_of = pieces.segmenter.words
        self._words_of_texts = getattr(pieces.segmenter, "words_of_texts", None)  # one cut for many texts
        self._spm_to_vocab = spm_to_vocab
        self._lower, self._nfkc = do_lower_case, nfkc
        # multi-word pieces: text -> (score, vocab id); the same candidates as PieceEncoder's
        self._table = {text: (score, spm_to_vocab[piece_id]) for text, (score, piece_id) in pieces._piece_table.items()}
        self._prefixes = pieces._piece_prefixes
        self._cache: dict[str, Unit] = {}
        self._pairs = 0  # word pairs cached in the units' follower tables
        self._speedups = compiled_speedups() if compiled else None
        self._lock = pieces.lock  # the word caches here and in PieceEncoder: one batch at a time

    @property
    def compiled(self) -> bool:
        """True when the per-token loop runs in C."""
        return self._speedups is not None

    def encode(self, texts: list[str]) -> list[list[Token]]:
        """Tokens of each text: ``(vocab id, start, end)``, spans in chars of the text as given."""
        return [list(zip(ids, starts, ends)) for ids, starts, ends in self.encode_columns(texts)]

    def encode_columns(self, texts: list[str]) -> list[tuple[list[int], list[int], list[int]]]:
        """:meth:`encode` as columns: ``(vocab ids, starts, ends)`` of each text."""
        lower, nfkc = self._lower, self._nfkc
        origins: list[tuple[int, ...] | None] = []  # per text: None when normalisation kept every position
        chunks: list[str] = []  # the space-free chunks of every text, in order
        chunk_counts: list[int] = []
        for text in texts:
            norm = normalize_one_to_one(text, lower, nfkc)
            origin = None
            if norm is None:
                by_char = normalize_text_by_char(text, lower, nfkc)
                norm, origin = by_char.text, by_char.origin
            origins.append(origin)
            if " " in norm:  # normalised text: single inner spaces, none at the ends
                parts = norm.split(" ")
                chunks.extend(parts)
                chunk_counts.append(len(parts))
            elif norm:
                chunks.append(norm)
                chunk_counts.append(1)
            else:
                chunk_counts.append(0)
        chunk_words = self._words_of_texts(chunks) if self._words_of_texts else list(map(self._words_of, chunks))
        with self._lock:  # one batch at a time fills, clears and reads the word cache (serve tokenizes in threads)
            return self._encode_words(texts, origins, chunk_words, chunk_counts)

    def _encode_words(self, texts: list[str], origins: list[tuple[int, ...] | None], chunk_words: list[list[str]],
                      chunk_counts: list[int]) -> list[tuple[list[int], list[int], list[int]]]:
        """The columns of each text from the words of its chunks (the word cache filled first)."""
        cache = self._cache
        if self._pairs > MAX_CACHED_PAIRS:  # bound the follower tables (between batches: units stay whole)
            cache.clear()
            self._pairs = 0
        missing = {word for words in chunk_words for word in words if word not in cache}
        if missing:
            if len(cache) + len(missing) > MAX_CACHED_WORDS:  # full: start again with this batch's words
                cache.clear()
                missing = {word for words in chunk_words for word in words}
            self._add_words(missing)
        if self._speedups is not None:
            columns, pairs = self._speedups.encode_texts(chunk_words, chunk_counts, cache, self._table, self._prefixes)
            self._pairs += pairs
            for index, origin in enumerate(origins):
                if origin is not None:
                    ids, starts, ends = columns[index]
                    columns[index] = (ids, *_to_source(starts, ends, origin, len(texts[index])))
            return columns
        out = []
        next_chunk = 0
        for text, origin, count in zip(texts, origins, chunk_counts):
            ids: list[int] = []
            starts: list[int] = []
            ends: list[int] = []
            start = 0
            for words in chunk_words[next_chunk:next_chunk + count]:
                start = self._encode_chunk(words, start, ids, starts, ends) + 1  # + 1: the space after the chunk
            next_chunk += count
            if origin is not None:
                starts, ends = _to_source(starts, ends, origin, len(text))
            out.append((ids, starts, ends))
        return out

    def _add_words(self, words: set[str]) -> None:
        """Cache each word's sentencepiece cut (in vocab ids), score and whether it can begin a piece."""
        self._pieces._cache_words(words)  # the scores the reference path uses, computed once
        spm_cache, to_vocab, prefixes = self._pieces._word_cache, self._spm_to_vocab, self._prefixes
        for word in words:
            spm_pieces, score = spm_cache[word]
            ids = tuple(to_vocab[piece_id] for piece_id, _, _ in spm_pieces)
            spans = tuple((start, end) for _, start, end in spm_pieces)
            starts_piece = word in prefixes
            self._cache[word] = (ids, spans, _lengths_if_tiling(spans, len(word)), score, starts_piece, len(word),
                                 {} if starts_piece else None)

    def _encode_chunk(self, words: list[str], start: int, ids: list[int], starts: list[int], ends: list[int]) -> int:
        """Append the tokens of one space-free chunk (its words; ``start``: its first char); return its end."""
        units = list(map(self._cache.__getitem__, words))
        if len(units) > 1:
            units = self._best_units(words, units)
        lengths = list(map(_LENGTHS, units))
        if None not in lengths:  # the pieces tile every unit: spans from lengths, in C
            positions = list(accumulate(chain.from_iterable(lengths), initial=start))
            ids.extend(chain.from_iterable(map(_IDS, units)))
            starts.extend(positions[:-1])
            ends.extend(positions[1:])
            return positions[-1]
        position = start
        for unit_ids, spans, _, _, _, size, _ in units:
            ids.extend(unit_ids)
            starts.extend([position + s for s, _ in spans])
            ends.extend([position + e for _, e in spans])
            position += size
        return position

    def _best_units(self, words: list[str], units: list[Unit]) -> list[Unit]:
        """PieceEncoder._best_cut's Viterbi over word boundaries: each step is one word cut by
        sentencepiece, or one piece covering words ``k..m-1`` whole, tried in the same order with
        the same strict ``>`` (so the same ties win). Returns the chosen units, in order."""
        n = len(words)
        table_get, prefixes = self._table.get, self._prefixes
        best = [0.0]
        best.extend([_NEG] * n)
        piece_at = [-1] * (n + 1)  # vocab id of the multi-word piece of the best step ending here, -1: a word
        first_word: list[int] | None = None  # first word of that piece; built when a piece first wins
        k = 0
        for score, followers in zip(map(_SCORE, units), map(_FOLLOWERS, units)):
            base = best[k]
            k += 1
            score += base
            if score > best[k]:
                best[k] = score
                piece_at[k] = -1
            if followers is not None and k < n:  # the word can begin a multi-word piece
                following = words[k]
                pair = followers.get(following)
                if pair is None:  # first time these two words meet
                    candidate = words[k - 1] + following
                    pair = followers[following] = (table_get(candidate), candidate in prefixes)
                    self._pairs += 1
                entry, longer = pair  # the piece of words k-1..k (cached per pair), then longer ones
                m = k + 1
                candidate = words[k - 1] + following if longer else ""
                while True:
                    if entry is not None and base + entry[0] > best[m]:
                        best[m] = base + entry[0]
                        piece_at[m] = entry[1]
                        if first_word is None:
                            first_word = list(range(-1, n))
                        first_word[m] = k - 1
                    if not (longer and m < n):
                        break
                    candidate += words[m]
                    m += 1
                    entry = table_get(candidate)
                    longer = candidate in prefixes
        if first_word is None:  # no multi-word piece ever won: every word keeps its own cut
            return units
        chosen = []
        m = n
        while m > 0:
            vocab_id = piece_at[m]
            if vocab_id < 0:
                m -= 1
                chosen.append(units[m])
            else:
                k = first_word[m]
                length = sum(map(len, words[k:m]))
                chosen.append(((vocab_id,), ((0, length),), (length,), 0.0, False, length, None))
                m = k
        chosen.reverse()
        return chosen


def _lengths_if_tiling(spans: tuple[tuple[int, int], ...], word_len: int) -> tuple[int, ...] | None:
    """Piece lengths when the pieces cover ``[0, word_len)`` end to end with no empty piece, else None."""
    position = 0
    for start, end in spans:
        if start != position or end <= start:
            return None
        position = end
    return tuple(end - start for start, end in spans) if position == word_len else None


def _to_source(starts: list[int], ends: list[int], origin: tuple[int, ...], text_len: int
               ) -> tuple[list[int], list[int]]:
    """Spans in normalised chars -> spans in source chars (as ``SubwordTokenizer._to_vocab_spans``)."""
    source_starts, source_ends = [], []
    for start, end in zip(starts, ends):
        if start < end:
            source_starts.append(origin[start])
            source_ends.append(origin[end - 1] + 1)
        else:  # zero-width: keep the position, in source chars
            position = origin[start] if start < len(origin) else text_len
            source_starts.append(position)
            source_ends.append(position)
    return source_starts, source_ends
