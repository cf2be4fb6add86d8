"""Distillation stages on the one training loop (:func:`ernie_tiny.training.loop.train`).

    Session (DistillTeacher: model, items, cache; student + projection) -> run_stages([intermediate, prediction])
        each stage is one loop run with a fresh AdamW; its loss of a batch is
        teacher outputs (:mod:`ernie_tiny.distill.teacher`) -> DistillObjective(student forward + losses)

Stage ``intermediate`` runs the student with hidden states and attention scores and
trains it and the hidden-size projection on the layer-map losses; stage ``prediction``
trains it on the soft cross-entropy against the teacher's logits (+ hard labels); stage
``joint`` sums both objectives at every step. The same stages serve task distillation
(:mod:`ernie_tiny.distill.task`) and general distillation (:mod:`ernie_tiny.distill.general`):
only the items and the checkpoint written at the end differ.

Files in ``out_dir`` (rank 0 only): ``last.pt`` (resumable: weights, optimizer, RNG,
stage, step), ``intermediate/`` (student after stage 1), ``best/`` (best dev student,
with its tokenizer: ready for ``export`` and ``bench``), ``metrics.jsonl`` /
``metrics.csv`` / ``loss_curve.png`` and ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from torch import nn

from ernie_tiny.checkpoint import save_pretrained
from ernie_tiny.distill.config import Stage
from ernie_tiny.distill.data import DistillBatch, collate_distill
from ernie_tiny.distill.teacher import DistillTeacher
from ernie_tiny.distill.objective import DistillObjective
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.flops import pass_flops
from ernie_tiny.heads import HeadKind
from ernie_tiny.model import encoder_of
from ernie_tiny.training.data_order import BatchOrder, batch_for_step, bucketed_batch_for_step
from ernie_tiny.training.distributed import DistributedContext, barrier
from ernie_tiny.training.logging import MetricsLog
from ernie_tiny.training.loop import LAST_STATE, BestRecord, RunContext, TrainSpec, train
from ernie_tiny.training.schedule import OptimConfig
from ernie_tiny.training.state import TrainingState, plain

BEST_DIR = "best"
INTERMEDIATE_DIR = "intermediate"


@dataclass(frozen=True)
class StagePlan:
    stage: Stage
    steps: int
    lr: float


@dataclass(kw_only=True)
class Session:
    """Everything the stages need, built once per run by :func:`distill` or ``general.distill_general``."""

    ctx: DistributedContext
    console: Console
    out_dir: Path
    config: object  # the run's typed config (its ``optim`` block included): saved in last.pt and every checkpoint
    teacher: DistillTeacher
    student_tokenizer: Tokenizer  # saved with the student (the teacher's own for a char student)
    objective: DistillObjective
    evaluate_dev: Callable[[nn.Module], dict[str, float]] | None = None  # student -> dev metrics
    main_metric: str | None = None
    task_name: str | None = None
    labels: list[str] = field(default_factory=list)
    checkpoint_extra: dict = field(default_factory=dict)  # provenance written into every saved student

    @property
    def student(self) -> nn.Module:
        return self.objective.student

    @property
    def optim(self) -> OptimConfig:
        return self.config.optim

    def save_student(self, directory: Path, extra: dict) -> None:
        if self.ctx.is_main:
            save_pretrained(self.student, directory, self.student_tokenizer, self.task_name, self.labels,
                            extra={**self.checkpoint_extra, "distill_config": plain(self.config), **extra})


# ---- the stages --------------------------------------------------------------------------------------

@dataclass
class StagesOutcome:
    best: BestRecord  # of the stage that evaluates (prediction or joint); empty for intermediate-only runs
    train_seconds: float  # all stages, summed over resumed segments
    steps: dict[str, int]  # steps each stage ran (a time budget may fix fewer than planned), by stage name


def step_flops(session: Session) -> Callable[[DistillBatch], int]:
    """Training FLOPs of a batch: 3 student forwards (forward + backward), plus a teacher forward when no
    cache holds its outputs (with a cache the teacher runs once per chunk of items, not counted per step)."""
    student, teacher = session.student, session.teacher.model
    student_config, teacher_config = encoder_of(student).config, encoder_of(teacher).config
    student_head = getattr(student, "head_kind", HeadKind.encoder)
    teacher_head = getattr(teacher, "head_kind", HeadKind.encoder)
    student_labels, teacher_labels = getattr(student, "num_labels", 0), getattr(teacher, "num_labels", 0)

    def flops(batch: DistillBatch) -> int:
        total = 3 * pass_flops(student_config, student_head, student_labels, [tuple(batch.student.input_ids.shape)])
        if session.teacher.cache is None:
            total += pass_flops(teacher_config, teacher_head, teacher_labels, [tuple(batch.teacher.input_ids.shape)])
        return total

    return flops


def stage_spec(session: Session, plan: StagePlan, batch_order: BatchOrder = BatchOrder.shuffled) -> TrainSpec:
    """The loop's view of one stage: the student objective, its batches, its loss, its evaluation."""
    ctx, settings = session.ctx, session.optim
    teacher_pad, student_pad = session.teacher.tokenizer.pad_id, session.student_tokenizer.pad_id
    evaluates = session.evaluate_dev is not None and plan.stage.matches_logits
    items = session.teacher.items
    lengths = [len(item.teacher.input_ids) for item in items]

    def items_for_step(step: int) -> list:
        # A pure function of (seed, step, rank): a resumed run sees the same batches.
        if batch_order is BatchOrder.length_buckets:
            return bucketed_batch_for_step(items, lengths, step, settings.batch_size, settings.seed,
                                           ctx.rank, ctx.world_size)
        return batch_for_step(items, step, settings.batch_size, settings.seed, ctx.rank, ctx.world_size)

    def loss_fn(model: nn.Module, batch: DistillBatch):
        return model(batch, session.teacher.targets(batch, plan.stage), plan.stage)

    def save_best(model: nn.Module, step: int, dev: dict[str, float]) -> None:
        session.save_student(session.out_dir / BEST_DIR, {"step": step, "dev": dev})

    return TrainSpec(
        name=plan.stage.value, model=session.objective, steps=plan.steps,
        items_for_step=items_for_step, flops_of=step_flops(session),
        collate=lambda rows: collate_distill(rows, teacher_pad, student_pad),
        loss_fn=loss_fn, term_names=session.objective.term_names(plan.stage),
        evaluate=(lambda model: session.evaluate_dev(model.student)) if evaluates else None,
        main_metric=session.main_metric, save_best=save_best if evaluates else None,
        before_step=session.objective.start_step)  # (step, steps): the feature warm-up spans the steps run


