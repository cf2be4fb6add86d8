"""Knowledge units of one text from its words as arrays: the phrase and entity rules of masking.py, vectorised.

A text's words are three (W,) arrays: start char, end char and a tag class (:func:`tag_class`,
one small int per tag with the bits masking's rules read: nominal, inside a noun phrase,
numeral, measure word, entity kind). :func:`char_units` returns the character units of a level
as (U,) start / end / priority arrays, the same units as the rules written out word by word in
:mod:`ernie_tiny.pretrain.masking` (a property test compares them):

- phrase: a maximal run of noun-phrase words, cut back to its last nominal, is one phrase when
  it keeps >= 2 words (cut into chunks of ``max_phrase_words``); numeral + measure word is one
  unit; every other word is a unit of its own.
- entity: each entity word is a priority unit, consecutive person words merging while they
  span <= 4 chars; the words between entities get their phrase units.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NOMINAL, NOUN_PHRASE, NUMERAL, MEASURE = 1, 2, 4, 8  # tag class bits
ENTITY_SHIFT = 4  # bits 4-6: entity kind, 0 none
PERSON = 1
ENTITY_CODES = {"person": 1, "place": 2, "organisation": 3, "other": 4}


@lru_cache(maxsize=None)
def tag_class(tag: str) -> int:
    """The bits of ``tag`` that the unit rules read (the rules' own predicates decide each bit)."""
    from ernie_tiny.pretrain.masking import NOMINAL_TAGS, NOUN_MODIFIER_TAGS, entity_kind

    lower = tag.lower()
    nominal = lower.startswith(NOMINAL_TAGS)
    bits = (NOMINAL if nominal else 0) | (NOUN_PHRASE if nominal or lower in NOUN_MODIFIER_TAGS else 0)
    bits |= (NUMERAL if lower == "m" else 0) | (MEASURE if lower == "q" else 0)
    kind = entity_kind(tag)
    return bits | (ENTITY_CODES[kind] << ENTITY_SHIFT if kind is not None else 0)


def tag_classes(tags) -> np.ndarray:
    """(W,) int64 tag classes of an iterable of tags."""
    return np.array([tag_class(tag) for tag in tags], dtype=np.int64)


def entity_bounds(starts: np.ndarray, ends: np.ndarray, kinds: np.ndarray, max_person_chars: int) -> list[tuple[int, int]]:
    """``(first word, last word + 1)`` of each entity; consecutive person words merge up to ``max_person_chars``."""
    bounds = []
    candidates = np.flatnonzero(kinds > 0).tolist()
    n, k = len(kinds), 0
    while k < len(candidates):
        i = candidates[k]
        j = i + 1
        if kinds[i] == PERSON:
            while j < n and kinds[j] == PERSON and ends[j] - starts[i] <= max_person_chars:
                j += 1
        bounds.append((i, j))
        while k < len(candidates) and candidates[k] < j:
            k += 1
    return bounds


def phrase_unit_starts(classes: np.ndarray, max_phrase_words: int) -> np.ndarray:
    """(W,) bool: True where a word starts a phrase-level unit (words without NOUN_PHRASE bits break runs)."""
    n = len(classes)
    opens = np.ones(n, dtype=bool)
    if n == 0:
        return opens
    in_phrase = (classes & NOUN_PHRASE) > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], in_phrase.astype(np.int8), [0]])))
    run_starts, run_ends = edges[0::2], edges[1::2]  # (R,) maximal runs of noun-phrase words
    nominal_at = np.where((classes & NOMINAL) > 0, np.arange(n), -1)
    last_nominal = np.maximum.accumulate(nominal_at)[run_ends - 1] if len(run_ends) else run_ends  # (R,)
    phrase = last_nominal >= run_starts + 1  # the run cut back to its head noun keeps >= 2 words
    first, last = run_starts[phrase], last_nominal[phrase]
    lengths = last - first  # words after the first of each phrase
    inner = np.repeat(first - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum())) + 1
    offset_in_phrase = inner - np.repeat(first, lengths)
    opens[inner] = offset_in_phrase % max_phrase_words == 0
    if max_phrase_words >= 2:  # 一/m 年/q: the measure word joins its numeral (neither is ever in a run)
        opens[1:][((classes[:-1] & NUMERAL) > 0) & ((classes[1:] & MEASURE) > 0)] = False
    return opens


def char_units(starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, entity_level: bool, max_phrase_words: int,
               max_person_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U,) start chars, end chars and priority flags of the phrase (or entity) level units, sorted."""
    classes = np.asarray(classes, dtype=np.int64)
    kinds = classes >> ENTITY_SHIFT if entity_level else None
    if kinds is None or not kinds.any():  # without entity words the entity level is the phrase level
        firsts = np.flatnonzero(phrase_unit_starts(classes, max_phrase_words))
        lasts = np.append(firsts[1:], len(classes))[:len(firsts)] - 1  # (U,) each unit's last word
        return starts[firsts], ends[lasts], np.zeros(len(firsts), dtype=bool)
    entities = entity_bounds(starts, ends, kinds, max_person_chars)
    in_entity = np.zeros(len(classes), dtype=bool)
    for i, j in entities:
        in_entity[i:j] = True
    # entity words break noun runs and numeral + measure pairs, then each entity is one unit
    opens = phrase_unit_starts(np.where(in_entity, 0, classes), max_phrase_words)
    for i, j in entities:
        opens[i + 1:j] = False
    firsts = np.flatnonzero(opens)
    lasts = np.append(firsts[1:], len(classes))[:len(firsts)] - 1
    return starts[firsts], ends[lasts], in_entity[firsts]


@dataclass(frozen=True)
class SentenceWords:
    """One sentence's words: (W,) end chars (the words concatenate to the sentence) and tag classes."""

    ends: np.ndarray  # (W,) int64
    classes: np.ndarray  # (W,) int64

    @classmethod
    def of(cls, words) -> "SentenceWords":
        """From ``(word, tag)`` pairs."""
        return cls(np.cumsum([len(word) for word, _ in words], dtype=np.int64), tag_classes(tag for _, tag in words))


@dataclass(frozen=True)
class TextWords:
    """The words of one example text: (W,) start chars, end chars and tag classes."""

    starts: np.ndarray
    ends: np.ndarray
    classes: np.ndarray

    @classmethod
    def join(cls, offsets: list[int], sentences: list[SentenceWords]) -> "TextWords":
        """The words of sentences placed at char ``offsets`` of one text."""
        if not sentences:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty)
        ends = np.concatenate([s.ends + offset for s, offset in zip(sentences, offsets)])
        starts = np.concatenate([np.concatenate([[0], s.ends[:-1]]) + offset for s, offset in zip(sentences, offsets)])
        return cls(starts.astype(np.int64), ends, np.concatenate([s.classes for s in sentences]))

    def head(self, n: int) -> "TextWords":
        """The words inside the first ``n`` chars."""
        keep = self.ends <= n
        return self if keep.all() else TextWords(self.starts[keep], self.ends[keep], self.classes[keep])

    def tail(self, cut: int) -> "TextWords":
        """The words from char ``cut`` on, renumbered from 0."""
        keep = self.starts >= cut
        return TextWords(self.starts[keep] - cut, self.ends[keep] - cut, self.classes[keep])
