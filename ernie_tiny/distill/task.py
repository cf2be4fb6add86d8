"""Task distillation: build the session for ``config.task``, run its stages, score teacher and student.

    DistillConfig -> teacher (fine-tuned, frozen) + student (preset or --student-init) + items
                  -> ernie_tiny.distill.train.run_stages -> best/ -> dev/test metrics -> metrics.json

Every task of the registry distils: sentence and pair classification, ranking (nlpcc-dbqa:
MRR by query id and F1 on dev/test; augmentation changes the answer side only) and NER
(msra-ner: a char student, token-level soft targets, tag-keeping augmentation).

Example::

    from ernie_tiny.distill.config import DistillConfig
    from ernie_tiny.distill.task import distill
    result = distill(DistillConfig(teacher="runs/teacher/best", task="chnsenticorp",
                                   data_dir="../shared/data/chnsenticorp_htl", out_dir="runs/student", augment=2))
    result.retention["test"]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from ernie_tiny.checkpoint import LoadedCheckpoint, load_pretrained
from ernie_tiny.distill.config import DistillConfig, Stage
from ernie_tiny.distill.data import alignment_coverage, mean_tokens, training_items
from ernie_tiny.distill.teacher import DistillTeacher, teacher_cache
from ernie_tiny.training.distributed import DistributedContext, barrier, run_in_process_group
from ernie_tiny.distill.setup import load_teacher_with_tokenizer, setup_student
from ernie_tiny.training.loop import start_run
from ernie_tiny.distill.train import BEST_DIR, INTERMEDIATE_DIR, Session, StagePlan, run_stages
from ernie_tiny.tasks import TaskKind, TaskSpec, data_name, get_task, load_splits
from ernie_tiny.training.logging import format_losses, write_run_summary
from ernie_tiny.tasks.evaluation import SplitEvaluator
from ernie_tiny.training.state import plain

# Config fields a resumed run may change: they do not alter the trained weights.
RESUMABLE_CHANGES = frozenset({"resume", "overwrite", "out_dir", "device", "eval_batch_size", "optim.save_every",
                               "optim.log_every"})


# ---- task distillation: build the session, run both stages, score the result --------------------------

@dataclass
class DistillResult:
    out_dir: Path
    student_dir: Path  # best/ (or intermediate/ for a stage-1-only run)
    teacher: dict[str, dict[str, float]]  # split -> metrics
    student: dict[str, dict[str, float]]
    retention: dict[str, float]  # split -> 100 * student / teacher main metric
    train_seconds: float


def teacher_for_task(path: str, task: TaskSpec, device: torch.device) -> LoadedCheckpoint:
    """The fine-tuned teacher in eval mode without gradients; its head and labels must fit the task."""
    loaded = load_teacher_with_tokenizer(path)
    if loaded.meta.head is not task.head:
        raise ValueError(f"{path}: teacher head is {loaded.meta.head.value}, task {task.name} needs {task.head.value}: "
                         f"fine-tune it first (ernie-tiny teacher finetune --init {path} --task {task.name})")
    if loaded.meta.labels and list(loaded.meta.labels) != list(task.labels):
        raise ValueError(f"{path}: teacher labels {loaded.meta.labels} differ from task {task.name}'s {list(task.labels)}")
    loaded.model.to(device).eval().requires_grad_(False)
    return loaded


def distill(config: DistillConfig, console: Console | None = None,
            after_step: Callable[[int], None] | None = None) -> DistillResult:
    """Distil the teacher into the student on ``config.task``: stages, best checkpoint, metrics.json."""
    return run_in_process_group(config.device, console,
                                lambda ctx, console: distill_in_context(config, ctx, console, after_step))


def distill_in_context(config: DistillConfig, ctx: DistributedContext, console: Console,
                       after_step: Callable[[int], None] | None) -> DistillResult:
    wall_start = time.perf_counter()
    task = get_task(config.task)
    start = start_run(config, ctx, RESUMABLE_CHANGES)
    out_dir = start.out_dir
    teacher = teacher_for_task(config.teacher, task, ctx.device)
    setup = setup_student(config, teacher, task.head, task.num_labels, list(task.labels), ctx, console)
    student_tok, student_config, layer_map = setup.tokenizer, setup.student_config, setup.layer_map
    if task.kind is TaskKind.ner and student_tok.tokenizer.kind != "char":  # refused before the data is read
        raise ValueError(f"task {task.name} distils into a char student, one token per tagged char "
                         f"(--student-tokenizer char, or a --student-init with a char tokenizer); the student "
                         f"tokenizer here is {student_tok.tokenizer.kind} ({student_tok.source})")
    examples = load_splits(task, config.data_dir, config.limit, config.eval_limit)
    items, augmented = training_items(config, examples["train"], teacher.tokenizer, student_tok, ctx, console)
    cache = teacher_cache(config, teacher.config, layer_map, items)
    evaluator = SplitEvaluator(task, examples, config.max_len, config.eval_batch_size, ctx)
    presets = {"teacher": teacher.config.preset, "student": student_config.preset}
    console.print(f"teacher: {teacher.config.describe()} ({config.teacher})")
    console.print(f"student: {setup.note}; tokenizer: {student_tok.source}")
    console.print(f"examples of {data_name(task, config.data_dir)}: train {len(examples['train'])} + {augmented} "
                  "augmented, "
                  + ", ".join(f"{s} {len(examples[s])}" for s in examples if s != "train")
                  + f"; aligned student tokens {100 * alignment_coverage(items):.1f}%; teacher cache: "
                  + ("off" if cache is None else "logits + features" if cache.keep_features else "logits")
                  + f"; {ctx.world_size} process(es) on {ctx.device}")
    distill_teacher = DistillTeacher(
        model=teacher.model, tokenizer=teacher.tokenizer, items=items, cache=cache,
        amp=start.amp, device=ctx.device, chunk_size=config.optim.batch_size,
        student_pad_id=student_tok.tokenizer.pad_id, reads_attention=setup.objective.needs_attention,
        reads_logits=setup.objective.weights.soft != 0)
    session = Session(ctx=ctx, console=console, out_dir=out_dir, config=config, teacher=distill_teacher,
                      student_tokenizer=student_tok.tokenizer, objective=setup.objective,
                      evaluate_dev=lambda model: evaluator(model, student_tok.tokenizer, "dev"),
                      main_metric=task.main_metric, task_name=task.name, labels=list(task.labels),
                      checkpoint_extra={"teacher": config.teacher, "presets": presets})

    def on_stage_end(stage: Stage, steps: int) -> None:
        if stage is Stage.intermediate:
            session.save_student(out_dir / INTERMEDIATE_DIR, {"stage": stage.value})

    plans = [StagePlan(stage, config.stage_steps(stage), config.stage_lr(stage)) for stage in config.stage.stages()]
    state = run_stages(session, plans, start.resume, after_step, on_stage_end)
    barrier(ctx)
    student_dir = out_dir / (BEST_DIR if (out_dir / BEST_DIR).is_dir() else INTERMEDIATE_DIR)
    final = load_pretrained(student_dir).model.to(ctx.device)
    splits = [s for s in ("dev", "test") if s in examples]
    scores = {"teacher": {s: evaluator(teacher.model, teacher.tokenizer, s) for s in splits},
              "student": {s: evaluator(final, student_tok.tokenizer, s) for s in splits}}
    retention = {s: 100.0 * scores["student"][s][task.main_metric] / max(scores["teacher"][s][task.main_metric], 1e-12)
                 for s in splits}
    result = DistillResult(out_dir, student_dir, scores["teacher"], scores["student"], retention, state.train_seconds)
    if ctx.is_main:
        write_run_summary(out_dir, {
            "task": task.name, "main_metric": task.main_metric, "teacher": scores["teacher"],
            "student": scores["student"], "retention_pct": retention, "student_dir": str(student_dir),
            "best_step": state.best.step, "best_dev": state.best.dev,
            "steps": state.steps, "planned_steps": {p.stage.value: p.steps for p in plans}, "presets": presets,
            "student_tokenizer": student_tok.source, "examples": {**{s: len(v) for s, v in examples.items()},
                                                                  "augmented": augmented},
            "mean_train_tokens": mean_tokens(items[:len(examples["train"])]),
            "world_size": ctx.world_size, "device": str(ctx.device), "train_seconds": round(state.train_seconds, 1),
            "wall_seconds": round(time.perf_counter() - wall_start, 1), "config": plain(config)})
        console.print("teacher " + "; ".join(f"{s} {format_losses(m)}" for s, m in scores["teacher"].items()))
        console.print("student " + "; ".join(f"{s} {format_losses(m)}" for s, m in scores["student"].items())
                      + " | retention " + ", ".join(f"{s} {r:.1f}%" for s, r in retention.items())
                      + f" | {student_dir}")
    return result
