"""The one home of word segmentation: every jieba user in ernie-tiny goes through this module.

- :class:`JiebaSegmenter` / :class:`MaxMatchSegmenter`: the segmenters that run before sentencepiece
  (jieba, or the ERNIE-tiny release's dictionary matching);
- :func:`default_jieba`: jieba with its default dictionary, loaded once per process, quietly;
- :func:`pos_words`: ``jieba.posseg`` words and part-of-speech tags (knowledge masking, augmentation).

The segmenters cut a normalised text with no spaces (the tokenizer splits on spaces first) into
words that concatenate back to it exactly. Usage::

    JiebaSegmenter().words("酒店服务很到位")            # ['酒店', '服务', '很', '到位']
    MaxMatchSegmenter(frozenset({"酒店", "服务"})).words("酒店服务好")  # ['酒店', '服务', '好']
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Protocol

# jieba.load_userdict's own line format: "word [freq] [tag]".
_USER_DICT_LINE = re.compile(r"^(.+?)( [0-9]+)?( [a-z]+)?$")


class WordSegmenter(Protocol):
    def words(self, text: str) -> list[str]:
        """Cut ``text`` (normalised, without spaces) into words that join back to ``text``."""
        ...


class JiebaSegmenter:
    """jieba's default (precise, HMM) mode, with an optional user dictionary.

    Each tokenizer gets its own ``jieba.Tokenizer``, so a user dictionary never leaks into
    other code that uses jieba's global instance. User words are normalised like the
    text (lower-cased, NFKC), since jieba only ever sees normalised text here.
    """

    def __init__(self, user_dict_text: str | None = None):
        self.user_dict_text = user_dict_text
        self._jieba = None  # built on first use: loading jieba's dictionary takes ~1 s

    def _tokenizer(self):  # noqa: ANN202 (jieba has no type hints)
        if self._jieba is None:
            entries = parse_user_dict(self.user_dict_text or "")
            base = default_jieba()
            if not entries:
                self._jieba = base  # cutting only reads the dictionary: one copy serves every tokenizer
            else:
                import jieba

                # a private copy of the loaded default dictionary (loading it again would take ~1 s)
                tokenizer = jieba.Tokenizer()
                tokenizer.FREQ, tokenizer.total, tokenizer.initialized = dict(base.FREQ), base.total, True
                for word, freq, tag in entries:
                    tokenizer.add_word(word, freq, tag)
                self._jieba = tokenizer
        return self._jieba

    def words(self, text: str) -> list[str]:
        words = list(self._tokenizer().cut(text, HMM=True))
        if "".join(words) != text:  # never seen; keeps the spans exact if jieba ever drops a char
            return list(text)
        return words


@lru_cache(maxsize=1)
def default_jieba():  # noqa: ANN201 (jieba has no type hints)
    """A private jieba tokenizer with the default dictionary, loaded once per process, quietly.

    Private, so words another library adds to jieba's global instance never change our cuts.
    """
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at DEBUG to stderr
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


@lru_cache(maxsize=1)
def _posseg():  # noqa: ANN202
    """``jieba.posseg`` over jieba's global instance (where its POS table lives), initialised quietly."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)  # otherwise every process prints "Building prefix dict ..."
    jieba.initialize()
    return jieba.posseg


def pos_words(text: str, hmm: bool = True) -> list[tuple[str, str]]:
    """``jieba.posseg`` ``(word, tag)`` pairs of ``text`` (their concatenation is ``text``)."""
    return [(pair.word, pair.flag) for pair in _posseg().cut(text, HMM=hmm)]


def pos_word_tags() -> dict[str, str]:
    """jieba.posseg's dictionary table ``word -> tag`` (default dictionary)."""
    return _posseg().dt.word_tag_tab


def jieba_version() -> str:
    """The installed jieba's version (part of every cache key over jieba's output)."""
    import jieba

    return jieba.__version__


def parse_user_dict(text: str) -> list[tuple[str, int | None, str | None]]:
    """``(word, freq, tag)`` for each non-empty line of a jieba user dictionary, words normalised."""
    # imported here: the subword package imports this module (its segmenters) while it initialises
    from ernie_tiny.tokenization.subword.normalize import normalize_text

    entries = []
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        match = _USER_DICT_LINE.match(line)
        if match is None:  # cannot happen for a non-empty line; kept for clarity
            continue
        word, freq, tag = match.groups()
        word = normalize_text(word).text.replace(" ", "")
        if word:
            entries.append((word, int(freq) if freq else None, tag.strip() if tag else None))
    return entries


class MaxMatchSegmenter:
    """Forward maximum matching over a word list, as the ERNIE-tiny release's ``WSSPTokenizer.cut``.

    At each position take the longest dictionary word of at most ``window`` chars that starts
    there, else a single char.
    """

    def __init__(self, words: frozenset[str], window: int = 5):
        if window < 1:
            raise ValueError(f"wordseg window must be >= 1, got {window}")
        self.dictionary = words
        self.window = window

    def words(self, text: str) -> list[str]:
        out = []
        start = 0
        while start < len(text):
            size = min(self.window, len(text) - start)
            while size > 1 and text[start:start + size] not in self.dictionary:
                size -= 1
            out.append(text[start:start + size])
            start += size
        return out
