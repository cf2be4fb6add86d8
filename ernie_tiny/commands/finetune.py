"""``ernie-tiny teacher finetune``: the CLI over :mod:`ernie_tiny.finetune`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console

from ernie_tiny.commands.errors import training_command_errors
from ernie_tiny.commands.options import (DEFAULT_DEVICE, MAX_SEED, MAX_THREADS, DeviceOpt, OverwriteOpt, ResumeOpt, one_of,
                                         positive)
from ernie_tiny.commands.training_options import BATCH_SIZE_HELP, CompileOpt, MaxMinutesOpt, batch_and_lr
from ernie_tiny.model import PRESETS
from ernie_tiny.tasks import TASKS
from ernie_tiny.devices import resolve_device
from ernie_tiny.finetune import FinetuneConfig, default_lr, finetune as run_finetune
from ernie_tiny.training.data_order import BatchOrder
from ernie_tiny.training.precision import Precision
from ernie_tiny.training.schedule import OptimConfig

TaskName = Enum("TaskName", {name: name for name in TASKS}, type=str)
PresetName = Enum("PresetName", {name: name for name in PRESETS}, type=str)


def finetune(
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Output folder: best/, last.pt, metrics.json, loss_curve.png.")],
    task: Annotated[TaskName, typer.Option(help="Task; 'reviews' needs no --data-dir.")] = TaskName("reviews"),
    preset: Annotated[Optional[PresetName], typer.Option(metavar="PRESET", help="Random-init teacher of this preset, "
                                                         f"{one_of(PRESETS)}.")] = None,
    init: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Start from this checkpoint instead of --preset.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Folder with train.tsv, dev.tsv, test.tsv.")] = None,
    max_steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 1000,
    lr: Annotated[Optional[float], typer.Option(callback=positive, help="Peak learning rate (default 3e-4 with --preset, "
                                                     "5e-5 with --init).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help=BATCH_SIZE_HELP)] = None,
    max_len: Annotated[int, typer.Option(min=3, help="Tokens per example; longer texts are truncated.")] = 128,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between dev evaluations.")] = 200,
    save_every: Annotated[Optional[int], typer.Option(min=1, help="Steps between last.pt saves "
                                                           "(default: --eval-every).")] = None,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between metrics.jsonl lines.")] = 10,
    warmup_ratio: Annotated[float, typer.Option(min=0, max=1, help="Fraction of steps warming up.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(min=0, help="AdamW weight decay.")] = 0.01,
    grad_accum: Annotated[int, typer.Option(min=1, help="Micro-batches per step (each of batch-size / grad-accum "
                                                 "examples): same result, less memory.")] = 1,
    precision: Annotated[Precision, typer.Option(help="auto: bf16 (or fp16 with loss scaling) on CUDA, fp32 on "
                                                      "CPU; bf16 also runs on CPU.")] = Precision.auto,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of init, data order and dropout.")] = 42,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    vocab_from_train: Annotated[bool, typer.Option("--vocab-from-train", help="With --init: rebuild the char "
                                                   "vocab from the train texts (known rows kept).")] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Train on the first N training examples (dev and test stay "
                                                      "whole).")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Score only the first N dev and test examples.")] = None,
    batch_order: Annotated[BatchOrder, typer.Option(help="auto: length-buckets on CUDA (batches of similar "
                                                        "lengths pad less), shuffled on CPU.")] = BatchOrder.auto,
    max_minutes: MaxMinutesOpt = None,
    compile_forward: CompileOpt = False,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: Annotated[Optional[int], typer.Option(min=1, max=MAX_THREADS, help="torch CPU threads (default: torch's; 1 is faster "
                                                       "on a busy machine).")] = None,
) -> None:
    """Fine-tune a char-level teacher on a task and keep the best dev checkpoint.

    Example: ernie-tiny teacher finetune --preset teacher-small --task reviews --max-len 64
    --max-steps 300 --out runs/teacher
    """
    console = Console()
    if threads is not None:
        torch.set_num_threads(threads)
    with training_command_errors(out):
        device = resolve_device(device)  # before anything is written: a missing GPU leaves no --out behind
        batch_size, peak_lr = batch_and_lr(device, batch_size, lr, default_lr(init is not None))
        optim = OptimConfig(lr=peak_lr, weight_decay=weight_decay,
                            warmup_ratio=warmup_ratio, batch_size=batch_size, grad_accum=grad_accum,
                            precision=precision, seed=seed, max_minutes=max_minutes, compile=compile_forward,
                            eval_every=eval_every, save_every=save_every or eval_every, log_every=log_every)
        config = FinetuneConfig(task=task.value, out_dir=str(out), preset=preset.value if preset else None,
                                init=str(init) if init else None, data_dir=str(data_dir) if data_dir else None,
                                max_len=max_len, max_steps=max_steps, vocab_from_train=vocab_from_train, device=device, resume=resume,
                                overwrite=overwrite, limit=limit, eval_limit=eval_limit, batch_order=batch_order,
                                optim=optim)
        run_finetune(config, console)

