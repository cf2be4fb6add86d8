"""ERNIE 1.0's char tokenizer: BERT basic tokenization + WordPiece, with exact character spans.

    text -> clean (drop control chars, whitespace -> space) -> split on whitespace, one CJK char per word
         -> lower-case + strip accents (NFD, drop Mn) -> split off punctuation -> WordPiece -> ids

This is the algorithm of Google BERT's ``FullTokenizer`` (and ERNIE 1.0's copy of it),
token for token, except that every step carries the index of the ORIGINAL character
each normalised character came from. Lower-casing and accent stripping change lengths
("É" -> "e", "İ" -> "i" + U+0307 -> "i"), so offsets are never recomputed from the
normalised string: each token's span is ``[first source char, last source char + 1)``.
Stripped accents belong to no token. Two known differences from transformers: its
``tokenize()`` keeps "[SEP]" typed in the text as one special token (we split it, as
Google's FullTokenizer does, so text cannot inject specials), and its newer python
tokenizer NFC-composes the text first, which only matters with ``do_lower_case=False``.

Usage::

    tok = CharTokenizer.from_vocab_file("ernie-1.0/vocab.txt")
    enc = tok.encode("酒店很干净", "房间不错", max_len=128)
    enc.tokens  # ['[CLS]', '酒', '店', ..., '[SEP]', '房', ..., '[SEP]']
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from ernie_tiny.tokenization.encoding import (CLS, MASK, PAD, SEP, UNK, VOCAB_SPECIALS, Columns, Encoding,
                                              SpecialTokenIds, encodings_from_columns, join_with_specials,
                                              truncate_longest_first)
from ernie_tiny.io_utils import atomic_write_json, atomic_write_text
from ernie_tiny.tokenization.char_fast import PLAIN_TEXT, PlainCharTokens, rust_char_tokens
from ernie_tiny.tokenization.vocab_files import TOKENIZER_CONFIG, VOCAB_FILE, index_vocab, read_vocab_lines

MAX_CHARS_PER_WORD = 100  # BERT's max_input_chars_per_word: longer words become one [UNK]

# A "piece" is a run of normalised characters, each paired with the index of its source character.
Piece = tuple[tuple[str, int], ...]


def is_whitespace(char: str) -> bool:
    """BERT's whitespace: space, tab, newline, CR and Unicode Zs."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """BERT's control chars: Unicode C* except tab/newline/CR (those count as whitespace)."""
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """BERT's punctuation: all non-alphanumeric ASCII (``$``, ``^``, ``` ` ``` too) and Unicode P*."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk(char: str) -> bool:
    """CJK Unified Ideographs (and extensions / compatibility blocks): tokenized one char each."""
    cp = ord(char)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def is_separator(char: str) -> bool:
    # str.split() in BERT's whitespace_tokenize also splits on U+2028/U+2029 (Zl/Zp), which survive cleaning.
    return is_whitespace(char) or char.isspace()


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def normalize_word(word: str, indices: list[int], do_lower_case: bool) -> list[tuple[str, int]]:
    """Lower-case and strip accents of one whitespace-delimited word, keeping source indices.

    The word is lower-cased whole, as BERT does (Python lower-cases a final capital
    sigma in context: "ΑΣ" -> "ας"), then cut back into per-source-char slices: each
    char's lower-case form has the same length alone as in context ("İ" -> "i̇" is 2).
    """
    if not do_lower_case:
        return list(zip(word, indices, strict=True))
    whole = word.lower()
    lowered = []
    at = 0
    for char, i in zip(word, indices, strict=True):
        width = len(char.lower())
        lowered.extend((low, i) for low in whole[at:at + width])
        at += width
    return [(out, i) for char, i in lowered for out in strip_accents(char)]


