"""The per-text unit functions the masking tests read: characters -> units, and an encoding's units.

The product works on arrays (``text_token_units``, what ``pretrain.batches`` calls); these wrap
it into the readable ``TextUnit`` / ``MaskUnit`` lists the tests compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ernie_tiny.pretrain.masking import (MAX_PERSON_CHARS, MaskingConfig, MaskUnit, TextUnit, UnitLevel, WordSpan,
                                         span_words, text_token_units)
from ernie_tiny.pretrain.units import char_units
from ernie_tiny.tokenization.encoding import Encoding


def text_units(level: UnitLevel, words: Sequence[WordSpan], max_phrase_words: int) -> list[TextUnit]:
    """The character units of one text at ``level``, sorted and non-overlapping.

    basic: none (every token becomes its own unit in :func:`token_units`); phrase: words and
    phrases; entity: entities (priority) plus the phrase units of the words between them.
    """
    if level is UnitLevel.basic:
        return []
    arrays = span_words(words)
    starts, ends, priority = char_units(arrays.starts, arrays.ends, arrays.classes, level is UnitLevel.entity,
                                        max_phrase_words, MAX_PERSON_CHARS)
    return [TextUnit(int(a), int(b), bool(p)) for a, b, p in zip(starts, ends, priority)]


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
        units.extend(text_token_units(np.array(positions, dtype=np.int64), np.array(starts, dtype=np.int64),
                                      None if words is None else span_words(words), level, config).units())
    return units