def run_stages(session: Session, plans: list[StagePlan], saved: TrainingState | None,
               after_step: Callable[[int], None] | None = None,
               on_stage_end: Callable[[Stage, int], None] | None = None) -> StagesOutcome:
    """Run the stages in order, each a loop run with a fresh AdamW, continuing ``saved`` (``last.pt``) if given.

    ``saved`` comes from :func:`ernie_tiny.training.loop.start_run`, which checked its settings.

    ``on_stage_end(stage, steps run)`` runs after each stage (it writes checkpoints, so it runs again
    for a stage that had just ended when the run was interrupted); ``after_step(global_step)``
    runs after each step (tests raise from it to simulate a crash).
    """
    ctx = session.ctx
    state_path = session.out_dir / LAST_STATE
    first, seconds_before = 0, 0.0
    steps_run: dict[str, int] = {}  # stages already run (under --max-minutes a stage may run fewer steps)
    if saved is not None:
        first, seconds_before = saved.extra["stage_index"], saved.extra["seconds_before_stage"]
        steps_run = dict(saved.extra.get("stage_steps", {p.stage.value: p.steps for p in plans[:first]}))
        if ctx.is_main:
            session.console.print(f"resumed from {state_path}: stage {plans[first].stage.value}, "
                                  f"step {saved.step} of {plans[first].steps}")
    # length buckets on CUDA (less padding), shuffled on CPU; a resumed run keeps the order it started with
    batch_order = BatchOrder(saved.extra.get("batch_order", "shuffled")) if saved is not None \
        else BatchOrder.auto.resolve(ctx.device.type)
    offsets = [sum(p.steps for p in plans[:k]) for k in range(len(plans))]
    metrics = None
    if ctx.is_main:
        metrics = MetricsLog(session.out_dir, resume_step=offsets[first] + saved.step if saved else None)
    best = BestRecord()
    for index in range(first, len(plans)):
        plan = plans[index]
        run = RunContext(ctx, session.out_dir, session.config, session.console, metrics, step_offset=offsets[index],
                         extra={"stage": plan.stage.value, "stage_index": index,
                                "seconds_before_stage": seconds_before, "batch_order": batch_order.value,
                                "stage_steps": dict(steps_run)},
                         after_step=after_step)
        state = train(stage_spec(session, plan, batch_order), replace(session.optim, lr=plan.lr), run,
                      saved if index == first else None)
        seconds_before += state.train_seconds
        steps_run[plan.stage.value] = state.step
        if plan.stage.matches_logits:
            best = state.best
        barrier(ctx)
        if on_stage_end is not None:
            on_stage_end(plan.stage, state.step)
    if metrics is not None:
        metrics.write_csv()
    return StagesOutcome(best, seconds_before, steps_run)