class CharTokenizer(SpecialTokenIds):
    """Char-level ERNIE 1.0 tokenizer over a ``vocab.txt`` (implements ``ernie_tiny.tokenization.encoding.Tokenizer``)."""

    kind = "char"

    def __init__(self, vocab: dict[str, int], do_lower_case: bool = True, reference: bool = False):
        """``reference``: tokenize in Python only (the reference the Rust hot path is held to)."""
        missing = [t for t in (PAD, CLS, SEP, MASK, UNK) if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {', '.join(missing)}")
        ids = sorted(vocab.values())
        if ids != list(range(len(vocab))):
            raise ValueError(f"vocabulary ids must be 0..{len(vocab) - 1} with no gaps or repeats")
        self.vocab = dict(vocab)
        self.do_lower_case = do_lower_case
        self.id_to_token_list = [""] * len(vocab)
        for token, index in vocab.items():
            self.id_to_token_list[index] = token
        # WordPiece of one piece depends only on its text: cache it (review text repeats a lot).
        self._wordpiece = lru_cache(maxsize=1 << 16)(self._wordpiece_uncached)
        self.reference = reference
        # hot paths (see char_fast): a regex over plain text, else Rust where installed and equal, else Python
        self._plain = None if reference else PlainCharTokens(self.vocab, do_lower_case, self._wordpiece)
        self._rust = None if reference else rust_char_tokens(self.vocab, do_lower_case)

    def __getstate__(self) -> dict:
        # The per-instance cache cannot be pickled (DataLoader workers, multiprocessing): rebuild it.
        return {"vocab": self.vocab, "do_lower_case": self.do_lower_case, "reference": self.reference}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["vocab"], state["do_lower_case"], state.get("reference", False))

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, do_lower_case: bool = True) -> "CharTokenizer":
        """Read ``vocab.txt``: one token per line (id = line number) or ERNIE's ``token<TAB>id`` lines."""
        return cls(read_vocab_file(path), do_lower_case=do_lower_case)

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> "CharTokenizer":
        """Read ``vocab.txt`` and, when present, ``tokenizer_config.json`` (``do_lower_case``)."""
        directory = Path(directory)
        do_lower_case = True
        config_path = directory / TOKENIZER_CONFIG
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
                kind = config.get("kind", "char")
                do_lower_case = bool(config.get("do_lower_case", True))
            except (json.JSONDecodeError, AttributeError) as err:
                raise ValueError(f"{config_path}: unreadable tokenizer config: {err}") from err
            if kind != "char":
                raise ValueError(f"{config_path}: tokenizer kind is {kind!r}, expected 'char'")
        return cls.from_vocab_file(directory / VOCAB_FILE, do_lower_case=do_lower_case)

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None,
                   do_lower_case: bool = True) -> "CharTokenizer":
        """Build a char vocabulary from a corpus, for teachers trained from scratch.

        Specials come first ([PAD]=0, [CLS]=1, [SEP]=2, [MASK]=3, [UNK]=4), then every
        char the basic tokenizer produces: a char that starts a word as itself, a char
        inside a Latin/digit word as ``##char`` (so "hotel" -> h ##o ##t ##e ##l, never
        [UNK]). Most frequent first; ties broken by the token string, so the vocabulary
        is the same on every run. ``max_size`` counts the specials.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < len(VOCAB_SPECIALS):
            raise ValueError(f"max_size must be at least {len(VOCAB_SPECIALS)} (the special tokens)")
        counts: Counter[str] = Counter()
        for text in texts:
            for piece in basic_pieces(text, do_lower_case):
                counts[piece[0][0]] += 1
                counts.update("##" + char for char, _ in piece[1:])
        ranked = sorted((t for t, n in counts.items() if n >= min_freq and t not in VOCAB_SPECIALS),
                        key=lambda t: (-counts[t], t))
        tokens = list(VOCAB_SPECIALS) + ranked
        if max_size is not None:
            tokens = tokens[:max_size]
        return cls({t: i for i, t in enumerate(tokens)}, do_lower_case=do_lower_case)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``vocab.txt`` (one token per line, in id order) and ``tokenizer_config.json``."""
        directory = Path(directory)
        atomic_write_text(directory / VOCAB_FILE, "".join(t + "\n" for t in self.id_to_token_list))
        atomic_write_json(directory / TOKENIZER_CONFIG, {"kind": self.kind, "do_lower_case": self.do_lower_case})

    # ---- vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def id_to_token(self, index: int) -> str:
        return self.id_to_token_list[index]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.token_to_id(t) for t in tokens]

    # ---- tokenization -------------------------------------------------------------------------

    def _wordpiece_uncached(self, piece: str) -> tuple[tuple[str, int, int], ...]:
        """Greedy longest-match-first WordPiece: (token, start, end) in chars of ``piece``."""
        if len(piece) > MAX_CHARS_PER_WORD:
            return ((UNK, 0, len(piece)),)
        out = []
        start = 0
        while start < len(piece):
            end = len(piece)
            while end > start:
                candidate = piece[start:end] if start == 0 else "##" + piece[start:end]
                if candidate in self.vocab:
                    out.append((candidate, start, end))
                    break
                end -= 1
            else:  # no prefix of the rest is in the vocabulary: the whole word is unknown
                return ((UNK, 0, len(piece)),)
            start = end
        return tuple(out)

    def tokenize_with_spans(self, text: str) -> list[tuple[str, int, int]]:
        """Tokens of ``text`` with the ``[start, end)`` span of source characters each came from."""
        out = []
        for piece in basic_pieces(text, self.do_lower_case):
            for token, start, end in self._wordpiece("".join(char for char, _ in piece)):
                out.append((token, piece[start][1], piece[end - 1][1] + 1))
        return out

    def tokenize(self, text: str) -> list[str]:
        return [token for token, _, _ in self.tokenize_with_spans(text)]

    def encode(self, text_a: str, text_b: str | None = None, max_len: int = 128) -> Encoding:
        """``[CLS] a [SEP] (b [SEP])`` with type ids 0/1, truncated longest-first to ``max_len``."""
        n_special = 2 if text_b is None else 3
        if max_len < n_special:
            raise ValueError(f"max_len {max_len} leaves no room for the {n_special} special tokens")
        if self._plain is not None:
            return self.encode_batch([(text_a, text_b)], max_len)[0]
        return self.encode_reference(text_a, text_b, max_len)

    def encode_reference(self, text_a: str, text_b: str | None = None, max_len: int = 128) -> Encoding:
        """:meth:`encode` in Python: BERT's algorithm step by step (the reference of the Rust path)."""
        n_special = 2 if text_b is None else 3
        if max_len < n_special:
            raise ValueError(f"max_len {max_len} leaves no room for the {n_special} special tokens")
        parts = [self.tokenize_with_spans(text_a)]
        if text_b is not None:
            parts.append(self.tokenize_with_spans(text_b))
        budget = max_len - n_special
        truncated = sum(len(part) for part in parts) > budget
        if truncated:
            parts = truncate_longest_first(parts, budget)
        tokens, type_ids, spans = join_with_specials(parts, CLS, SEP)
        return Encoding(tokens=tokens, input_ids=self.convert_tokens_to_ids(tokens), token_type_ids=type_ids,
                        spans=spans, unk_mask=[t == UNK for t in tokens], truncated=truncated)

    def encode_batch(self, pairs: list[tuple[str, str | None]] | list[str], max_len: int = 128) -> list[Encoding]:
        """:meth:`encode` each ``(text_a, text_b)`` pair (a bare string is ``(text, None)``), on the hot paths
        of ``char_fast`` where they give the same tokens, else in Python."""
        pairs = [(p, None) if isinstance(p, str) else (p[0], p[1]) for p in pairs]
        if self._plain is None:
            return [self.encode_reference(a, b, max_len) for a, b in pairs]
        for text_a, text_b in pairs:
            if not isinstance(text_a, str) or not (text_b is None or isinstance(text_b, str)):
                raise TypeError(f"expected text strings, got {type(text_a).__name__} / {type(text_b).__name__}")
            if max_len < (2 if text_b is None else 3):
                raise ValueError(f"max_len {max_len} leaves no room for the {2 if text_b is None else 3} "
                                 f"special tokens")
        texts = [t for a, b in pairs for t in ((a,) if b is None else (a, b))]
        return encodings_from_columns(self._columns(texts), [b is not None for _, b in pairs], max_len, self.cls_id,
                                      self.sep_id, self.unk_id, self.id_to_token_list)

    def _columns(self, texts: list[str]) -> list[Columns]:
        plain = [PLAIN_TEXT.fullmatch(text) is not None for text in texts]
        rest = [text for text, is_plain in zip(texts, plain) if not is_plain]
        found = iter(self._rust.columns(rest) if self._rust is not None and rest else [None] * len(rest))
        out = []
        for text, is_plain in zip(texts, plain):
            if is_plain:
                out.append(self._plain.columns(text))
            else:
                columns = next(found)
                out.append(columns if columns is not None else self._python_columns(text))
        return out

    def _python_columns(self, text: str) -> Columns:
        tokens = self.tokenize_with_spans(text)
        return ([self.token_to_id(t) for t, _, _ in tokens], [s for _, s, _ in tokens], [e for _, _, e in tokens])


