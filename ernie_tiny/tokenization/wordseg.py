"""The one home of word segmentation: every jieba user in ernie-tiny goes through this module.

- :class:`JiebaSegmenter` / :class:`MaxMatchSegmenter`: the segmenters that run before sentencepiece
  (jieba, or the ERNIE-tiny release's dictionary matching);
- :func:`default_jieba`: jieba with its default dictionary, loaded once per process, quietly;
- :func:`pos_words`: ``jieba.posseg`` words and part-of-speech tags (knowledge masking, augmentation);
  :func:`pos_words_many` runs it over many texts in worker processes, :func:`pos_dictionary_digest`
  names the dictionary state its cuts depend on (for caches of its output).

:class:`JiebaSegmenter` gives jieba's own cuts, computed fast: jieba-rs (``rjieba``, compiled)
finds the dictionary route with HMM off, and jieba's HMM step runs here, in Python, on the runs of
single chars the route leaves, exactly as ``jieba.Tokenizer.cut`` does (see :class:`CompiledJieba`
for why not rjieba's own HMM). Text that jieba-rs reads differently, a user dictionary, or a
machine without ``rjieba`` takes Python jieba itself; ``reference=True`` always does.

The segmenters cut a normalised text with no spaces (the tokenizer splits on spaces first) into
words that concatenate back to it exactly. Usage::

    JiebaSegmenter().words("酒店服务很到位")            # ['酒店', '服务', '很', '到位']
    MaxMatchSegmenter(frozenset({"酒店", "服务"})).words("酒店服务好")  # ['酒店', '服务', '好']
"""

from __future__ import annotations

import hashlib
import json
import logging
import marshal
import multiprocessing
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from typing import Protocol

from ernie_tiny.tokenization.speedups import compiled_speedups

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

    Without a user dictionary the words come from :class:`CompiledJieba` (the same cuts, ~10x
    faster) wherever it is installed and the text is one it reads like jieba; ``reference=True``
    keeps Python jieba for every text (the reference of the parity tests).
    """

    def __init__(self, user_dict_text: str | None = None, reference: bool = False):
        self.user_dict_text = user_dict_text
        self.reference = reference
        self._jieba = None  # built on first use: loading jieba's dictionary takes ~1 s
        # jieba-rs's add_word is not proven to cut like jieba's, so a user dictionary keeps Python jieba
        self._use_compiled = not reference and not parse_user_dict(user_dict_text or "")

    @property
    def compiled(self) -> bool:
        """True when words come from jieba-rs (rjieba) where it is safe, False for Python jieba only."""
        return self._use_compiled and compiled_jieba() is not None

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
        if self._use_compiled:
            compiled = compiled_jieba()  # loaded on first use (~0.4 s), like jieba's dictionary
            words = compiled.words(text) if compiled is not None else None
            if words is not None:
                return words
        return self.reference_words(text)

    def words_of_texts(self, texts: list[str]) -> list[list[str]]:
        """:meth:`words` of each text, from one cut of the texts joined by :data:`TEXT_SEPARATOR`
        (a control char: jieba and jieba-rs give it back as a word of its own, and no HMM run crosses it)."""
        compiled = compiled_jieba() if self._use_compiled else None
        words = compiled.words(TEXT_SEPARATOR.join(texts)) if compiled is not None and texts else None
        if words is None:
            return [self.words(text) for text in texts]
        out = []
        start = 0
        find = words.index
        for _ in range(len(texts) - 1):
            end = find(TEXT_SEPARATOR, start)
            out.append(words[start:end])
            start = end + 1
        out.append(words[start:])
        return out

    def reference_words(self, text: str) -> list[str]:
        """Python jieba's own cut of ``text`` (what :meth:`words` must equal)."""
        words = list(self._tokenizer().cut(text, HMM=True))
        if "".join(words) != text:  # never seen; keeps the spans exact if jieba ever drops a char
            return list(text)
        return words


