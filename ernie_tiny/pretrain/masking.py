"""ERNIE 1.0 knowledge masking: whole units (characters, words/phrases, named entities) until ~15% of tokens.

ERNIE 1.0 (Sun et al. 2019, "Enhanced Representation through Knowledge Integration") masks
knowledge units instead of single characters: from ``哈 [mask] 滨`` BERT learns character
co-occurrence, from ``[mask] [mask] [mask] 是黑龙江的省会`` ERNIE has to know the city. Three levels:

- **basic**: every token is a unit (BERT's masking).
- **phrase**: jieba words (People's Daily: its gold words) and multi-word phrases, chunked from
  the POS tags: a run of nominal / adjective / distinguishing words that ends in a nominal
  (``中央/n 人民/n 广播/vn 电台/n``) and numeral + measure word (``一/m 年/q``), at most
  ``max_phrase_words`` words each.
- **entity**: named entities (tags ``nr`` person, ``ns`` place, ``nt`` organisation, ``nz``
  other proper noun; jieba's ``nrt``/``nrfg`` are persons). People's Daily tags a surname and
  its given name apart (``江/nr 泽民/nr``): consecutive ``nr`` words of at most 4 characters form
  one person. Entities are chosen first; the rest of the 15% comes from the phrase-level units
  of the other words, so an entity-level text without entities is masked like a phrase-level one.

Each example draws one level from :class:`MaskingConfig`'s unit mix (ERNIE 1.0 draws ``mask_word``
vs ``mask_char`` once per file from a per-file probability; one draw per example mixes finer).
The units of a level partition the text's tokens; they are shuffled (priority units first)
and taken whole while they fit in the budget ``floor(mask_rate * n + u)``, ``u ~ U[0, 1)``
(stochastic rounding: the expected budget is exactly ``mask_rate * n`` even for short texts).
Every chosen token then becomes [MASK] with probability 0.8, a random non-special token with
0.1, or stays itself with 0.1, decided per token as ERNIE 1.0's ``batching.mask`` does; its
label is the original id and every other label is :data:`IGNORE_INDEX`.

All functions are pure given their ``numpy.random.Generator``; nothing imports torch. Example::

    config = MaskingConfig(basic=0.2, phrase=0.4, entity=0.4)
    encoding = tokenizer.encode("江泽民在北京会见了客人")
    words = [word_spans([("江", "nr"), ("泽民", "nr"), ("在", "p"), ("北京", "ns"), ...])]
    units = encoding_units(encoding, words, UnitLevel.entity, config)
    masked = mask_tokens(encoding.input_ids, units, config, tokenizer.mask_id, replacement_ids, rng)
    masked.labels      # original ids at the chosen units' positions, -100 elsewhere
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from enum import Enum

import numpy as np

from ernie_tiny.heads import IGNORE_INDEX
from ernie_tiny.tokenization.encoding import Encoding
from ernie_tiny.tokenization.wordseg import pos_words



class UnitLevel(str, Enum):
    basic = "basic"
    phrase = "phrase"
    entity = "entity"


# The first two letters of a PKU (People's Daily) or jieba tag -> entity kind.
ENTITY_KINDS = {"nr": "person", "ns": "place", "nt": "organisation", "nz": "other"}
MAX_PERSON_CHARS = 4  # 江/nr 泽民/nr -> 江泽民; longer runs of nr words are several people
NOMINAL_TAGS = ("n", "vn", "an", "j")  # prefixes: n* (nouns, entities), verbal and adjectival nouns, abbreviations
NOUN_MODIFIER_TAGS = ("a", "b")  # adjectives and distinguishing words inside a noun phrase


@dataclass(frozen=True)
class MaskingConfig:
    """How examples are masked; saved in the pretraining checkpoint's config."""

    mask_rate: float = 0.15  # share of a text's tokens that are predicted, chosen as whole units
    basic: float = 0.2  # unit mix: probability that an example masks single tokens (BERT's masking)
    phrase: float = 0.4  # ... jieba words and multi-word phrases
    entity: float = 0.4  # ... named entities first, then words/phrases to fill the budget
    mask_share: float = 0.8  # of the chosen tokens: replaced by [MASK]
    random_share: float = 0.1  # ... by a random non-special token; the rest (0.1) keep their token
    max_phrase_words: int = 4  # longest multi-word phrase unit, in words
    jieba_hmm: bool = True  # jieba.posseg's HMM for words outside its dictionary (texts without gold words)

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        mix = {level.value: getattr(self, level.value) for level in UnitLevel}
        if any(p < 0 for p in mix.values()) or abs(sum(mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"the unit mix basic/phrase/entity must be >= 0 and sum to 1, got {mix}")
        if self.mask_share < 0 or self.random_share < 0 or self.mask_share + self.random_share > 1.0 + 1e-9:
            raise ValueError(f"mask_share {self.mask_share} and random_share {self.random_share} must be >= 0 "
                             f"and sum to at most 1 (the rest keeps the original token)")
        if self.max_phrase_words < 1:
            raise ValueError(f"max_phrase_words must be >= 1, got {self.max_phrase_words}")

    def level_probabilities(self) -> dict[UnitLevel, float]:
        return {level: getattr(self, level.value) for level in UnitLevel}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "MaskingConfig":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown MaskingConfig fields: {', '.join(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class WordSpan:
    """One tagged word: characters ``[start, end)`` of its text."""

    start: int
    end: int
    tag: str


@dataclass(frozen=True)
class TextUnit:
    """A unit in characters of one text; ``priority`` units (entities) are chosen before the others."""

    start: int
    end: int
    priority: bool = False


@dataclass(frozen=True)
class MaskUnit:
    """A unit in token positions ``[start, end)`` of an encoding: masked whole or not at all."""

    start: int
    end: int
    priority: bool = False

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class MaskedTokens:
    input_ids: list[int]  # the encoding's ids with the chosen tokens replaced
    labels: list[int]  # original id at every chosen position, IGNORE_INDEX elsewhere
    chosen: tuple[MaskUnit, ...]  # the units that were masked, in position order


# ---- words ------------------------------------------------------------------------------------

def word_spans(words: Sequence[tuple[str, str]], offset: int = 0) -> list[WordSpan]:
    """Character spans of consecutive ``(word, tag)`` pairs whose concatenation is the text."""
    spans, position = [], offset
    for word, tag in words:
        spans.append(WordSpan(position, position + len(word), tag))
        position += len(word)
    return spans


def jieba_words(text: str, hmm: bool = True) -> list[tuple[str, str]]:
    """``jieba.posseg`` words and tags of ``text`` (their concatenation is ``text``)."""
    return pos_words(text, hmm)


def entity_kind(tag: str) -> str | None:
    """``person``/``place``/``organisation``/``other`` for an entity tag, None for any other tag."""
    return ENTITY_KINDS.get(tag.lower()[:2])


def _is_nominal(tag: str) -> bool:
    return tag.lower().startswith(NOMINAL_TAGS)


def _in_noun_phrase(tag: str) -> bool:
    return _is_nominal(tag) or tag.lower() in NOUN_MODIFIER_TAGS


def entity_units(words: Sequence[WordSpan]) -> list[TextUnit]:
    """Named entities, one unit each; consecutive person words (surname + given name) merge up to 4 chars."""
    units: list[TextUnit] = []
    i = 0
    while i < len(words):
        kind = entity_kind(words[i].tag)
        if kind is None:
            i += 1
            continue
        j = i + 1
        if kind == "person":
            while (j < len(words) and entity_kind(words[j].tag) == "person"
                   and words[j].end - words[i].start <= MAX_PERSON_CHARS):
                j += 1
        units.append(TextUnit(words[i].start, words[j - 1].end, priority=True))
        i = j
    return units


def phrase_units(words: Sequence[WordSpan], max_phrase_words: int) -> list[TextUnit]:
    """Every word as a unit, except that noun phrases and numeral + measure word become one unit."""
    units: list[TextUnit] = []
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and _in_noun_phrase(words[j].tag):
            j += 1
        while j > i and not _is_nominal(words[j - 1].tag):  # a noun phrase ends in its head noun
            j -= 1
        if j - i < 2 and i + 1 < len(words) and words[i].tag.lower() == "m" and words[i + 1].tag.lower() == "q":
            j = i + 2  # 一/m 年/q
        if j - i < 2:
            units.append(TextUnit(words[i].start, words[i].end))
            i += 1
            continue
        for begin in range(i, j, max_phrase_words):
            chunk = words[begin:min(begin + max_phrase_words, j)]
            units.append(TextUnit(chunk[0].start, chunk[-1].end))
        i = j
    return units


def text_units(level: UnitLevel, words: Sequence[WordSpan], max_phrase_words: int) -> list[TextUnit]:
    """The character units of one text at ``level``, sorted and non-overlapping.

    basic: none (every token becomes its own unit in :func:`token_units`); phrase: words and
    phrases; entity: entities (priority) plus the phrase units of the words between them.
    """
    if level is UnitLevel.basic:
        return []
    if level is UnitLevel.phrase:
        return phrase_units(words, max_phrase_words)
    entities = entity_units(words)
    units = list(entities)
    starts = {unit.start for unit in entities}
    ends = {unit.end for unit in entities}
    between: list[WordSpan] = []
    inside = False
    for word in words:
        if word.start in starts:
            inside = True
        if not inside:
            between.append(word)
        elif word.end in ends:
            inside = False
            units.extend(phrase_units(between, max_phrase_words))
            between = []
    units.extend(phrase_units(between, max_phrase_words))
    return sorted(units, key=lambda unit: unit.start)


# ---- tokens -----------------------------------------------------------------------------------

def token_units(positions: Sequence[int], token_starts: Sequence[int], units: Sequence[TextUnit]) -> list[MaskUnit]:
    """Group one text's tokens into units: a token belongs to the unit holding its first character.

    positions: the tokens' positions in the encoding (consecutive); token_starts: their first
    source characters (increasing); units: sorted, non-overlapping character units. A token in
    no unit (or every token, with no units) is a unit of its own; empty units are dropped, so
    truncation leaves the part of a unit that survived it.
    """
    unit_starts = [unit.start for unit in units]
    grouped: list[MaskUnit] = []
    current: int | None = None  # index into units of the open group
    group_start = 0
    for k, (position, char) in enumerate(zip(positions, token_starts)):
        u = bisect.bisect_right(unit_starts, char) - 1
        owner = u if u >= 0 and char < units[u].end else None
        if k > 0 and owner is not None and owner == current:
            continue
        if k > 0:
            grouped.append(MaskUnit(group_start, position, current is not None and units[current].priority))
        current, group_start = owner, position
    if positions:
        grouped.append(MaskUnit(group_start, positions[-1] + 1, current is not None and units[current].priority))
    return grouped


def encoding_units(encoding: Encoding, words_per_text: Sequence[Sequence[WordSpan] | None], level: UnitLevel,
                   config: MaskingConfig) -> list[MaskUnit]:
    """The units of every text of ``encoding`` (text_index 0 and, for a pair, 1) at ``level``.

    ``words_per_text[t]`` are the words of text ``t`` in the characters its spans use; they may
    be None at the basic level. Special tokens belong to no unit.
    """
    units: list[MaskUnit] = []
    for text_index, words in enumerate(words_per_text):
        positions = [i for i, span in enumerate(encoding.spans) if span.text_index == text_index]
        starts = [encoding.spans[i].start for i in positions]
        if level is not UnitLevel.basic and words is None:
            raise ValueError(f"the {level.value} level needs the words of text {text_index}")
        char_units = text_units(level, words or (), config.max_phrase_words)
        units.extend(token_units(positions, starts, char_units))
    return units


def seg_label_units(seg_labels: Sequence[int], level: UnitLevel) -> list[MaskUnit]:
    """Units of an ERNIE 1.0 id record from its ``seg_labels`` (0 word start, 1 inside a word, -1 [CLS]/[SEP]).

    basic: every token with a label >= 0; phrase and entity: the words (the id format carries no
    entity tags, so entity falls back to words, as ERNIE 1.0's ``mask_word`` does).
    """
    units: list[MaskUnit] = []
    start = None
    for position, label in enumerate(seg_labels):
        starts_unit = label == 0 or label == -1 or level is UnitLevel.basic or start is None
        if starts_unit and start is not None:
            units.append(MaskUnit(start, position))
            start = None
        if label >= 0 and start is None:
            start = position
    if start is not None:
        units.append(MaskUnit(start, len(seg_labels)))
    return units


# ---- choosing and replacing ---------------------------------------------------------------------

def choose_level(config: MaskingConfig, rng: np.random.Generator) -> UnitLevel:
    """One level drawn from the unit mix."""
    levels = list(UnitLevel)
    probabilities = np.array([getattr(config, level.value) for level in levels], dtype=np.float64)
    return levels[int(rng.choice(len(levels), p=probabilities / probabilities.sum()))]


def select_units(units: Sequence[MaskUnit], mask_rate: float, rng: np.random.Generator) -> list[MaskUnit]:
    """Whole units covering ``floor(mask_rate * n + u)`` of the ``n`` unit tokens, priority units first.

    Units are shuffled (priority ones ahead of the rest) and taken greedily while they fit the
    budget; a unit that would overshoot is skipped, so the chosen tokens never exceed it.
    """
    n_tokens = sum(len(unit) for unit in units)
    budget = int(np.floor(mask_rate * n_tokens + rng.random()))
    order = rng.permutation(len(units))
    ranked = [units[i] for i in order if units[i].priority] + [units[i] for i in order if not units[i].priority]
    chosen, covered = [], 0
    for unit in ranked:
        if covered >= budget:
            break
        if covered + len(unit) <= budget:
            chosen.append(unit)
            covered += len(unit)
    return sorted(chosen, key=lambda unit: unit.start)


def replace_tokens(input_ids: Sequence[int], chosen: Sequence[MaskUnit], config: MaskingConfig, mask_id: int,
                   replacement_ids: np.ndarray, rng: np.random.Generator) -> MaskedTokens:
    """80% [MASK] / 10% random token / 10% kept, per chosen token; labels at chosen positions only."""
    ids = np.asarray(input_ids, dtype=np.int64).copy()
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    positions = np.array([p for unit in chosen for p in range(unit.start, unit.end)], dtype=np.int64)
    if len(positions):
        labels[positions] = ids[positions]
        draw = rng.random(len(positions))
        to_mask = draw < config.mask_share
        to_random = (draw >= config.mask_share) & (draw < config.mask_share + config.random_share)
        ids[positions[to_mask]] = mask_id
        if to_random.any():
            ids[positions[to_random]] = replacement_ids[rng.integers(0, len(replacement_ids), int(to_random.sum()))]
    return MaskedTokens(ids.tolist(), labels.tolist(), tuple(chosen))


def mask_tokens(input_ids: Sequence[int], units: Sequence[MaskUnit], config: MaskingConfig, mask_id: int,
                replacement_ids: np.ndarray, rng: np.random.Generator) -> MaskedTokens:
    """:func:`select_units` then :func:`replace_tokens`: one example's masked ids and labels."""
    if len(replacement_ids) == 0:
        raise ValueError("replacement_ids is empty: the vocabulary has no non-special token to draw")
    chosen = select_units(units, config.mask_rate, rng)
    return replace_tokens(input_ids, chosen, config, mask_id, replacement_ids, rng)
