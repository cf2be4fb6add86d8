"""The masked examples of training step ``s`` on rank ``r``, a pure function of (seed, s, r), and their collate.

The data order is one endless stream of samples: sample ``k`` reads document
``permuted_index(k % N, N, seed, k // N)`` of the ``N`` documents (a fresh pseudo-random
permutation per epoch, computed on the fly in O(1) memory: a Feistel network with cycle
walking, so a billion documents need no billion-entry shuffle), and is masked with the
generator ``default_rng([seed, k])``. Step ``s`` on rank ``r`` of ``W`` takes samples
``k = (s * W + r) * B + j`` for ``j < B``: the ranks read disjoint shares, and a resumed run
(same seed) rebuilds exactly the batches it would have seen. Unlike
:func:`ernie_tiny.training.data_order.batch_for_step` (which materialises a permutation of the
items in memory and pads each epoch to a multiple of ``W``), epochs here run into each other.

One sample is a text example or, with ``sentence_distance`` and probability ``pair_share``, a
sentence pair (ERNIE 2.0). A text example starts at a random sentence of its document (late
enough that the rest fills ``max_len`` when the document is long enough) and takes sentences
until ``max_len`` is full (the last one may be cut); a pair extends sentence ``a`` backwards and ``b`` forwards up to half the length
each, which keeps their distance label true. Task ids: 0 masked LM, 1 sentence distance.
The words of phrase- and entity-level units are each sentence's own: gold words when the corpus
has them, else jieba's, read from the word cache (:mod:`ernie_tiny.pretrain.wordcache`) or, with
none, segmented when the example is built; both give the same words, hence the same masks.
An ERNIE 1.0 id record is used as it is (its ``seg_labels`` give the words), truncated to
``max_len`` with a final [SEP]; with ``sentence_distance`` its next-sentence label maps to
adjacent (1) or other document (0).

API for the trainer (the loop's ``items_for_step`` / ``collate``)::

    words = corpus_words(corpus, hmm=True)          # jieba once per corpus (cached); None: per example
    data = PretrainingData(corpus, tokenizer, PretrainDataConfig(max_len=128, batch_size=32, seed=0), words)
    items_for_step = lambda step: data.examples_for_step(step, ctx.rank, ctx.world_size)
    collate = lambda examples: data.collate(examples).to(device)
    out = model(**batch.model_inputs())   # ErnieForPretraining -> PretrainingOutput(loss, terms, ...)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import IntEnum
from functools import lru_cache

import numpy as np
import torch

from ernie_tiny.config import StrictConfig, strict_config
from ernie_tiny.pretrain.corpus import Document, IdCorpus, IdRecord, TextCorpus
from ernie_tiny.pretrain.embedded import EmbeddedCorpus
from ernie_tiny.pretrain.example_ids import ExampleEncoder
from ernie_tiny.pretrain.masking import (IGNORE_INDEX, MaskingConfig, MaskUnit, UnitArrays, UnitLevel, choose_level,
                                         mask_tokens, seg_label_units, text_token_units)
from ernie_tiny.pretrain.units import TextWords
from ernie_tiny.pretrain.wordcache import LiveWords, WordSource
from ernie_tiny.pretrain.sentence_distance import SentenceDistance, sample_sentence_pair
from ernie_tiny.tokenization.encoding import MASK

Corpus = TextCorpus | IdCorpus | EmbeddedCorpus
_SPECIAL_TOKEN = re.compile(r"^\[[^\]]+\]$")  # [PAD], [CLS], [unused3]: never drawn as a random replacement
_MASK64 = (1 << 64) - 1
SUBWORD_CHARS_PER_TOKEN = 2  # text taken per subword token of max_len (the char tokenizer: 1)


class TaskType(IntEnum):
    """ERNIE 2.0 task-type ids (``task_type_ids`` when the model has ``use_task_id``)."""

    masked_lm = 0
    sentence_distance = 1


@dataclass(frozen=True)
class PretrainDataConfig(StrictConfig):
    max_len: int = 128  # tokens per example, [CLS]/[SEP] included
    batch_size: int = 32  # examples per rank and step
    seed: int = 0  # data order and masks
    sentence_distance: bool = False  # ERNIE 2.0's 3-way sentence-distance objective (and task ids)
    pair_share: float = 0.5  # with sentence_distance: share of examples that are sentence pairs
    masking: MaskingConfig = field(default_factory=MaskingConfig)

    def __post_init__(self) -> None:
        if self.max_len < 5:
            raise ValueError(f"max_len must be at least 5 ([CLS] a [SEP] b [SEP]), got {self.max_len}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.pair_share <= 1.0:
            raise ValueError(f"pair_share must be in [0, 1], got {self.pair_share}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PretrainDataConfig":
        values = dict(values)
        if isinstance(values.get("masking"), dict):
            values["masking"] = MaskingConfig.from_dict(values["masking"])
        return strict_config(cls, values)


@dataclass(frozen=True)
class PretrainExample:
    input_ids: tuple[int, ...]  # masked
    token_type_ids: tuple[int, ...]
    mlm_labels: tuple[int, ...]  # original id at masked positions, IGNORE_INDEX elsewhere
    task_type: TaskType
    sentence_distance_label: int  # a SentenceDistance, or IGNORE_INDEX for a single text
    level: UnitLevel  # the unit level this example was masked at
    document: int  # the anchor document (for tests and statistics)
    units: tuple[MaskUnit, ...] = ()  # the units that were masked


@dataclass
class PretrainBatch:
    input_ids: torch.Tensor  # (B, T) masked ids
    token_type_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 on tokens, 0 on padding
    mlm_labels: torch.Tensor  # (B, T) IGNORE_INDEX except at masked positions
    task_type_ids: torch.Tensor | None = None  # (B, T) the example's TaskType on every token, when used
    sentence_distance_labels: torch.Tensor | None = None  # (B,) SentenceDistance or IGNORE_INDEX

    def to(self, device: str | torch.device) -> "PretrainBatch":
        return PretrainBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                for f in fields(self)})

    def model_inputs(self) -> dict[str, torch.Tensor | None]:
        """Keyword arguments of :meth:`ernie_tiny.model.ErnieForPretraining.forward`."""
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids,
                "attention_mask": self.attention_mask, "labels": self.mlm_labels,
                "sentence_distance_labels": self.sentence_distance_labels, "task_type_ids": self.task_type_ids}


# ---- data order -------------------------------------------------------------------------------

def _mix64(z: int) -> int:
    """splitmix64's finaliser: a 64-bit avalanche hash."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