# Chars jieba-rs counts as CJK (inside its word blocks) but Python jieba does not (it cuts them off
# one by one): the whole of U+3400-4DBF, 9FD6-9FFF, F900-FAFF and the supplementary CJK planes.
# Measured on every code point with rjieba 0.2.2 (jieba-rs 0.11); such text takes Python jieba.
_COMPILED_DIFFERS = re.compile("[\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")
# Single chars that stay inside one of jieba's blocks (its re_han_default): HMM buffers never cross the rest.
_ASCII_BLOCK_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+#&._%-")
TEXT_SEPARATOR = "\x01"  # joins texts for one cut; normalised text never holds a control char
HMM_CACHE_SIZE = 1 << 16  # distinct single-char runs whose HMM cut is kept (review text repeats them)


class CompiledJieba:
    """jieba's precise-mode cut with HMM, exactly, from jieba-rs's dictionary route.

    ``jieba.Tokenizer.cut(text, HMM=True)`` is: the best dictionary route through the DAG, then
    each run of single-char route words (inside one block) that is not itself a dictionary word
    goes to ``jieba.finalseg``'s HMM. jieba-rs computes the same route with the same dictionary
    (rjieba's ``cut(text, hmm=False)`` equals jieba's ``HMM=False`` cut), but its HMM step cuts
    ASCII differently ("1-2", "1.check", "1.320g" stay whole: its skip regex differs). So only the
    route comes from jieba-rs, and the HMM step runs here, with jieba's own ``finalseg``, cached per
    run. The one thing HMM-off output hides is where a run of single ASCII letters/digits lies (jieba
    joins them into one word): such a word is a run of singles, since jieba's dictionary holds no
    all-ASCII-alphanumeric word (checked per word; a hit hands the text back to Python jieba).
    """

    def __init__(self, rjieba_tokenizer, compiled: bool = True) -> None:  # noqa: ANN001 (rjieba has no stubs)
        """``compiled``: group the route in C (``jieba_words`` in ``_speedups.c``) where it is built."""
        import jieba.finalseg

        self._cut = rjieba_tokenizer.cut
        self._has_word = rjieba_tokenizer.has_word
        self._hmm_words = lru_cache(maxsize=HMM_CACHE_SIZE)(lambda run: tuple(jieba.finalseg.cut(run)))
        self._speedups = compiled_speedups() if compiled else None

    def words(self, text: str) -> list[str] | None:
        """jieba's words of ``text``, or None where only Python jieba can tell (rare; see the class)."""
        if _COMPILED_DIFFERS.search(text) is not None:
            return None
        if self._speedups is not None:
            out = self._speedups.jieba_words(self._cut(text, False), self._has_word, self._hmm_words)
        else:
            out = self._route_words(self._cut(text, False))
        return out if out is not None and "".join(out) == text else None

    def _route_words(self, route: list[str]) -> list[str] | None:
        """jieba's words from the HMM-off route (the C ``jieba_words`` is this loop)."""
        out: list[str] = []
        run = ""  # consecutive single-char route words of one block, for the HMM
        for word in route:
            if len(word) == 1:
                if "\u4e00" <= word <= "\u9fd5" or word in _ASCII_BLOCK_CHARS:
                    run += word
                    continue
            elif word.isascii() and word.isalnum():  # HMM off joins single ASCII letters/digits
                if self._has_word(word):
                    return None
                run += word
                continue
            if run:
                self._flush(run, out)
                run = ""
            out.append(word)
        if run:
            self._flush(run, out)
        return out

    def _flush(self, run: str, out: list[str]) -> None:
        """jieba's ``__cut_DAG`` on a finished run of single chars: alone, its chars, or the HMM's words."""
        if len(run) == 1:
            out.append(run)
        elif self._has_word(run):
            out.extend(run)
        else:
            out.extend(self._hmm_words(run))


