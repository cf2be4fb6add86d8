"""``ernie-tiny augment``: new unlabelled examples from a task split, optionally with teacher soft labels."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ernie_tiny.augment.strategies import UNK_PLACEHOLDER, AugmentConfig, augment_examples
from ernie_tiny.io_utils import atomic_write_text

STAGE_NAMES = {"tag": "POS tagging (jieba)", "augment": "augmenting", "mlm": "teacher MLM", "label": "teacher labels"}


def default_cache_dir() -> Path:
    """``$ERNIE_TINY_CACHE/posseg`` or ``~/.cache/ernie-tiny/posseg``."""
    root = os.environ.get("ERNIE_TINY_CACHE") or Path.home() / ".cache" / "ernie-tiny"
    return Path(root) / "posseg"


class StageProgress:
    """A rich progress bar per stage, created on the stage's first report."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.bars: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.bars:
            self.bars[stage] = self.progress.add_task(STAGE_NAMES.get(stage, stage), total=total)
        self.progress.update(self.bars[stage], completed=done, total=total)


def tsv_rows(new_examples, teacher_logits, pair_task: bool) -> list[str]:
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


def augment(
    task: Annotated[str, typer.Option(help="Task name, e.g. chnsenticorp, lcqmc (see ernie_tiny.data.tasks).")],
    out: Annotated[Path, typer.Option(help="TSV to write: text_a[, text_b][, teacher_logits as JSON].")],
    data_dir: Annotated[Path | None, typer.Option(help="Folder with train/dev/test.tsv "
                                                       "(not for embedded tasks).")] = None,
    split: Annotated[str, typer.Option(help="Which split to augment.")] = "train",
    num_aug: Annotated[int, typer.Option("--num-aug", "-n", help="New examples per original (N).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed; example i always draws from (seed, i).")] = 0,
    teacher: Annotated[Path | None, typer.Option(help="Fine-tuned teacher checkpoint: adds its logits.")] = None,
    mlm_teacher: Annotated[Path | None, typer.Option(help="masked_lm checkpoint with a char tokenizer: "
                                                          "enables teacher-MLM word replacement.")] = None,
    p_unk: Annotated[float, typer.Option(help="Per word: replace by [UNK].")] = 0.1,
    p_pos: Annotated[float, typer.Option(help="Per word: replace by a same-POS word of the data set.")] = 0.1,
    p_mlm: Annotated[float | None, typer.Option(help="Per Chinese word: MLM replacement "
                                                     "(default: 0.1 with --mlm-teacher, else 0).")] = None,
    p_ngram: Annotated[float, typer.Option(help="Per text: keep only a random span of words.")] = 0.25,
    ngram_min: Annotated[int, typer.Option(help="Shortest kept span, in words.")] = 1,
    ngram_max: Annotated[int | None, typer.Option(help="Longest kept span (default: all words but one).")] = None,
    mlm_top_k: Annotated[int, typer.Option(help="MLM candidates per word to pick from.")] = 15,
    mlm_context: Annotated[int, typer.Option(help="Chars of context each side of a masked word.")] = 32,
    peoples_daily: Annotated[bool, typer.Option(help="Add People's Daily 1998 words to the POS vocabulary.")] = False,
    workers: Annotated[int, typer.Option(help="Processes for jieba POS tagging.")] = min(2, os.cpu_count() or 1),
    cache: Annotated[bool, typer.Option(help="Cache POS tags in --cache-dir.")] = True,
    cache_dir: Annotated[Path | None, typer.Option(help="POS tag cache (default: $ERNIE_TINY_CACHE/posseg "
                                                        "or ~/.cache/ernie-tiny/posseg).")] = None,
    hmm: Annotated[bool, typer.Option(help="jieba's HMM for unknown words (--no-hmm: ~7x faster tagging).")] = True,
    batch_size: Annotated[int, typer.Option(help="Teacher batch size.")] = 64,
    max_len: Annotated[int, typer.Option(help="Teacher max tokens per example.")] = 128,
    device: Annotated[str, typer.Option(help="Teacher device, e.g. cpu or cuda.")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch CPU threads for the teacher (0: torch's default).")] = 0,
) -> None:
    """Augment a task split with ERNIE Slim's strategies (+ teacher MLM) and label it with the teacher.

    Example: ernie-tiny augment --task chnsenticorp --data-dir ../shared/data/chnsenticorp_htl
    --num-aug 4 --teacher checkpoints/teacher --out runs/htl_aug.tsv
    """
    console = Console(stderr=True, soft_wrap=True)  # soft wrap: an error stays one line
    try:
        run_augment(console, task=task, out=out, data_dir=data_dir, split=split, teacher=teacher,
                    mlm_teacher=mlm_teacher, mlm_context=mlm_context, peoples_daily=peoples_daily, workers=workers,
                    cache_dir=(cache_dir or default_cache_dir()) if cache else None, hmm=hmm,
                    batch_size=batch_size, max_len=max_len, device=device, threads=threads,
                    config=AugmentConfig(num_aug=num_aug, p_unk=p_unk, p_pos=p_pos,
                                         p_mlm=(0.1 if mlm_teacher is not None else 0.0) if p_mlm is None else p_mlm,
                                         p_ngram=p_ngram, ngram_min=ngram_min, ngram_max=ngram_max,
                                         mlm_top_k=mlm_top_k, seed=seed))
    except (ValueError, OSError) as err:  # DataError and CheckpointError are ValueErrors
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(code=1) from None


def run_augment(console: Console, task: str, out: Path, data_dir: Path | None, split: str, config: AugmentConfig,
                teacher: Path | None, mlm_teacher: Path | None, mlm_context: int, peoples_daily: bool, workers: int,
                cache_dir: Path | None, hmm: bool, batch_size: int, max_len: int, device: str,
                threads: int = 0) -> None:
    from ernie_tiny.data.tasks import TaskKind, get_task, load_split

    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    if threads and (teacher is not None or mlm_teacher is not None):
        import torch

        # On a shared machine fewer threads than cores avoid OpenMP oversubscription: 2 threads ran
        # the teacher 10x slower than 1 at load average 13 on 2 cores.
        torch.set_num_threads(threads)

    spec = get_task(task)
    if spec.kind is TaskKind.ner:
        raise ValueError(f"task {spec.name} has per-character tags; augmentation changes the characters, so only "
                         f"sentence and pair tasks can be augmented")
    if config.p_mlm > 0 and mlm_teacher is None:
        raise ValueError("--p-mlm > 0 needs --mlm-teacher (a masked_lm checkpoint with a char tokenizer)")
    examples = load_split(spec, data_dir, split)
    started = time.perf_counter()
    mlm = None
    teacher_model = None
    if mlm_teacher is not None:
        from ernie_tiny.augment.teacher import TeacherMaskedLM

        mlm = TeacherMaskedLM.from_pretrained(mlm_teacher, top_k=config.mlm_top_k, max_len=max_len,
                                              context_chars=mlm_context, device=device)
    if teacher is not None:  # load before the long work: a bad folder fails fast
        from ernie_tiny.checkpoint import load_pretrained
        from ernie_tiny.heads import HeadKind

        teacher_model = load_pretrained(teacher, map_location=device)
        if teacher_model.meta.head not in (HeadKind.sequence_classification, HeadKind.ranking):
            raise ValueError(f"{teacher}: head {teacher_model.meta.head.value} gives no per-example logits")
        if teacher_model.tokenizer is None:
            raise ValueError(f"{teacher}: checkpoint has no tokenizer files")
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        report = StageProgress(progress)
        tagged, pos_vocab = None, None
        if peoples_daily:  # the task's own words plus the corpus's, under jieba's tags
            from ernie_tiny.augment.pos import PosVocabulary, peoples_daily_vocabulary, tag_texts

            texts = list(dict.fromkeys(t for e in examples for t in (e.text_a, e.text_b) if t is not None))
            tagged = dict(zip(texts, tag_texts(texts, hmm=hmm, workers=workers, cache_dir=cache_dir,
                                               progress=lambda done, total: report("tag", done, total))))
            pos_vocab = PosVocabulary.from_tagged(tagged.values(), exclude_chars=UNK_PLACEHOLDER).merged(
                peoples_daily_vocabulary(exclude_chars=UNK_PLACEHOLDER))
        new_examples = augment_examples(examples, config, pos_vocab=pos_vocab, tagged=tagged, mlm=mlm,
                                        workers=workers, cache_dir=cache_dir, hmm=hmm, progress=report)
        augmented_at = time.perf_counter()
        logits = None
        if teacher_model is not None:
            from ernie_tiny.augment.teacher import label_with_teacher

            logits = label_with_teacher(teacher_model.model, teacher_model.tokenizer, [e.pair for e in new_examples],
                                        batch_size=batch_size, max_len=max_len, device=device,
                                        progress=lambda done, total: report("label", done, total))
    pair_task = any(e.text_b is not None for e in examples)
    atomic_write_text(out, "\n".join(tsv_rows(new_examples, logits, pair_task)) + "\n")
    finished = time.perf_counter()
    used = Counter(strategy for e in new_examples for strategy in e.strategies)
    console.print(f"{split}: {len(examples)} examples -> {len(new_examples)} new "
                  f"({len(new_examples) / max(len(examples), 1):.2f} per example; "
                  + ", ".join(f"{name} {used[name]}" for name in ("unk", "pos", "mlm", "ngram")) + ")", highlight=False)
    console.print(f"augmenting {augmented_at - started:.1f}s"
                  + (f", teacher labels {finished - augmented_at:.1f}s" if logits is not None else "")
                  + f"; wrote {out}", highlight=False)
