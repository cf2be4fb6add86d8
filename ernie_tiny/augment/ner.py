"""Augmentation for NER that cannot move an entity boundary: same-POS replacement of O-tagged words.

    (text, per-char tags) -> jieba words -> each word whose chars are all O is replaced, with
    probability ``p_pos``, by another word of the same POS drawn from the data set's O-only words
    -> new text, tags regenerated (entity chars keep theirs, a new word's chars are all O)

Only this one strategy: a replaced word lies wholly outside every entity, so every entity
keeps its characters, its type and its B/I tags, and only its offset moves with the
length of the words before it. The others could not keep the tags: n-gram sampling cuts
through entities; [UNK] noise leaves a char whose teacher tag distribution the soft loss
cannot use (an [UNK] position is masked out of it); teacher-MLM candidates would need an
MLM teacher that a distillation run does not have. So ``p_unk``, ``p_ngram`` and ``p_mlm``
must be 0 (:data:`NER_AUGMENT_DEFAULTS`).

The replacement words are those of the training data that were never part of an entity
(every occurrence all O) and whose POS is not a proper-noun tag (jieba ``nr*``, ``ns*``,
``nt*``, ``nz*``): inserting "北京" tagged O would teach the student that a place is not
an entity. Determinism is as in :mod:`ernie_tiny.augment.strategies`: example ``i``
draws only from ``example_rng(seed, i)``.

Example::

    config = AugmentConfig(num_aug=2, seed=1, **NER_AUGMENT_DEFAULTS)
    new = augment_ner_examples(train_examples, config, outside=MSRA_TAGS.index("O"))
    new[0].text_a, new[0].tags   # an O word replaced; the entities and their tags unchanged
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ernie_tiny.augment.pos import PosVocabulary, is_blank, tag_texts
from ernie_tiny.augment.strategies import UNK_PLACEHOLDER, AugmentConfig, example_rng

NER_AUGMENT_DEFAULTS = {"p_unk": 0.0, "p_ngram": 0.0, "p_pos": 0.2}  # per all-O word: twice ERNIE Slim's 0.1
PROPER_NOUN_TAGS = ("nr", "ns", "nt", "nz")  # jieba: person, place, organisation, other proper noun


@dataclass(frozen=True)
class AugmentedNerExample:
    source_index: int  # index of the original example
    text_a: str
    tags: tuple[int, ...]  # one tag id per char of text_a

    @property
    def pair(self) -> tuple[str, None]:
        return self.text_a, None


def check_ner_config(config: AugmentConfig) -> None:
    """Refuse the strategies that could move an entity boundary or blank a tagged char."""
    moving = [name for name in ("p_unk", "p_ngram", "p_mlm") if getattr(config, name) > 0]
    if moving:
        raise ValueError(f"NER augmentation replaces O-tagged words by same-POS words only (p_pos); "
                         f"{', '.join(moving)} must be 0 (they could cut an entity or blank a tagged char)")


def word_spans(words: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    """The [start, end) char span of each word."""
    spans, start = [], 0
    for word, _ in words:
        spans.append((start, start + len(word)))
        start += len(word)
    return spans


def replaceable(word: str, tag: str) -> bool:
    return not is_blank(word) and not tag.startswith(PROPER_NOUN_TAGS) and UNK_PLACEHOLDER not in word


def outside_vocabulary(tagged: Sequence[Sequence[tuple[str, str]]], tags: Sequence[Sequence[int]],
                       outside: int) -> PosVocabulary:
    """Words (by POS) that are all O in every occurrence, proper-noun tags left out."""
    seen, inside_entity = [], set()
    for words, text_tags in zip(tagged, tags):
        for (word, tag), (start, end) in zip(words, word_spans(words)):
            if all(t == outside for t in text_tags[start:end]):
                seen.append((word, tag))
            else:
                inside_entity.add(word)
    kept = [(word, tag) for word, tag in seen if word not in inside_entity and replaceable(word, tag)]
    return PosVocabulary.from_tagged([kept])


def plan_ner_copies(index: int, words: Sequence[tuple[str, str]], tags: Sequence[int], outside: int,
                    config: AugmentConfig, vocab: PosVocabulary) -> list[dict[int, str]]:
    """Up to ``num_aug`` distinct non-empty replacement plans ``{word index: new word}`` for example ``index``."""
    rng = example_rng(config.seed, index)
    eligible = [k for k, ((word, tag), (start, end)) in enumerate(zip(words, word_spans(words)))
                if replaceable(word, tag) and all(t == outside for t in tags[start:end])]
    plans: list[dict[int, str]] = []
    for _ in range(config.num_aug * config.max_tries):
        if len(plans) == config.num_aug or not eligible:
            break
        plan = {}
        for k in eligible:
            if rng.random() < config.p_pos:
                replacement = vocab.sample(words[k][1], rng, exclude=words[k][0])
                if replacement is not None:
                    plan[k] = replacement
        if plan and plan not in plans:
            plans.append(plan)
    return plans


def apply_ner_plan(words: Sequence[tuple[str, str]], tags: Sequence[int], plan: dict[int, str],
                   outside: int) -> tuple[str, tuple[int, ...]]:
    """The new text and its tags: replaced words get all-O tags, every other char keeps its own."""
    text, new_tags = [], []
    for k, ((word, _), (start, end)) in enumerate(zip(words, word_spans(words))):
        if k in plan:
            text.append(plan[k])
            new_tags += [outside] * len(plan[k])
        else:
            text.append(word)
            new_tags += list(tags[start:end])
    return "".join(text), tuple(new_tags)


def augment_ner_examples(examples: Sequence[object], config: AugmentConfig, outside: int,
                         cache_dir: str | os.PathLike | None = None, workers: int = 1) -> list[AugmentedNerExample]:
    """New tagged examples, up to ``config.num_aug`` per input, in input order.

    ``examples``: task ``Example`` objects (``text_a`` and ``label`` = one tag id per char)
    or ``(text, tags)`` pairs; ``outside`` is the id of the O tag.
    """
    check_ner_config(config)
    rows = [(e.text_a, list(e.label)) if hasattr(e, "text_a") else (e[0], list(e[1])) for e in examples]
    for number, (text, tags) in enumerate(rows):
        if len(text) != len(tags):
            raise ValueError(f"example {number}: {len(text)} chars but {len(tags)} tags")
    tagged = tag_texts([text for text, _ in rows], workers=workers, cache_dir=cache_dir)
    vocab = outside_vocabulary(tagged, [tags for _, tags in rows], outside)
    out = []
    for index, ((text, tags), words) in enumerate(zip(rows, tagged)):
        seen = {text}
        for plan in plan_ner_copies(index, words, tags, outside, config, vocab):
            new_text, new_tags = apply_ner_plan(words, tags, plan, outside)
            if new_text not in seen:  # two plans can spell the same text
                seen.add(new_text)
                out.append(AugmentedNerExample(index, new_text, new_tags))
    return out
