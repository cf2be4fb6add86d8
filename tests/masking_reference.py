"""The word-by-word masking rules as first written (masking.py at bb80854): the reference the fast path must equal.

ernie_tiny.pretrain.units vectorises these rules and ernie_tiny.pretrain.masking selects and
replaces units on arrays; tests compare both with the loops below on random tagged texts.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from ernie_tiny.pretrain.masking import (IGNORE_INDEX, MAX_PERSON_CHARS, NOMINAL_TAGS, NOUN_MODIFIER_TAGS, MaskedTokens,
                                         MaskingConfig, MaskUnit, TextUnit, UnitLevel, WordSpan, entity_kind)


def _is_nominal(tag: str) -> bool:
    return tag.lower().startswith(NOMINAL_TAGS)


def _in_noun_phrase(tag: str) -> bool:
    return _is_nominal(tag) or tag.lower() in NOUN_MODIFIER_TAGS


def reference_entity_units(words: Sequence[WordSpan]) -> list[TextUnit]:
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


def reference_phrase_units(words: Sequence[WordSpan], max_phrase_words: int) -> list[TextUnit]:
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


def reference_text_units(level: UnitLevel, words: Sequence[WordSpan], max_phrase_words: int) -> list[TextUnit]:
    """The character units of one text at ``level``, sorted and non-overlapping.

    basic: none (every token becomes its own unit in :func:`token_units`); phrase: words and
    phrases; entity: entities (priority) plus the phrase units of the words between them.
    """
    if level is UnitLevel.basic:
        return []
    if level is UnitLevel.phrase:
        return reference_phrase_units(words, max_phrase_words)
    entities = reference_entity_units(words)
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
            units.extend(reference_phrase_units(between, max_phrase_words))
            between = []
    units.extend(reference_phrase_units(between, max_phrase_words))
    return sorted(units, key=lambda unit: unit.start)


def reference_token_units(positions: Sequence[int], token_starts: Sequence[int], units: Sequence[TextUnit]) -> list[MaskUnit]:
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


def reference_select_units(units: Sequence[MaskUnit], mask_rate: float, rng: np.random.Generator) -> list[MaskUnit]:
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


def reference_replace_tokens(input_ids: Sequence[int], chosen: Sequence[MaskUnit], config: MaskingConfig, mask_id: int,
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


def reference_mask_tokens(input_ids: Sequence[int], units: Sequence[MaskUnit], config: MaskingConfig, mask_id: int,
                replacement_ids: np.ndarray, rng: np.random.Generator) -> MaskedTokens:
    """:func:`select_units` then :func:`replace_tokens`: one example's masked ids and labels."""
    if len(replacement_ids) == 0:
        raise ValueError("replacement_ids is empty: the vocabulary has no non-special token to draw")
    chosen = reference_select_units(units, config.mask_rate, rng)
    return reference_replace_tokens(input_ids, chosen, config, mask_id, replacement_ids, rng)
