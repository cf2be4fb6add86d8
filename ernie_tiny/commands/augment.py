"""``ernie-tiny augment``: new unlabelled examples from a task split, optionally with teacher soft labels.

The pipeline is :func:`ernie_tiny.augment.pipeline.run_augment`; this command parses the
options, draws its progress bars and prints its summary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ernie_tiny.augment.pipeline import STRATEGIES, AugmentJob, AugmentSummary, default_cache_dir, run_augment
from ernie_tiny.augment.strategies import AugmentConfig
from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import DEFAULT_DEVICE, DataDirOpt, DeviceOpt, MaxLenOpt, TaskOpt, MAX_SEED, MAX_THREADS
from ernie_tiny.devices import resolve_device

STAGE_NAMES = {"tag": "POS tagging (jieba)", "augment": "augmenting", "mlm": "teacher MLM", "label": "teacher labels"}


class StageProgress:
    """A rich progress bar per stage, created on the stage's first report."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.bars: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.bars:
            self.bars[stage] = self.progress.add_task(STAGE_NAMES.get(stage, stage), total=total)
        self.progress.update(self.bars[stage], completed=done, total=total)


def summary_lines(summary: AugmentSummary) -> list[str]:
    per_example = summary.new / max(summary.originals, 1)
    used = ", ".join(f"{name} {summary.strategies.get(name, 0)}" for name in STRATEGIES)
    timing = f"augmenting {summary.augment_seconds:.1f}s"
    if summary.label_seconds is not None:
        timing += f", teacher labels {summary.label_seconds:.1f}s"
    return [f"{summary.split}: {summary.originals} examples -> {summary.new} new "
            f"({per_example:.2f} per example; {used})",
            f"{timing}; wrote {summary.out}"]


def augment(
    task: TaskOpt,
    out: Annotated[Path, typer.Option(dir_okay=False, help="TSV to write: text_a[, text_b][, teacher_logits as JSON].")],
    data_dir: DataDirOpt = None,
    split: Annotated[str, typer.Option(help="Which split to augment.")] = "train",
    num_aug: Annotated[int, typer.Option("--num-aug", "-n", min=1, help="New examples per original (N).")] = 4,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed; example i always draws from (seed, i).")] = 0,
    teacher: Annotated[Path | None, typer.Option(exists=True, file_okay=False, help="Fine-tuned teacher checkpoint: adds its logits.")] = None,
    mlm_teacher: Annotated[Path | None, typer.Option(exists=True, file_okay=False, help="masked_lm checkpoint with a char tokenizer: "
                                                          "enables teacher-MLM word replacement.")] = None,
    p_unk: Annotated[float, typer.Option(min=0, max=1, help="Per word: replace by [UNK].")] = 0.1,
    p_pos: Annotated[float, typer.Option(min=0, max=1, help="Per word: replace by a same-POS word of the data set.")] = 0.1,
    p_mlm: Annotated[float | None, typer.Option(min=0, max=1, help="Per Chinese word: MLM replacement "
                                                     "(default: 0.1 with --mlm-teacher, else 0).")] = None,
    p_ngram: Annotated[float, typer.Option(min=0, max=1, help="Per text: keep only a random span of words.")] = 0.25,
    ngram_min: Annotated[int, typer.Option(min=1, help="Shortest kept span, in words.")] = 1,
    ngram_max: Annotated[int | None, typer.Option(min=1, help="Longest kept span (default: all words but one).")] = None,
    mlm_top_k: Annotated[int, typer.Option(min=1, help="MLM candidates per word to pick from.")] = 15,
    mlm_context: Annotated[int, typer.Option(min=0, help="Chars of context each side of a masked word.")] = 32,
    peoples_daily: Annotated[bool, typer.Option(help="Add People's Daily 1998 words to the POS vocabulary.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Processes for jieba POS tagging.")] = min(2, os.cpu_count() or 1),
    cache: Annotated[bool, typer.Option(help="Cache POS tags in --cache-dir.")] = True,
    cache_dir: Annotated[Path | None, typer.Option(file_okay=False, help="POS tag cache (default: $ERNIE_TINY_CACHE/posseg "
                                                        "or ~/.cache/ernie-tiny/posseg).")] = None,
    hmm: Annotated[bool, typer.Option(help="jieba's HMM for unknown words (--no-hmm: ~7x faster tagging).")] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Teacher batch size.")] = 64,
    max_len: MaxLenOpt = 128,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: Annotated[int, typer.Option(min=0, max=MAX_THREADS, help="torch CPU threads for the teacher (0: torch's default).")] = 0,
) -> None:
    """Augment a task split with ERNIE Slim's strategies (+ teacher MLM) and label it with the teacher.

    Example: ernie-tiny augment --task chnsenticorp --data-dir ../shared/data/chnsenticorp_htl
    --num-aug 4 --teacher checkpoints/teacher --out runs/htl_aug.tsv
    """
    console = Console(stderr=True, soft_wrap=True, highlight=False)  # soft wrap: a line stays one line
    with command_errors():
        if threads < 0:
            raise ValueError(f"--threads must be >= 0, got {threads}")
        job = AugmentJob(task=task.value, out=out, data_dir=data_dir, split=split, teacher=teacher,
                         mlm_teacher=mlm_teacher, mlm_context=mlm_context, peoples_daily=peoples_daily,
                         workers=workers, cache_dir=(cache_dir or default_cache_dir()) if cache else None, hmm=hmm,
                         batch_size=batch_size, max_len=max_len, device=resolve_device(device),
                         config=AugmentConfig(num_aug=num_aug, p_unk=p_unk, p_pos=p_pos,
                                              p_mlm=(0.1 if mlm_teacher is not None else 0.0) if p_mlm is None
                                              else p_mlm, p_ngram=p_ngram, ngram_min=ngram_min,
                                              ngram_max=ngram_max, mlm_top_k=mlm_top_k, seed=seed))
        if threads and (teacher is not None or mlm_teacher is not None):
            import torch

            # On a shared machine fewer threads than cores avoid OpenMP oversubscription: 2 threads ran
            # the teacher 10x slower than 1 at load average 13 on 2 cores.
            torch.set_num_threads(threads)
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=False) as progress:
            summary = run_augment(job, log=lambda line: console.print(line, markup=False),
                                  progress=StageProgress(progress))
    for line in summary_lines(summary):
        console.print(line, markup=False)
