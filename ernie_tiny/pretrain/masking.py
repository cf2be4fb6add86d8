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
    words = span_words(word_spans([("江", "nr"), ("泽民", "nr"), ("在", "p"), ("北京", "ns"), ...]))
    positions = np.arange(1, len(encoding) - 1)                       # the text's tokens, [CLS]/[SEP] left out
    starts = np.array([encoding.spans[i].start for i in positions])   # their first chars
    units = text_token_units(positions, starts, words, UnitLevel.entity, config)
    masked = mask_tokens(encoding.input_ids, units, config, tokenizer.mask_id, replacement_ids, rng)
    masked.labels      # original ids at the chosen units' positions, -100 elsewhere
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from functools import lru_cache

import numpy as np

from ernie_tiny.config import StrictConfig
from ernie_tiny.heads import IGNORE_INDEX
from ernie_tiny.pretrain.units import TextWords, char_units, tag_classes



class UnitLevel(str, Enum):
    basic = "basic"
    phrase = "phrase"
    entity = "entity"


_LEVELS = tuple(UnitLevel)


# The first two letters of a PKU (People's Daily) or jieba tag -> entity kind.
ENTITY_KINDS = {"nr": "person", "ns": "place", "nt": "organisation", "nz": "other"}
MAX_PERSON_CHARS = 4  # 江/nr 泽民/nr -> 江泽民; longer runs of nr words are several people
NOMINAL_TAGS = ("n", "vn", "an", "j")  # prefixes: n* (nouns, entities), verbal and adjectival nouns, abbreviations
NOUN_MODIFIER_TAGS = ("a", "b")  # adjectives and distinguishing words inside a noun phrase


@dataclass(frozen=True)
class MaskingConfig(StrictConfig):
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

    def to_dict(self) -> dict:
        return asdict(self)


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


def entity_kind(tag: str) -> str | None:
    """``person``/``place``/``organisation``/``other`` for an entity tag, None for any other tag."""
    return ENTITY_KINDS.get(tag.lower()[:2])


def span_words(words: Sequence[WordSpan]) -> TextWords:
    """Word spans as the arrays the unit rules run on."""
    return TextWords(np.array([w.start for w in words], dtype=np.int64), np.array([w.end for w in words], dtype=np.int64),
                     tag_classes(w.tag for w in words))


# ---- tokens -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnitArrays:
    """Units of one example as arrays, token positions ``[starts[u], ends[u])``: what masking works on."""

    starts: np.ndarray  # (U,) int64
    ends: np.ndarray  # (U,) int64
    priority: np.ndarray  # (U,) bool: chosen before the others (entities)

    @classmethod
    def of(cls, units: Sequence[MaskUnit]) -> "UnitArrays":
        return cls(np.array([u.start for u in units], dtype=np.int64), np.array([u.end for u in units], dtype=np.int64),
                   np.array([u.priority for u in units], dtype=bool))

    @classmethod
    def concat(cls, parts: Sequence["UnitArrays"]) -> "UnitArrays":
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("starts", "ends", "priority")))

    def __len__(self) -> int:
        return len(self.starts)

    def units(self) -> list[MaskUnit]:
        return [MaskUnit(s, e, p) for s, e, p in zip(self.starts.tolist(), self.ends.tolist(), self.priority.tolist())]


