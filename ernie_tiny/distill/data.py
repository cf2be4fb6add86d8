"""Distillation data: each text seen by both tokenizers, aligned once, batched together.

    texts -> DistillItem(teacher Encoding (char), student Encoding (subword), Alignment, label)
          -> collate_distill -> DistillBatch(teacher Batch, student Batch, AlignedBatch, labels)

A label is a class index (NO_LABEL for augmented copies) or, for NER, the per-char tags
given to the student's tokens (``tasks.align_tags_to_tokens``: a token takes its
first char's tag; specials get NO_LABEL). NER items always carry tags: augmented NER
copies get theirs regenerated (:mod:`ernie_tiny.augment.ner`), so the tag positions
that the token-level soft loss scores are known for every item.

The alignment of an example never changes, so it is computed once when the items are
built and only padded per batch. When the student reads the teacher's own char tokens
(``--student-tokenizer char``, the no-alignment ablation) the two encodings are the same
object and the alignment is the identity. The teacher's outputs for these items (run,
cached) are :mod:`ernie_tiny.distill.teacher`'s.

Example::

    items = build_items(pairs, labels, teacher_tokenizer, student_tokenizer, max_len=128)
    batch = collate_distill(items[:32], teacher_tokenizer.pad_id, student_tokenizer.pad_id)
    batch.aligned.pool.shape   # (32, S, T)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from ernie_tiny.tokenization.batching import Batch, pad_encodings
from ernie_tiny.distill.align import AlignedBatch, Alignment, build_alignment, collate_alignments, identity_alignment
from ernie_tiny.augment.ner import augment_ner_examples
from ernie_tiny.augment.strategies import augment_examples
from ernie_tiny.distill.config import CHAR_TOKENIZER, DistillConfig
from ernie_tiny.training.distributed import DistributedContext, barrier
from ernie_tiny.tokenization.encoding import Encoding, Tokenizer
from ernie_tiny.heads import IGNORE_INDEX
from ernie_tiny.tasks import Example, TaskKind, align_tags_to_tokens, get_task
from ernie_tiny.tokenization.load import TOKENIZER_CONFIG, load_tokenizer

NO_LABEL = IGNORE_INDEX  # augmented and unlabelled texts (and untagged NER tokens): the teacher's soft targets only


@dataclass
class DistillItem:
    index: int  # position in the item list: the teacher-cache key
    text_a: str
    text_b: str | None
    teacher: Encoding  # char tokens
    student: Encoding  # subword tokens (the same object as ``teacher`` for a char student)
    alignment: Alignment  # student token i <- teacher tokens alignment.teacher_start[i]:teacher_end[i]
    label: int | list[int]  # gold class, or NO_LABEL; NER: one tag per student token (NO_LABEL where none)


@dataclass
class DistillBatch:
    teacher: Batch  # (B, T) char inputs
    student: Batch  # (B, S) subword inputs
    aligned: AlignedBatch  # (B, S, T) pool/cover, (B, S) valid
    labels: torch.Tensor  # (B,) gold classes, NO_LABEL where none; NER: (B, S) tags per student token
    indices: list[int]  # item indices, for the teacher cache

    def to(self, device: torch.device | str) -> "DistillBatch":
        return DistillBatch(self.teacher.to(device), self.student.to(device), self.aligned.to(device),
                            self.labels.to(device), self.indices)

    @property
    def has_labels(self) -> bool:
        return bool((self.labels != NO_LABEL).any())


def build_items(pairs: Sequence[tuple[str, str | None]], labels: Sequence[int | Sequence[int]],
                teacher_tokenizer: Tokenizer, student_tokenizer: Tokenizer | None, max_len: int,
                start_index: int = 0) -> list[DistillItem]:
    """Encode every pair with both tokenizers and align them; ``student_tokenizer=None`` shares the teacher's.

    A label that is a sequence holds one NER tag per char of text_a; the item keeps it per student token.
    """
    if len(pairs) != len(labels):
        raise ValueError(f"{len(pairs)} texts but {len(labels)} labels")
    teacher_encodings = teacher_tokenizer.encode_batch(list(pairs), max_len=max_len)
    shared = student_tokenizer is None
    student_encodings = teacher_encodings if shared else student_tokenizer.encode_batch(
        [seen_by_teacher(pair, encoding) for pair, encoding in zip(pairs, teacher_encodings)], max_len=max_len)
    items = []
    for offset, (pair, label, teacher, student) in enumerate(zip(pairs, labels, teacher_encodings, student_encodings)):
        alignment = identity_alignment(teacher) if shared else build_alignment(student, teacher, texts=pair)
        token_label = align_tags_to_tokens(student, label) if isinstance(label, Sequence) else int(label)
        items.append(DistillItem(start_index + offset, pair[0], pair[1], teacher, student, alignment, token_label))
    return items


def seen_by_teacher(pair: tuple[str, str | None], teacher: Encoding) -> tuple[str, str | None]:
    """The texts cut where the teacher's truncation cut them (unchanged when it kept everything).

    At equal max_len the shorter subword sequence would read past the teacher's last char: its
    states there would have no teacher target, and would leak context the teacher never saw
    into the aligned positions. Spans are offsets into the original texts, so a prefix keeps
    every offset, and the alignment reads the original pair.
    """
    if not teacher.truncated:
        return pair
    seen_end = [0, 0]
    for span in teacher.spans:
        if not span.is_special:
            seen_end[span.text_index] = max(seen_end[span.text_index], span.end)
    text_a, text_b = pair
    return text_a[:seen_end[0]], None if text_b is None else text_b[:seen_end[1]]


def collate_distill(items: Sequence[DistillItem], teacher_pad_id: int, student_pad_id: int) -> DistillBatch:
    """Pad both encodings to their batch's longest and the alignments to the same widths."""
    teacher = pad_encodings([item.teacher for item in items], pad_id=teacher_pad_id)
    student = pad_encodings([item.student for item in items], pad_id=student_pad_id)
    aligned = collate_alignments([item.alignment for item in items], student_len=student.input_ids.shape[1],
                                 teacher_len=teacher.input_ids.shape[1])
    if isinstance(items[0].label, list):  # NER: tags per student token, padded like the student side
        labels = torch.full(student.input_ids.shape, NO_LABEL, dtype=torch.long)  # (B, S)
        for row, item in enumerate(items):
            labels[row, :len(item.label)] = torch.tensor(item.label, dtype=torch.long)
    else:
        labels = torch.tensor([item.label for item in items], dtype=torch.long)  # (B,)
    return DistillBatch(teacher, student, aligned, labels, [item.index for item in items])


