"""``ernie-tiny pretrain``: the CLI over :mod:`ernie_tiny.pretrain.trainer` (ERNIE 1.0 knowledge masking)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ernie_tiny.commands.errors import training_command_errors
from ernie_tiny.commands.training_options import (CompileOpt, DeviceBatchSizeOpt, MaxMinutesOpt, batch_and_lr,
                                                  peak_lr_option)
from ernie_tiny.commands.options import (DEFAULT_DEVICE, DeviceOpt, MaxLenOpt, OverwriteOpt, ResumeOpt, RunDirOpt,
                                         SeedOpt, ThreadsOpt, one_of, positive)
from ernie_tiny.devices import resolve_device
from ernie_tiny.model import PRESETS
from ernie_tiny.training.precision import Precision

PresetName = Enum("PresetName", {name: name for name in PRESETS}, type=str)


class WordCacheBar:
    """A rich bar over the one-time segmentation of the corpus (the word cache); none when the cache is ready."""

    def __init__(self, console: Console):
        self.console, self.progress, self.task = console, None, None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            if done >= total:
                return
            self.progress = Progress(TextColumn("segmenting the corpus once (word cache)"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)
            self.progress.start()
            self.task = self.progress.add_task("words", total=total)
        self.progress.update(self.task, completed=done)
        if done >= total:
            self.progress.stop()


DEFAULT_LR = 5e-4  # peak lr at batch 32

def pretrain(
    out: RunDirOpt,
    preset: Annotated[Optional[PresetName], typer.Option(metavar="PRESET", help="Random-init model of this preset, "
                                                         f"{one_of(PRESETS)}.")] = None,
    init: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Continue from this checkpoint instead of --preset.")] = None,
    corpus: Annotated[Optional[list[Path]], typer.Option(exists=True, help="Text, .gz or ERNIE 1.0 id file, or a folder of them; "
                                                              "repeat for more (default: the embedded People's "
                                                              "Daily 1998 + reviews, with their entity tags).")] = None,
    layout: Annotated[str, typer.Option(help="line: one document per line; paragraph: documents separated by "
                                             "blank lines.")] = "line",
    dev_corpus: Annotated[Optional[list[Path]], typer.Option(exists=True, help="Held-out documents to evaluate on (default: "
                                                                  "masked examples of the corpus, other seed).")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Tokenizer folder (default: the --init checkpoint's, "
                                                           "else a char vocabulary built from the corpus).")] = None,
    objectives: Annotated[str, typer.Option(help="mlm, or mlm,sentence-distance (ERNIE 2.0's 3-way task, with "
                                                 "task-type embeddings).")] = "mlm",
    mask_rate: Annotated[float, typer.Option(max=1, callback=positive, help="Share of tokens predicted, chosen as whole units.")] = 0.15,
    unit_mix: Annotated[str, typer.Option(help="basic,phrase,entity probabilities of an example's unit level.")]
    = "0.2,0.4,0.4",
    max_steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 10000,
    lr: Annotated[Optional[float], peak_lr_option(DEFAULT_LR)] = None,
    batch_size: DeviceBatchSizeOpt = None,
    grad_accum: Annotated[int, typer.Option(min=1, help="Micro-batches per step (each of batch-size / grad-accum "
                                                 "examples).")] = 1,
    precision: Annotated[Precision, typer.Option(help="auto: bf16 (or fp16 with loss scaling) on CUDA, fp32 on "
                                                      "CPU; bf16 also runs on CPU.")] = Precision.auto,
    max_len: MaxLenOpt = 128,
    warmup_ratio: Annotated[float, typer.Option(min=0, max=1, help="Fraction of steps warming up.")] = 0.05,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between dev evaluations (best/ keeps the best).")] = 1000,
    eval_examples: Annotated[int, typer.Option(min=1, help="Masked dev examples per evaluation.")] = 512,
    save_every: Annotated[int, typer.Option(min=1, help="Steps between last.pt saves.")] = 500,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between metrics.jsonl lines.")] = 20,
    data_workers: Annotated[int, typer.Option(min=0, help="Processes that mask the next steps' examples while one trains "
                                                   "(0: in the training process).")] = 1,
    word_cache: Annotated[bool, typer.Option(help="Segment the corpus's sentences with jieba once, up front (in "
                                                  "--data-workers processes), and cache the words; "
                                                  "--no-word-cache segments them at every example (same masks, "
                                                  "much slower).")] = True,
    word_cache_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Folder of the word cache (default: "
                                                                "$ERNIE_TINY_CACHE/words or "
                                                                "~/.cache/ernie-tiny/words).")] = None,
    seed: SeedOpt = 42,
    resume: ResumeOpt = False,
    max_minutes: MaxMinutesOpt = None,
    compile_forward: CompileOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: ThreadsOpt = None,
) -> None:
    """Pretrain an encoder with ERNIE 1.0 knowledge masking (basic, phrase and entity units).

    Example: ernie-tiny pretrain --preset teacher-small --max-steps 20000 --out runs/pretrain
    (then: ernie-tiny teacher finetune --init runs/pretrain/best --task lcqmc ...)
    """
    console = Console()
    with training_command_errors(out):
        import torch

        from ernie_tiny.pretrain.masking import MaskingConfig
        from ernie_tiny.pretrain.trainer import PretrainConfig, pretrain as run_pretrain
        from ernie_tiny.training.schedule import OptimConfig

        if threads is not None:
            torch.set_num_threads(threads)
        device = resolve_device(device)  # before anything is written: a missing GPU leaves no --out behind
        batch_size, lr = batch_and_lr(device, batch_size, lr, DEFAULT_LR)
        try:
            basic, phrase, entity = (float(v) for v in unit_mix.split(","))
        except ValueError:
            raise ValueError(f"--unit-mix {unit_mix!r}: expected three numbers basic,phrase,entity") from None
        optim = OptimConfig(lr=lr, warmup_ratio=warmup_ratio, batch_size=batch_size, grad_accum=grad_accum,
                            precision=precision, seed=seed, eval_every=eval_every, save_every=save_every,
                            log_every=log_every, max_minutes=max_minutes, compile=compile_forward)
        config = PretrainConfig(
            out_dir=str(out), preset=preset.value if preset else None, init=str(init) if init else None,
            corpus=[str(p) for p in corpus or []], layout=layout, dev_corpus=[str(p) for p in dev_corpus or []],
            tokenizer=str(tokenizer) if tokenizer else None,
            objectives=[o.strip() for o in objectives.split(",") if o.strip()],
            masking=MaskingConfig(mask_rate=mask_rate, basic=basic, phrase=phrase, entity=entity),
            max_len=max_len, max_steps=max_steps, eval_examples=eval_examples, data_workers=data_workers, device=device, resume=resume,
            overwrite=overwrite, optim=optim, word_cache=word_cache,
            word_cache_dir=str(word_cache_dir) if word_cache_dir else None)
        run_pretrain(config, console, progress=WordCacheBar(console))