def token_unit_arrays(positions: np.ndarray, token_starts: np.ndarray, unit_starts: np.ndarray,
                      unit_ends: np.ndarray, unit_priority: np.ndarray) -> UnitArrays:
    """:func:`token_units` on arrays: (T,) consecutive positions and first chars, (V,) sorted character units."""
    if len(positions) == 0:
        return UnitArrays(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
    owner = np.searchsorted(unit_starts, token_starts, side="right") - 1  # (T,) the unit starting at or before
    inside = token_starts < np.append(unit_ends, -1)[owner]  # owner -1 (no unit starts before) reads the -1
    owner = np.where(inside, owner, -1)
    # a token opens a new group unless it continues its predecessor's unit
    opens = np.ones(len(positions), dtype=bool)
    opens[1:] = (owner[1:] < 0) | (owner[1:] != owner[:-1])
    first = np.flatnonzero(opens)  # (U,) token index of each group's first token
    starts = positions[first]
    ends = np.append(positions[first[1:]], positions[-1] + 1)
    group_owner = owner[first]
    priority = (group_owner >= 0) & unit_priority[np.maximum(group_owner, 0)] if len(unit_priority) \
        else np.zeros(len(first), dtype=bool)
    return UnitArrays(starts.astype(np.int64), ends.astype(np.int64), priority)


def token_units(positions: Sequence[int], token_starts: Sequence[int], units: Sequence[TextUnit]) -> list[MaskUnit]:
    """Group one text's tokens into units: a token belongs to the unit holding its first character.

    positions: the tokens' positions in the encoding (consecutive); token_starts: their first
    source characters (increasing); units: sorted, non-overlapping character units. A token in
    no unit (or every token, with no units) is a unit of its own; empty units are dropped, so
    truncation leaves the part of a unit that survived it.
    """
    return token_unit_arrays(np.asarray(positions, dtype=np.int64), np.asarray(token_starts, dtype=np.int64),
                             np.array([u.start for u in units], dtype=np.int64),
                             np.array([u.end for u in units], dtype=np.int64),
                             np.array([u.priority for u in units], dtype=bool)).units()


def text_token_units(positions: np.ndarray, token_starts: np.ndarray, words: TextWords | None, level: UnitLevel,
                     config: MaskingConfig) -> UnitArrays:
    """The units of one text's tokens (positions and first chars, (T,) each) at ``level``."""
    if level is UnitLevel.basic:  # every token is a unit
        return UnitArrays(positions, positions + 1, np.zeros(len(positions), dtype=bool))
    if words is None:
        raise ValueError(f"the {level.value} level needs the words of the text")
    starts, ends, priority = char_units(words.starts, words.ends, words.classes, level is UnitLevel.entity,
                                        config.max_phrase_words, MAX_PERSON_CHARS)
    return token_unit_arrays(positions, token_starts, starts, ends, priority)


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

@lru_cache(maxsize=64)
def _level_cdf(config: MaskingConfig) -> tuple[float, ...]:
    """The unit mix's cumulative distribution, normalised as ``Generator.choice(p=...)`` normalises it."""
    probabilities = np.array([getattr(config, level.value) for level in UnitLevel], dtype=np.float64)
    cdf = (probabilities / probabilities.sum()).cumsum()
    return tuple((cdf / cdf[-1]).tolist())


def choose_level(config: MaskingConfig, rng: np.random.Generator) -> UnitLevel:
    """One level drawn from the unit mix: the draw of ``rng.choice(3, p=mix)`` (one ``random()``), without its overhead."""
    return _LEVELS[bisect.bisect_right(_level_cdf(config), rng.random())]


def select_unit_arrays(units: UnitArrays, mask_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the chosen units in position order (see :func:`select_units`; the same draws)."""
    lengths = units.ends - units.starts
    budget = int(np.floor(mask_rate * int(lengths.sum()) + rng.random()))
    order = rng.permutation(len(units))
    ranked = np.concatenate([order[units.priority[order]], order[~units.priority[order]]]) \
        if units.priority.any() else order
    if budget <= 0:
        return np.zeros(0, dtype=np.int64)
    ranked_lengths = lengths[ranked]
    if (ranked_lengths == 1).all():  # single-token units (the basic level): the first `budget` of them
        chosen = ranked[:budget]
    else:  # greedy: take a unit while it fits, skip one that would overshoot
        picked, covered = [], 0
        for unit, length in zip(ranked.tolist(), ranked_lengths.tolist()):
            if covered + length <= budget:
                picked.append(unit)
                covered += length
                if covered >= budget:
                    break
        chosen = np.array(picked, dtype=np.int64)
    return chosen[np.argsort(units.starts[chosen], kind="stable")]


def select_units(units: Sequence[MaskUnit], mask_rate: float, rng: np.random.Generator) -> list[MaskUnit]:
    """Whole units covering ``floor(mask_rate * n + u)`` of the ``n`` unit tokens, priority units first.

    Units are shuffled (priority ones ahead of the rest) and taken greedily while they fit the
    budget; a unit that would overshoot is skipped, so the chosen tokens never exceed it.
    """
    return [units[i] for i in select_unit_arrays(UnitArrays.of(units), mask_rate, rng).tolist()]


def replace_tokens(input_ids: Sequence[int], chosen: Sequence[MaskUnit] | UnitArrays, config: MaskingConfig,
                   mask_id: int, replacement_ids: np.ndarray, rng: np.random.Generator) -> MaskedTokens:
    """80% [MASK] / 10% random token / 10% kept, per chosen token; labels at chosen positions only."""
    chosen = chosen if isinstance(chosen, UnitArrays) else UnitArrays.of(chosen)
    ids = np.array(input_ids, dtype=np.int64)
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    lengths = chosen.ends - chosen.starts
    # every position of every chosen unit, in order: unit start + 0, 1, ... length - 1
    positions = np.repeat(chosen.starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    if len(positions):
        labels[positions] = ids[positions]
        draw = rng.random(len(positions))
        to_mask = draw < config.mask_share
        to_random = (draw >= config.mask_share) & (draw < config.mask_share + config.random_share)
        ids[positions[to_mask]] = mask_id
        if to_random.any():
            ids[positions[to_random]] = replacement_ids[rng.integers(0, len(replacement_ids), int(to_random.sum()))]
    return MaskedTokens(ids.tolist(), labels.tolist(), tuple(chosen.units()))


def mask_tokens(input_ids: Sequence[int], units: Sequence[MaskUnit] | UnitArrays, config: MaskingConfig,
                mask_id: int, replacement_ids: np.ndarray, rng: np.random.Generator) -> MaskedTokens:
    """:func:`select_units` then :func:`replace_tokens`: one example's masked ids and labels."""
    if len(replacement_ids) == 0:
        raise ValueError("replacement_ids is empty: the vocabulary has no non-special token to draw")
    units = units if isinstance(units, UnitArrays) else UnitArrays.of(units)
    chosen = select_unit_arrays(units, config.mask_rate, rng)
    picked = UnitArrays(units.starts[chosen], units.ends[chosen], units.priority[chosen])
    return replace_tokens(input_ids, picked, config, mask_id, replacement_ids, rng)