def alignment_coverage(items: Sequence[DistillItem]) -> float:
    """Fraction of student tokens with a valid alignment (printed: low coverage weakens the intermediate losses)."""
    total = sum(item.alignment.student_length for item in items)
    return sum(int(item.alignment.valid.sum()) for item in items) / max(total, 1)


# ---- which tokenizer the student reads ---------------------------------------------------------------

def default_tokenizer_dir(vocab_size: int) -> Path:
    """Where the embedded-corpus subword tokenizer is kept: ``$ERNIE_TINY_CACHE`` or ``~/.cache/ernie-tiny``."""
    root = Path(os.environ.get("ERNIE_TINY_CACHE", Path.home() / ".cache" / "ernie-tiny"))
    return root / f"subword-embedded-{vocab_size}"


def default_subword_tokenizer(vocab_size: int, ctx: DistributedContext, console: Console) -> Tokenizer:
    """The subword tokenizer trained on the embedded corpus (trained once by rank 0, then reused)."""
    from ernie_tiny.data.embedded_text import embedded_corpus_texts
    from ernie_tiny.tokenization.subword import train_subword_tokenizer

    directory = default_tokenizer_dir(vocab_size)
    if ctx.is_main and not (directory / TOKENIZER_CONFIG).is_file():
        console.print(f"training the default subword tokenizer ({vocab_size} pieces, embedded corpus) "
                      f"into {directory}")
        train_subword_tokenizer(embedded_corpus_texts(), directory, vocab_size)
    barrier(ctx)
    return load_tokenizer(directory)