@lru_cache(maxsize=1)
def compiled_jieba() -> CompiledJieba | None:
    """The process's :class:`CompiledJieba` over a private jieba-rs dictionary, or None without ``rjieba``."""
    try:
        import rjieba
    except ImportError:
        return None
    return CompiledJieba(rjieba.Jieba())


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


POS_CHUNK_SIZE = 200  # texts per worker task in pos_words_many: balances the workers and paces the progress


def _pos_words_chunk(words_of: Callable[[str, bool], list[tuple[str, str]]], texts: Sequence[str],
                     hmm: bool) -> list[list[tuple[str, str]]]:
    """``words_of`` every text of one chunk (runs in a worker process: top-level, so spawn can pickle it)."""
    return [words_of(text, hmm) for text in texts]


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork shares the parent's loaded jieba dictionary; spawn (macOS/Windows) reloads it per worker.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def pos_words_many(texts: Sequence[str], hmm: bool = True, workers: int = 1, chunk_size: int = POS_CHUNK_SIZE,
                   progress: Callable[[int, int], None] | None = None,
                   words_of: Callable[[str, bool], list[tuple[str, str]]] = pos_words) -> list[list[tuple[str, str]]]:
    """``words_of(text, hmm)`` of every text, in input order: :func:`pos_words` unless a caller wraps it.

    ``texts`` should be distinct (callers deduplicate; a repeated text is cut again). With
    ``workers`` > 1 the texts go in chunks of ``chunk_size`` to worker processes, forked where the
    platform can (so they share the parent's loaded dictionary, including words added to it);
    ``words_of`` must then be a top-level function (spawn pickles it by name). ``progress(done,
    total)`` is called with ``(0, total)`` first, then after each chunk. jieba is deterministic, so
    the result never depends on ``workers`` or ``chunk_size``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks = [texts[i:i + chunk_size] for i in range(0, len(texts), chunk_size)]
    _posseg()  # load the dictionary before forking, so workers share it
    out: list[list[tuple[str, str]]] = []
    if progress is not None:
        progress(0, len(texts))
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_pool_context()) as pool:
            for words in pool.map(_pos_words_chunk, [words_of] * len(chunks), chunks, [hmm] * len(chunks)):
                out.extend(words)
                if progress is not None:
                    progress(len(out), len(texts))
    else:
        for chunk in chunks:
            out.extend(_pos_words_chunk(words_of, chunk, hmm))
            if progress is not None:
                progress(len(out), len(texts))
    return out


def pos_dictionary_digest() -> str:
    """sha256 (hex) of the dictionary state :func:`pos_words`'s cuts depend on, for keys of caches of its output.

    That is the word frequencies and their total in the tokenizer ``jieba.posseg`` cuts with (they
    decide the route) and posseg's word -> tag table, user words' tags included. It is computed afresh
    on every call (~0.13 s on the default dictionary), so every change gives another digest:
    ``add_word`` with or without a tag, ``del_word`` (which keeps the table's size and total),
    ``suggest_freq(..., tune=True)``, ``load_userdict``, another dictionary. The same tables filled
    in another order give another digest too: a needless rebuild of a cache, never a stale one.
    Not covered: jieba's code and its HMM model tables (the jieba version stands for them).
    """
    posseg = _posseg().dt
    posseg.tokenizer.check_initialized()  # as the next cut would: a jieba.set_dictionary takes effect here
    posseg.makesure_userdict_loaded()  # user words' tags join the tag table, as at the next cut
    digest = hashlib.sha256(json.dumps(posseg.tokenizer.total).encode("utf-8"))
    for table in (posseg.tokenizer.FREQ, posseg.word_tag_tab):
        # marshal format 2 writes no back-references, so the bytes depend on the table's items and
        # order only (the digest is the same on Python 3.10-3.13: a cache built here serves a GPU
        # host); it serialises the ~500k entries in C (json or pickle take 2-4x longer)
        digest.update(marshal.dumps(table, 2))
    return digest.hexdigest()