def basic_pieces(text: str, do_lower_case: bool) -> list[Piece]:
    """BERT's BasicTokenizer: the pieces WordPiece runs on, each char paired with its source index."""
    words: list[tuple[str, list[int]]] = []
    chars: list[str] = []
    indices: list[int] = []

    def end_word() -> None:
        if chars:
            words.append(("".join(chars), list(indices)))
            chars.clear()
            indices.clear()

    for i, char in enumerate(text):
        if char == "\x00" or char == "\ufffd" or is_control(char):
            continue
        if is_separator(char):
            end_word()
        elif is_cjk(char):
            end_word()
            words.append((char, [i]))
        else:
            chars.append(char)
            indices.append(i)
    end_word()

    pieces: list[Piece] = []
    for word, word_indices in words:
        current: list[tuple[str, int]] = []
        for char, i in normalize_word(word, word_indices, do_lower_case):
            if is_punctuation(char) or is_separator(char):
                if current:
                    pieces.append(tuple(current))
                    current = []
                if not is_separator(char):
                    pieces.append(((char, i),))
            else:
                current.append((char, i))
        if current:
            pieces.append(tuple(current))
    return pieces


def load_model_vocab(directory: str | os.PathLike, model_vocab_size: int) -> "CharTokenizer | None":
    """A checkpoint folder's ``vocab.txt`` (None if absent); its ids must fit the model's embedding rows."""
    directory = Path(directory)
    if not (directory / VOCAB_FILE).is_file():
        return None
    tokenizer = CharTokenizer.from_directory(directory)
    if tokenizer.vocab_size > model_vocab_size:
        raise ValueError(f"{directory / VOCAB_FILE}: {tokenizer.vocab_size} tokens but the model embeds only "
                         f"{model_vocab_size}")
    return tokenizer


def read_vocab_file(path: str | os.PathLike) -> dict[str, int]:
    """Parse a vocab file: plain ``token`` lines (id = line number) or ``token<TAB>id`` lines (ERNIE 1.0)."""
    path = Path(path)
    lines = read_vocab_lines(path)
    tab_format = bool(lines) and "\t" in lines[0]  # the first line decides for the whole file

    def tokens_and_ids() -> Iterator[tuple[str, int]]:
        for line_no, line in enumerate(lines, start=1):
            if not tab_format:
                yield line, line_no - 1
                continue
            token, sep, index_text = line.rpartition("\t")
            if not sep or not index_text.strip().lstrip("-").isdigit():
                raise ValueError(f"{path}:{line_no}: expected 'token<TAB>id' like the lines above, got {line!r}")
            yield token, int(index_text)

    vocab = index_vocab(tokens_and_ids(), path)
    if not vocab:
        raise ValueError(f"{path}: empty vocabulary")
    ids = sorted(vocab.values())
    if ids != list(range(len(vocab))):
        raise ValueError(f"{path}: ids must be 0..{len(vocab) - 1} with no gaps or repeats")
    return vocab