@dataclass
class StudentTokenizer:
    tokenizer: Tokenizer  # saved with the student
    shared: bool  # True: the teacher's char tokenizer (identity alignment)
    source: str  # one line for the run's summary


def resolve_student_tokenizer(choice: str | None, init_tokenizer: Tokenizer | None, teacher_tokenizer: Tokenizer,
                              vocab_size: int, ctx: DistributedContext, console: Console) -> StudentTokenizer:
    """``"char"``: the teacher's; a folder: that one; None: the init checkpoint's, else the default subword one."""
    if choice == CHAR_TOKENIZER:
        return StudentTokenizer(teacher_tokenizer, True, "the teacher's char tokenizer (identity alignment)")
    if choice is not None:
        return StudentTokenizer(load_tokenizer(choice), False, f"{choice}")
    if init_tokenizer is not None:
        # Identity alignment only when it reads exactly the teacher's tokens; any other char
        # vocabulary is aligned by span like a subword one.
        shared = init_tokenizer.kind == "char" and getattr(init_tokenizer, "vocab", None) == getattr(
            teacher_tokenizer, "vocab", None)
        return StudentTokenizer(init_tokenizer, shared, "the --student-init checkpoint's")
    tokenizer = default_subword_tokenizer(vocab_size, ctx, console)
    return StudentTokenizer(tokenizer, False, f"embedded-corpus subword ({default_tokenizer_dir(vocab_size)})")


# ---- the items and teacher cache of a task distillation run --------------------------------------

def training_items(config: DistillConfig, train: list[Example], teacher_tokenizer: Tokenizer,
                   student: StudentTokenizer, ctx: DistributedContext, console: Console) -> tuple[list[DistillItem], int]:
    """Items of the train split, then of its augmented copies; and how many were augmented.

    Sentence and pair copies carry no gold label (the teacher's soft targets only); ranking
    copies change the answer side only (``augment_text_a=False``); NER copies keep their
    regenerated tags (:func:`ernie_tiny.augment.ner.augment_ner_examples`).
    """
    student_tokenizer = None if student.shared else student.tokenizer
    task = get_task(config.task)
    ner = task.kind is TaskKind.ner
    console.print(f"encoding {len(train)} training examples with both tokenizers")
    items = build_items([(e.text_a, e.text_b) for e in train], [e.label for e in train], teacher_tokenizer,
                        student_tokenizer, config.max_len)
    if not config.augment:
        return items, 0
    # Rank 0 tags first (and fills the POS cache); the others then read it instead of writing it too.
    for turn in ([0, 1] if ctx.is_distributed else [0]):
        if (turn == 0) == ctx.is_main:
            if ner:
                augmented = augment_ner_examples(train, config.augment_config(), outside=task.labels.index("O"),
                                                 cache_dir=config.augment_cache_dir)
            else:
                augmented = augment_examples(train, config.augment_config(), cache_dir=config.augment_cache_dir)
        barrier(ctx)
    pairs = [a.pair for a in augmented]
    labels = [a.tags for a in augmented] if ner else [NO_LABEL] * len(pairs)
    console.print(f"encoding {len(pairs)} augmented examples")
    items += build_items(pairs, labels, teacher_tokenizer, student_tokenizer, config.max_len, start_index=len(items))
    return items, len(pairs)


def mean_tokens(items: list[DistillItem]) -> dict[str, float]:
    """Mean sequence length (specials included) of the teacher's and the student's encodings."""
    count = max(len(items), 1)
    return {"teacher": round(sum(len(i.teacher) for i in items) / count, 2),
            "student": round(sum(len(i.student) for i in items) / count, 2)}
