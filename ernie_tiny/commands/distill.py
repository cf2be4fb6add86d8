"""``ernie-tiny distill`` and ``ernie-tiny distill-general``: the CLI over :mod:`ernie_tiny.distill`.

Both run unchanged under ``torchrun --nproc_per_node N`` (one process per GPU, or N CPU
processes with gloo); only rank 0 prints and writes.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console

from ernie_tiny.commands.errors import training_command_errors
from ernie_tiny.commands.training_options import (CompileOpt, DeviceBatchSizeOpt, MaxMinutesOpt, batch_and_lr,
                                                  peak_lr_option)
from ernie_tiny.commands.options import (DEFAULT_DEVICE, DataDirOpt, DeviceOpt, MaxLenOpt, OverwriteOpt, ResumeOpt,
                                         RunDirOpt, SeedOpt, TaskName, TaskOpt, ThreadsOpt, one_of, positive)
from ernie_tiny.distill.config import DistillConfig, GeneralDistillConfig, Stage
from ernie_tiny.distill.general import distill_general as run_general
from ernie_tiny.distill.losses import (DEFAULT_FEATURE_BALANCE, DEFAULT_FEATURE_RATIO, DEFAULT_FEATURE_WARMUP,
                                       AttentionLossKind, DistillLossWeights, FeatureBalance)
from ernie_tiny.distill.task import distill as run_distill
from ernie_tiny.model import PRESETS
from ernie_tiny.tokenization.subword import DEFAULT_VOCAB_SIZE
from ernie_tiny.devices import resolve_device
from ernie_tiny.training.precision import Precision
from ernie_tiny.training.schedule import OptimConfig

PresetName = Enum("PresetName", {name: name for name in PRESETS}, type=str)

Teacher = Annotated[Path, typer.Option("--teacher", exists=True, file_okay=False, help="Teacher checkpoint folder (ernie-tiny, Hugging Face or Paddle).")]
StudentPreset = Annotated[Optional[PresetName], typer.Option(
    metavar="PRESET", help=f"Student size, {one_of(PRESETS)} (default: student-small on CPU, ernie-tiny on CUDA).")]
StudentInit = Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Start the student from this checkpoint "
                                                          "(e.g. a distill-general result).")]
StudentTokenizer = Annotated[Optional[str], typer.Option(
    help="Student tokenizer folder, or 'char' for the teacher's own (no alignment) (default: the init "
         "checkpoint's, else the embedded-corpus subword tokenizer, trained once and cached).")]
VocabSize = Annotated[int, typer.Option(min=1, help="Vocabulary of the default subword tokenizer.")]
LayerMapOption = Annotated[str, typer.Option("--layer-map", help="Layer map preset (tinybert: student layer i "
                                                                 "learns teacher layer i*T/S; tinybert-12to3, uniform, "
                                                                 "last-only) or a JSON list of matches.")]
AttentionLoss = Annotated[AttentionLossKind, typer.Option(help="Attention loss across tokenizers.")]
Lr = Annotated[float, typer.Option(callback=positive, help="Peak learning rate.")]
GradAccum = Annotated[int, typer.Option(min=1, help="Micro-batches per step (each of batch-size / grad-accum examples).")]
PrecisionOpt = Annotated[Precision, typer.Option(help="auto: bf16 (or fp16 with loss scaling) on CUDA, fp32 on CPU.")]

DEFAULT_LR = 5e-4  # peak lr of both distillation commands at batch 32


def distill(
    teacher: Teacher,
    out: RunDirOpt,
    task: TaskOpt = TaskName("reviews"),
    data_dir: DataDirOpt = None,
    stage: Annotated[Stage, typer.Option(help="intermediate (layers), prediction (logits), both (one then the other) or joint (both losses at every step, --steps-prediction steps).")] = Stage.joint,
    student_preset: StudentPreset = None,
    student_init: StudentInit = None,
    student_tokenizer: StudentTokenizer = None,
    vocab_size: VocabSize = DEFAULT_VOCAB_SIZE,
    augment: Annotated[int, typer.Option(min=0, help="Augmented copies per training example, labelled by the teacher.")] = 0,
    augment_cache_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Keep jieba POS tags here for re-runs.")] = None,
    layer_map: LayerMapOption = "tinybert",
    temperature: Annotated[float, typer.Option(callback=positive, help="Softmax temperature of the soft targets.")] = 1.0,
    soft_weight: Annotated[float, typer.Option(min=0, help="Weight of the soft cross-entropy (0: labels only).")] = 1.0,
    hard_weight: Annotated[float, typer.Option(min=0, help="Weight of the gold-label cross-entropy.")] = 0.0,
    hidden_weight: Annotated[float, typer.Option(min=0, help="Weight of each hidden-state MSE.")] = 1.0,
    attention_weight: Annotated[float, typer.Option(min=0, help="Weight of each attention loss.")] = 1.0,
    embedding_weight: Annotated[float, typer.Option(min=0, help="Weight of the embedding MSE.")] = 1.0,
    feature_balance: Annotated[FeatureBalance, typer.Option(help="Joint stage: first_step scales the layer-wise "
                                                                 "total to --feature-ratio x the prediction loss of "
                                                                 "the first step; none keeps the weights as given.")
                               ] = DEFAULT_FEATURE_BALANCE,
    feature_ratio: Annotated[float, typer.Option(callback=positive, help="Layer-wise / prediction loss at the first joint step "
                                                      "(--feature-balance first_step).")] = DEFAULT_FEATURE_RATIO,
    feature_warmup: Annotated[float, typer.Option(min=0, max=1, help="Joint stage: the share of its steps over which the "
                                                       "layer-wise total ramps linearly from 0 to full weight "
                                                       "(0: full from the first step).")] = DEFAULT_FEATURE_WARMUP,
    attention_loss: AttentionLoss = AttentionLossKind.kl,
    steps_intermediate: Annotated[int, typer.Option(min=0, help="Steps of the intermediate stage (--stage both/intermediate).")] = 300,
    steps_prediction: Annotated[int, typer.Option(min=0, help="Steps of the prediction (or joint) stage.")] = 300,
    lr: Annotated[Optional[float], peak_lr_option(DEFAULT_LR)] = None,
    lr_prediction: Annotated[Optional[float], typer.Option(callback=positive, help="Peak lr of the prediction stage (default: --lr).")] = None,
    batch_size: DeviceBatchSizeOpt = None,
    grad_accum: GradAccum = 1,
    precision: PrecisionOpt = Precision.auto,
    max_len: MaxLenOpt = 128,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between dev evaluations (prediction stage).")] = 100,
    save_every: Annotated[Optional[int], typer.Option(min=1, help="Steps between last.pt saves (default: --eval-every).")] = None,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between metrics.jsonl lines.")] = 10,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Distil on the first N training examples (dev and test stay "
                                                      "whole).")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Score only the first N dev and test examples.")] = None,
    no_teacher_cache: Annotated[bool, typer.Option("--no-teacher-cache", help="Run the teacher on every batch.")] = False,
    seed: SeedOpt = 42,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    max_minutes: MaxMinutesOpt = None,
    compile_forward: CompileOpt = False,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: ThreadsOpt = None,
) -> None:
    """Distil a fine-tuned char teacher into the subword student (layer-wise + prediction-layer losses).

    Example: ernie-tiny distill --teacher runs/teacher/best --task chnsenticorp --data-dir ../shared/data/chnsenticorp_htl --augment 2 --out runs/student
    """
    console = Console()
    if threads is not None:
        torch.set_num_threads(threads)
    with training_command_errors(out):
        device = resolve_device(device)  # before anything is written: a missing GPU leaves no --out behind
        batch_size, lr = batch_and_lr(device, batch_size, lr, DEFAULT_LR)
        weights = DistillLossWeights(embedding=embedding_weight, hidden=hidden_weight, attention=attention_weight,
                                     soft=soft_weight, hard=hard_weight, temperature=temperature,
                                     feature_balance=feature_balance, feature_ratio=feature_ratio,
                                     feature_warmup=feature_warmup)
        config = DistillConfig(
            teacher=str(teacher), task=task.value, out_dir=str(out), data_dir=str(data_dir) if data_dir else None,
            stage=stage, student_preset=student_preset.value if student_preset else None,
            student_init=str(student_init) if student_init else None, student_tokenizer=student_tokenizer,
            subword_vocab_size=vocab_size, layer_map=layer_map, loss_weights=weights, attention_loss=attention_loss,
            steps_intermediate=steps_intermediate, steps_prediction=steps_prediction,
            optim=OptimConfig(lr=lr, batch_size=batch_size, grad_accum=grad_accum, precision=precision, seed=seed,
                              max_minutes=max_minutes, compile=compile_forward,
                              eval_every=eval_every, save_every=save_every or eval_every, log_every=log_every),
            lr_prediction=lr_prediction, max_len=max_len, augment=augment,
            augment_cache_dir=str(augment_cache_dir) if augment_cache_dir else None, limit=limit, eval_limit=eval_limit,
            cache_teacher=not no_teacher_cache, device=device, resume=resume, overwrite=overwrite)
        console.print(f"student preset: {config.student_preset or 'default for the device'}; stages "
                      f"{', '.join(s.value for s in config.stage.stages())}")
        run_distill(config, console)



def distill_general(
    teacher: Teacher,
    out: RunDirOpt,
    corpus: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="UTF-8 text file, one text per line (default: the embedded "
                                                        "People's Daily + review corpus).")] = None,
    max_texts: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N texts.")] = None,
    student_preset: StudentPreset = None,
    student_init: StudentInit = None,
    student_tokenizer: StudentTokenizer = None,
    vocab_size: VocabSize = DEFAULT_VOCAB_SIZE,
    layer_map: LayerMapOption = "tinybert",
    attention_loss: AttentionLoss = AttentionLossKind.kl,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 1000,
    lr: Annotated[Optional[float], peak_lr_option(DEFAULT_LR)] = None,
    batch_size: DeviceBatchSizeOpt = None,
    grad_accum: GradAccum = 1,
    precision: PrecisionOpt = Precision.auto,
    max_len: MaxLenOpt = 128,
    save_every: Annotated[int, typer.Option(min=1, help="Steps between last.pt saves.")] = 200,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between metrics.jsonl lines.")] = 10,
    seed: SeedOpt = 42,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    max_minutes: MaxMinutesOpt = None,
    compile_forward: CompileOpt = False,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: ThreadsOpt = None,
) -> None:
    """General distillation on unlabelled text: a task-agnostic student to use as --student-init.

    Example: ernie-tiny distill-general --teacher runs/teacher/best --steps 2000 --out runs/general
    """
    console = Console()
    if threads is not None:
        torch.set_num_threads(threads)
    with training_command_errors(out):
        device = resolve_device(device)  # before anything is written: a missing GPU leaves no --out behind
        batch_size, lr = batch_and_lr(device, batch_size, lr, DEFAULT_LR)
        config = GeneralDistillConfig(
            teacher=str(teacher), out_dir=str(out), corpus=str(corpus) if corpus else None, max_texts=max_texts,
            student_preset=student_preset.value if student_preset else None,
            student_init=str(student_init) if student_init else None, student_tokenizer=student_tokenizer,
            subword_vocab_size=vocab_size, layer_map=layer_map, attention_loss=attention_loss, steps=steps,
            optim=OptimConfig(lr=lr, batch_size=batch_size, grad_accum=grad_accum, precision=precision, seed=seed,
                              max_minutes=max_minutes, compile=compile_forward,
                              save_every=save_every, log_every=log_every),
            max_len=max_len, device=device, resume=resume, overwrite=overwrite)
        run_general(config, console)

