"""ERNIE 2.0's sentence-distance task: is sentence b adjacent to a, elsewhere in a's document, or from another one?

ERNIE 2.0 (Sun et al. 2020, "A Continual Pre-training Framework") replaces BERT's two-way
next-sentence prediction by a three-way "structure-aware" task: 0 = the two sentences are
adjacent in one document, 1 = same document but not adjacent, 2 = different documents.
:func:`sample_sentence_pair` draws one pair as a pure function of its generator: the label
first (uniform), then the sentences. Same document needs 3 sentences and adjacent 2: when the
anchor document is too short for the drawn label, up to ``retries`` other documents are drawn
as the anchor, and only when none is long enough does the label fall back (same document ->
adjacent -> other document), so that short reviews do not turn the task into "other document"
two times in three. :func:`label_counts` measures the mix. Example::

    pair = sample_sentence_pair(doc, lambda d: len(corpus[d].sentences), len(corpus), rng)
    corpus[pair.a.document].sentences[pair.a.sentence], pair.label
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class SentenceDistance(IntEnum):
    adjacent = 0
    same_document = 1
    other_document = 2


@dataclass(frozen=True)
class SentenceRef:
    document: int
    sentence: int


@dataclass(frozen=True)
class SentencePair:
    a: SentenceRef
    b: SentenceRef
    label: SentenceDistance


NEEDED_SENTENCES = {SentenceDistance.adjacent: 2, SentenceDistance.same_document: 3, SentenceDistance.other_document: 1}


def sample_sentence_pair(document: int, sentence_count: Callable[[int], int], num_documents: int,
                         rng: np.random.Generator, retries: int = 64) -> SentencePair:
    """A sentence pair anchored in ``document`` (or a redrawn document, see above) and its 3-way label.

    adjacent: ``(i, i + 1)``; same document: ``(i, j)`` with ``j >= i + 2``; other document:
    a random sentence of the anchor and one of another document drawn uniformly.
    ``sentence_count(d)`` is the number of sentences of document ``d`` (each >= 1).
    """
    label = SentenceDistance(int(rng.integers(0, 3)))
    anchor = document
    for _ in range(retries):
        if sentence_count(anchor) >= NEEDED_SENTENCES[label]:
            break
        anchor = int(rng.integers(0, num_documents))
    if sentence_count(anchor) >= NEEDED_SENTENCES[label]:
        document = anchor
    n = sentence_count(document)
    if n < 1:
        raise ValueError(f"document {document} has no sentences")
    if label is SentenceDistance.same_document and n < 3:
        label = SentenceDistance.adjacent
    if label is SentenceDistance.adjacent and n < 2:
        label = SentenceDistance.other_document
    if label is SentenceDistance.other_document and num_documents < 2:
        if n < 2:
            raise ValueError("sentence distance needs two documents, or a document of two sentences")
        label = SentenceDistance.adjacent
    if label is SentenceDistance.adjacent:
        i = int(rng.integers(0, n - 1))
        return SentencePair(SentenceRef(document, i), SentenceRef(document, i + 1), label)
    if label is SentenceDistance.same_document:
        i = int(rng.integers(0, n - 2))
        j = int(rng.integers(i + 2, n))
        return SentencePair(SentenceRef(document, i), SentenceRef(document, j), label)
    other = (document + 1 + int(rng.integers(0, num_documents - 1))) % num_documents  # never `document`
    m = sentence_count(other)
    return SentencePair(SentenceRef(document, int(rng.integers(0, n))), SentenceRef(other, int(rng.integers(0, m))),
                        label)


def label_counts(sentence_count: Callable[[int], int], num_documents: int, samples: int, seed: int = 0,
                 retries: int = 64) -> dict[SentenceDistance, int]:
    """How often each label comes out over ``samples`` pairs anchored in uniformly drawn documents."""
    rng = np.random.default_rng(seed)
    counts = Counter(sample_sentence_pair(int(rng.integers(0, num_documents)), sentence_count, num_documents,
                                          rng, retries).label for _ in range(samples))
    return {label: counts.get(label, 0) for label in SentenceDistance}
