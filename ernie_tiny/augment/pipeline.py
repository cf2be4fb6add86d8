"""The ``ernie-tiny augment`` pipeline: read a split, augment it, label it with the teacher, write a TSV.

    examples -> [POS vocabulary + People's Daily] -> augment_examples -> [teacher logits] -> TSV

It prints nothing: ``log(line)`` gets what a user should read and ``progress(stage, done,
total)`` each stage's count (stages ``tag``, ``augment``, ``mlm``, ``label``); the result
is an :class:`AugmentSummary`.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ernie_tiny.augment.strategies import UNK_PLACEHOLDER, AugmentConfig, AugmentedExample, augment_examples
from ernie_tiny.io_utils import atomic_write_text

STRATEGIES = ("unk", "pos", "mlm", "ngram")
Progress = Callable[[str, int, int], None]


def default_cache_dir() -> Path:
    """``$ERNIE_TINY_CACHE/posseg`` or ``~/.cache/ernie-tiny/posseg``."""
    root = os.environ.get("ERNIE_TINY_CACHE") or Path.home() / ".cache" / "ernie-tiny"
    return Path(root) / "posseg"


@dataclass(frozen=True)
class AugmentJob:
    """What to augment, how, and where the TSV goes."""

    task: str  # a name of ernie_tiny.tasks (sentence or pair task)
    out: Path  # the TSV: text_a[, text_b][, teacher_logits as JSON]
    config: AugmentConfig
    data_dir: Path | None = None  # folder with <split>.tsv; None for embedded tasks
    split: str = "train"
    teacher: Path | None = None  # fine-tuned checkpoint: adds its logits per new example
    mlm_teacher: Path | None = None  # masked_lm checkpoint with a char tokenizer: teacher-MLM replacement
    mlm_context: int = 32  # chars of context each side of a masked word
    peoples_daily: bool = False  # add People's Daily 1998 words to the POS vocabulary
    workers: int = 1  # processes for jieba POS tagging
    cache_dir: Path | None = None  # POS tag cache; None: no cache
    hmm: bool = True  # jieba's HMM for unknown words
    batch_size: int = 64  # teacher batch size
    max_len: int = 128  # teacher tokens per example
    device: str = "cpu"  # torch device of the teachers, already resolved (ernie_tiny.devices)


@dataclass(frozen=True)
class AugmentSummary:
    """What a run produced."""

    split: str
    source: str  # where the examples came from (the data folder, or "embedded data")
    originals: int
    new: int
    strategies: dict[str, int]  # how many new examples each strategy touched
    augment_seconds: float
    label_seconds: float | None  # None without --teacher
    out: Path


def tsv_rows(new_examples: Sequence[AugmentedExample], teacher_logits, pair_task: bool) -> list[str]:
    """Header and rows of the augmented TSV; raises ValueError for a field holding a TAB or newline."""
    header = ["text_a"] + (["text_b"] if pair_task else []) + (["teacher_logits"] if teacher_logits is not None else [])
    rows = ["\t".join(header)]
    for i, example in enumerate(new_examples):
        fields = [example.text_a] + ([example.text_b or ""] if pair_task else [])
        if teacher_logits is not None:
            fields.append(json.dumps([round(float(v), 6) for v in teacher_logits[i]]))
        if any("\t" in f or "\n" in f or "\r" in f for f in fields):
            raise ValueError(f"augmented example {i} (from input {example.source_index}) holds a TAB or newline")
        rows.append("\t".join(fields))
    return rows


def run_augment(job: AugmentJob, log: Callable[[str], None] = print,
                progress: Progress | None = None) -> AugmentSummary:
    """Augment ``job.split`` of ``job.task``, label the new examples with the teacher, write ``job.out``."""
    from ernie_tiny.tasks import TaskKind, get_task, load_split

    report = progress or (lambda stage, done, total: None)
    config = job.config
    spec = get_task(job.task)
    if spec.kind is TaskKind.ner:
        raise ValueError(f"task {spec.name} has per-character tags; augmentation changes the characters, so only "
                         f"sentence and pair tasks can be augmented")
    if config.p_mlm > 0 and job.mlm_teacher is None:
        raise ValueError("--p-mlm > 0 needs --mlm-teacher (a masked_lm checkpoint with a char tokenizer)")
    examples = load_split(spec, job.data_dir, job.split)
    source = str(job.data_dir) if job.data_dir is not None else "embedded data"
    log(f"{job.split}: {len(examples)} examples from {source}")
    started = time.perf_counter()
    mlm = None
    teacher_model = None
    if job.mlm_teacher is not None:
        from ernie_tiny.augment.teacher import TeacherMaskedLM

        mlm = TeacherMaskedLM.from_pretrained(job.mlm_teacher, top_k=config.mlm_top_k, max_len=job.max_len,
                                              context_chars=job.mlm_context, device=job.device)
    if job.teacher is not None:  # load before the long work: a bad folder fails fast
        from ernie_tiny.checkpoint import load_pretrained
        from ernie_tiny.heads import HeadKind

        teacher_model = load_pretrained(job.teacher, map_location=job.device)
        if teacher_model.meta.head not in (HeadKind.sequence_classification, HeadKind.ranking):
            raise ValueError(f"{job.teacher}: head {teacher_model.meta.head.value} gives no per-example logits")
        if teacher_model.tokenizer is None:
            raise ValueError(f"{job.teacher}: checkpoint has no tokenizer files")
    tagged, pos_vocab = None, None
    if job.peoples_daily:  # the task's own words plus the corpus's, under jieba's tags
        from ernie_tiny.augment.pos import PosVocabulary, peoples_daily_vocabulary, tag_texts

        texts = list(dict.fromkeys(t for e in examples for t in (e.text_a, e.text_b) if t is not None))
        tagged = dict(zip(texts, tag_texts(texts, hmm=job.hmm, workers=job.workers, cache_dir=job.cache_dir,
                                           progress=lambda done, total: report("tag", done, total))))
        pos_vocab = PosVocabulary.from_tagged(tagged.values(), exclude_chars=UNK_PLACEHOLDER).merged(
            peoples_daily_vocabulary(exclude_chars=UNK_PLACEHOLDER))
    new_examples = augment_examples(examples, config, pos_vocab=pos_vocab, tagged=tagged, mlm=mlm,
                                    workers=job.workers, cache_dir=job.cache_dir, hmm=job.hmm, progress=report)
    augmented_at = time.perf_counter()
    logits = None
    if teacher_model is not None:
        from ernie_tiny.augment.teacher import label_with_teacher

        logits = label_with_teacher(teacher_model.model, teacher_model.tokenizer, [e.pair for e in new_examples],
                                    batch_size=job.batch_size, max_len=job.max_len, device=job.device,
                                    progress=lambda done, total: report("label", done, total))
    pair_task = any(e.text_b is not None for e in examples)
    atomic_write_text(job.out, "\n".join(tsv_rows(new_examples, logits, pair_task)) + "\n")
    used = Counter(strategy for e in new_examples for strategy in e.strategies)
    return AugmentSummary(split=job.split, source=source, originals=len(examples), new=len(new_examples),
                          strategies={name: used[name] for name in STRATEGIES},
                          augment_seconds=augmented_at - started,
                          label_seconds=time.perf_counter() - augmented_at if logits is not None else None, out=job.out)