@lru_cache(maxsize=16)
def _round_keys(seed: int, epoch: int) -> tuple[int, ...]:
    return tuple(int(k) for k in np.random.SeedSequence([seed, epoch]).generate_state(4, np.uint64))


def permuted_index(position: int, size: int, seed: int, epoch: int) -> int:
    """Where ``position`` goes under the (seed, epoch) pseudo-random permutation of ``range(size)``.

    A 4-round Feistel network on the smallest ``2^(2h) >= size`` is a bijection; applying it
    again while the result is ``>= size`` (cycle walking, < 4 rounds expected) keeps it one on
    ``range(size)``. Memory O(1), about 10 us per call.
    """
    if not 0 <= position < size:
        raise ValueError(f"position {position} is not in [0, {size})")
    half = max(1, ((size - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    keys = _round_keys(seed, epoch)
    x = position
    while True:
        left, right = x >> half, x & mask
        for key in keys:
            left, right = right, left ^ (_mix64(right ^ key) & mask)
        x = (left << half) | right
        if x < size:
            return x


def sample_index(step: int, rank: int, world_size: int, batch_size: int, row: int) -> int:
    """The stream position of example ``row`` of ``step`` on ``rank``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return (step * world_size + rank) * batch_size + row


# ---- examples ---------------------------------------------------------------------------------

def _joined(sentences: Sequence[str]) -> tuple[str, list[int]]:
    """Sentences as one text (a space between sentences that end in ASCII) and where each one starts in it."""
    text, offsets = "", []
    for sentence in sentences:
        if text and text[-1].isascii():
            text += " "
        offsets.append(len(text))
        text += sentence
    return text, offsets


def _head(text: str, words: TextWords | None, n: int) -> tuple[str, TextWords | None]:
    """The first ``n`` chars of ``text`` and the words that lie inside them."""
    if len(text) <= n:
        return text, words
    return text[:n], None if words is None else words.head(n)


def _tail(text: str, words: TextWords | None, n: int) -> tuple[str, TextWords | None]:
    """The last ``n`` chars of ``text`` and the words inside them, renumbered from 0."""
    if len(text) <= n:
        return text, words
    cut = len(text) - n
    return text[cut:], None if words is None else words.tail(cut)


def _start_sentence(lengths: Sequence[int], cap: int, rng: np.random.Generator) -> int:
    """A random first sentence, late enough only where the rest of the document still fills ``cap`` chars."""
    remaining = np.cumsum(list(lengths)[::-1])[::-1]  # chars from sentence i to the end
    last = int(np.flatnonzero(remaining >= cap)[-1]) if remaining[0] >= cap else 0
    return int(rng.integers(0, last + 1))


class PretrainingData:
    """Masked examples of a corpus for a tokenizer with a ``vocab`` dict (the char tokenizer, or the subword one)."""

    def __init__(self, corpus: Corpus, tokenizer, config: PretrainDataConfig, words: WordSource | None = None):
        if len(corpus) == 0:
            raise ValueError("the corpus holds no documents")
        vocab = getattr(tokenizer, "vocab", None)
        if not isinstance(vocab, dict) or MASK not in vocab:
            raise ValueError("pretraining needs a tokenizer whose `vocab` dict holds [MASK]")
        if config.sentence_distance and not isinstance(corpus, IdCorpus) and len(corpus) < 2:
            raise ValueError("the sentence-distance objective needs at least two documents")
        self.corpus, self.tokenizer, self.config = corpus, tokenizer, config
        # words of sentences without gold words: cached (wordcache.corpus_words) or segmented when needed
        self.words = words if words is not None else LiveWords(config.masking.jieba_hmm)
        self.encoder = ExampleEncoder(tokenizer)
        self.mask_id = vocab[MASK]
        self.chars_per_token = 1 if getattr(tokenizer, "kind", "char") == "char" else SUBWORD_CHARS_PER_TOKEN
        self.replacement_ids = np.array(sorted(i for t, i in vocab.items() if not _SPECIAL_TOKEN.match(t)),
                                        dtype=np.int64)
        if len(self.replacement_ids) == 0:
            raise ValueError("the vocabulary has no non-special token to use as a random replacement")

    def document_of_sample(self, k: int) -> int:
        epoch, position = divmod(k, len(self.corpus))
        return permuted_index(position, len(self.corpus), self.config.seed, epoch)

    def example(self, k: int) -> PretrainExample:
        """Sample ``k`` of the stream, masked: a pure function of (config, corpus, k)."""
        rng = np.random.default_rng([self.config.seed, k])
        document = self.document_of_sample(k)
        level = choose_level(self.config.masking, rng)
        if isinstance(self.corpus, IdCorpus):
            return self._record_example(self.corpus[document], document, level, rng)
        if self.config.sentence_distance and rng.random() < self.config.pair_share:
            return self._pair_example(document, level, rng)
        return self._text_example(document, level, rng)

    def examples_for_step(self, step: int, rank: int = 0, world_size: int = 1) -> list[PretrainExample]:
        """This rank's ``batch_size`` examples of 0-based global ``step``."""
        b = self.config.batch_size
        return [self.example(sample_index(step, rank, world_size, b, row)) for row in range(b)]

    def collate(self, examples: Sequence[PretrainExample]) -> PretrainBatch:
        return collate(examples, self.tokenizer.pad_id, with_task_ids=self.config.sentence_distance,
                       with_sentence_distance=self.config.sentence_distance)

    # -- the three kinds of example --

    def _text(self, document: int, doc: Document, first: int, last: int,
              level: UnitLevel) -> tuple[str, TextWords | None]:
        """Sentences ``first:last`` as one text and their words (gold, cached or segmented; none for basic)."""
        text, offsets = _joined(doc.sentences[first:last])
        if level is UnitLevel.basic:
            return text, None
        return text, self.words.text_words(document, doc, first, last, offsets)

    def _masked(self, texts: Sequence[str], words_per_text: Sequence[TextWords | None], level: UnitLevel,
                document: int, rng: np.random.Generator, task: TaskType, label: int) -> PretrainExample:
        ids = self.encoder.encode(texts[0], texts[1] if len(texts) > 1 else None, self.config.max_len)
        units = UnitArrays.concat([text_token_units(tokens.positions, tokens.starts, words, level, self.config.masking)
                                   for tokens, words in zip(ids.text_tokens, words_per_text)])
        masked = mask_tokens(ids.input_ids, units, self.config.masking, self.mask_id, self.replacement_ids, rng)
        return PretrainExample(tuple(masked.input_ids), tuple(ids.token_type_ids.tolist()), tuple(masked.labels), task,
                               label, level, document, masked.chosen)

    def _text_example(self, document: int, level: UnitLevel, rng: np.random.Generator) -> PretrainExample:
        doc: Document = self.corpus[document]
        cap = self.chars_per_token * (self.config.max_len - 2)
        lengths = [len(s) for s in doc.sentences]
        first = _start_sentence(lengths, cap, rng)
        last = first + 1
        while last < len(lengths) and sum(lengths[first:last]) < cap:  # the last one may be cut at cap
            last += 1
        text, spans = self._text(document, doc, first, last, level)
        text, spans = _head(text, spans, cap)
        return self._masked([text], [spans], level, document, rng, TaskType.masked_lm, IGNORE_INDEX)

    def _pair_example(self, document: int, level: UnitLevel, rng: np.random.Generator) -> PretrainExample:
        cache: dict[int, Document] = {}

        def read(d: int) -> Document:
            if d not in cache:
                cache[d] = self.corpus[d]
            return cache[d]

        pair = sample_sentence_pair(document, lambda d: len(read(d).sentences), len(self.corpus), rng)
        half = self.chars_per_token * (self.config.max_len - 3) // 2
        doc_a, doc_b = read(pair.a.document), read(pair.b.document)
        first = pair.a.sentence  # a grows backwards, b forwards: the label stays true
        while first > 0 and sum(len(s) for s in doc_a.sentences[first - 1:pair.a.sentence + 1]) <= half:
            first -= 1
        last = pair.b.sentence + 1
        while last < len(doc_b.sentences) and sum(len(s) for s in doc_b.sentences[pair.b.sentence:last + 1]) <= half:
            last += 1
        text_a, spans_a = self._text(pair.a.document, doc_a, first, pair.a.sentence + 1, level)
        text_b, spans_b = self._text(pair.b.document, doc_b, pair.b.sentence, last, level)
        text_a, spans_a = _tail(text_a, spans_a, half)  # a's end touches b: keep it
        text_b, spans_b = _head(text_b, spans_b, half)
        return self._masked([text_a, text_b], [spans_a, spans_b], level, document, rng, TaskType.sentence_distance,
                            int(pair.label))

    def _record_example(self, record: IdRecord, document: int, level: UnitLevel,
                        rng: np.random.Generator) -> PretrainExample:
        token_ids, type_ids, seg_labels = list(record.token_ids), list(record.sentence_type_ids), list(record.seg_labels)
        if len(token_ids) > self.config.max_len:  # keep the head, end on [SEP] as the record did
            cut = self.config.max_len - 1
            token_ids, type_ids, seg_labels = (token_ids[:cut] + token_ids[-1:], type_ids[:cut] + type_ids[-1:],
                                               seg_labels[:cut] + [-1])
        units = seg_label_units(seg_labels, level)
        masked = mask_tokens(token_ids, units, self.config.masking, self.mask_id, self.replacement_ids, rng)
        task, label = TaskType.masked_lm, IGNORE_INDEX
        if self.config.sentence_distance:
            task = TaskType.sentence_distance
            label = int(SentenceDistance.adjacent if record.next_sentence_label == 1 else SentenceDistance.other_document)
        return PretrainExample(tuple(masked.input_ids), tuple(type_ids), tuple(masked.labels), task, label, level,
                               document, masked.chosen)


def collate(examples: Sequence[PretrainExample], pad_id: int, with_task_ids: bool = False,
            with_sentence_distance: bool = False) -> PretrainBatch:
    """Right-pad examples into (B, T) int64 tensors, T = the longest example."""
    if not examples:
        raise ValueError("collate needs at least one example")
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    token_type_ids = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    mlm_labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    task_type_ids = torch.zeros((len(examples), width), dtype=torch.long) if with_task_ids else None  # (B, T)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        token_type_ids[row, :n] = torch.tensor(example.token_type_ids)
        attention_mask[row, :n] = 1
        mlm_labels[row, :n] = torch.tensor(example.mlm_labels)
        if task_type_ids is not None:
            task_type_ids[row, :n] = int(example.task_type)
    sentence_distance_labels = (torch.tensor([e.sentence_distance_label for e in examples], dtype=torch.long)
                                if with_sentence_distance else None)  # (B,)
    return PretrainBatch(input_ids, token_type_ids, attention_mask, mlm_labels, task_type_ids, sentence_distance_labels)
