"""The distillation loop: one visible function that runs any stage (TinyBERT's two, or joint).

    Session (teacher, student + projection, items, cache) -> run_stages([intermediate, prediction])
        each step: lr schedule -> batch -> teacher outputs (cached or inference_mode)
                   -> student forward + losses -> backward -> clip -> step -> log / eval / checkpoint

Stage ``intermediate`` runs the student with hidden states and attention scores and
trains it and the hidden-size projection on the layer-map losses; stage ``prediction``
trains it on the soft cross-entropy against the teacher's logits (+ hard labels); stage
``joint`` sums both objectives at every step. The same loop serves task distillation
(:mod:`ernie_tiny.distill.task`, which builds the session, runs the stages and scores
teacher and student on dev/test) and general distillation (:mod:`ernie_tiny.distill.general`):
only the items and the checkpoint written at the end differ.

Files in ``out_dir`` (rank 0 only): ``last.pt`` (resumable: weights, optimizer, RNG,
stage, step), ``intermediate/`` (student after stage 1), ``best/`` (best dev student,
with its tokenizer: ready for ``export`` and ``bench``), ``metrics.jsonl`` /
``metrics.csv`` / ``loss_curve.png`` and ``metrics.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from ernie_tiny.checkpoint import save_pretrained
from ernie_tiny.distill.config import Stage
from ernie_tiny.distill.data import (
    DistillBatch,
    DistillItem,
    TeacherCache,
    TeacherTargets,
    collate_distill,
)
from ernie_tiny.distill.objective import DistillObjective
from ernie_tiny.model import ModelOutput
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.training.data_order import batch_for_step
from ernie_tiny.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    unwrap,
    wrap_ddp,
)
from ernie_tiny.training.logging import MetricsLog, format_losses, make_progress
from ernie_tiny.training.schedule import build_optimizer, get_lr, set_seed
from ernie_tiny.training.state import (
    TrainingDivergedError,
    load_training_state,
    plain,
    save_training_state,
)

LAST_STATE = "last.pt"
BEST_DIR = "best"
INTERMEDIATE_DIR = "intermediate"


class LossWindow:
    """Sums and counts of each loss term since the last log line; :meth:`means` averages over all processes."""

    def __init__(self, names: list[str]):
        self.sums = dict.fromkeys(names, 0.0)
        self.counts = dict.fromkeys(names, 0)

    def add(self, terms: dict[str, float]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self, ctx: DistributedContext) -> dict[str, float]:
        names = list(self.sums)
        reduced = all_reduce_sum([self.sums[n] for n in names] + [float(self.counts[n]) for n in names], ctx)
        sums, counts = reduced[:len(names)], reduced[len(names):]
        return {n: s / c for n, s, c in zip(names, sums, counts) if c > 0}


@dataclass(frozen=True)
class Amp:
    """Mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler); full precision on CPU."""

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def for_device(cls, device: torch.device) -> "Amp":
        if device.type != "cuda":
            return cls(device, None)
        return cls(device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    def autocast(self):
        return torch.autocast(device_type="cuda", dtype=self.dtype) if self.dtype is not None else nullcontext()

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.dtype is torch.float16)


@dataclass(frozen=True)
class StagePlan:
    stage: Stage
    steps: int
    lr: float


@dataclass(frozen=True)
class LoopSettings:
    batch_size: int  # per process
    warmup_ratio: float
    weight_decay: float
    grad_clip: float  # 0: no clipping
    seed: int
    save_every: int
    log_every: int
    eval_every: int | None  # None: no dev evaluation (general distillation)
    resumable_changes: frozenset[str] = frozenset()  # config fields a resumed run may change


@dataclass
class Session:
    """Everything the loop needs, built once per run by :func:`distill` or ``general.distill_general``."""

    ctx: DistributedContext
    console: Console
    out_dir: Path
    settings: LoopSettings
    config: object  # the run's typed config: saved in last.pt and in every checkpoint
    teacher: nn.Module  # eval mode, no gradients
    teacher_tokenizer: Tokenizer
    student_tokenizer: Tokenizer  # saved with the student (the teacher's own for a char student)
    objective: DistillObjective
    items: list[DistillItem]
    cache: TeacherCache | None
    amp: Amp
    evaluate_dev: Callable[[nn.Module], dict[str, float]] | None = None  # student -> dev metrics
    main_metric: str | None = None
    task_name: str | None = None
    labels: list[str] = field(default_factory=list)
    checkpoint_extra: dict = field(default_factory=dict)  # provenance written into every saved student

    @property
    def student(self) -> nn.Module:
        return self.objective.student

    def save_student(self, directory: Path, extra: dict) -> None:
        if self.ctx.is_main:
            save_pretrained(self.student, directory, self.student_tokenizer, self.task_name, self.labels,
                            extra={**self.checkpoint_extra, "distill_config": plain(self.config), **extra})


# ---- teacher outputs ---------------------------------------------------------------------------------

def teacher_targets(session: Session, batch: DistillBatch, stage: Stage) -> TeacherTargets | None:
    """The teacher's outputs for a batch: from the cache, or one inference-mode forward pass (then cached)."""
    need_features = stage.matches_features
    if not need_features and session.objective.weights.soft == 0:  # labels-only: no teacher at all
        return None
    if session.cache is not None:
        lengths = batch.teacher.attention_mask.sum(dim=1).tolist()
        width = batch.teacher.input_ids.shape[1]
        hit = session.cache.lookup(batch.indices, lengths, width, need_features)
        if hit is not None:
            return hit.to(session.ctx.device)
    inputs = batch.teacher
    with torch.inference_mode(), session.amp.autocast():
        kwargs = dict(output_hidden_states=need_features,
                      output_attention_scores=need_features and session.objective.needs_attention)
        out = session.teacher(inputs.input_ids, inputs.token_type_ids, inputs.attention_mask, **kwargs)
    if isinstance(out, ModelOutput):
        targets = TeacherTargets(out.logits, out.encoder)
    else:
        targets = TeacherTargets(None, out)
    if session.cache is not None and targets.logits is not None:
        session.cache.store(batch.indices, lengths, targets)
    return targets


# ---- the loop ----------------------------------------------------------------------------------------

@dataclass
class RunState:
    """What survives a stage change and a resume (saved in last.pt's ``extra``)."""

    stage_index: int = 0
    step: int = 0  # steps done in the current stage
    best: dict = field(default_factory=lambda: {"metric": None, "step": 0, "dev": {}})
    train_seconds: float = 0.0


def train_stage(session: Session, plan: StagePlan, step_offset: int, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, model: nn.Module, state: RunState, log: MetricsLog | None,
                after_step: Callable[[int], None] | None = None) -> None:
    """Run ``plan.steps`` optimizer steps of one stage from ``state.step``: forward, loss, backward, clip, step, log."""
    ctx, settings, console = session.ctx, session.settings, session.console
    warmup = int(settings.warmup_ratio * plan.steps)
    teacher_pad, student_pad = session.teacher_tokenizer.pad_id, session.student_tokenizer.pad_id
    # Term names are fixed per stage: every rank all-reduces the same list even when a batch lacks
    # a term (hard_ce on a batch of only augmented rows), so sums and counts are reduced, not means.
    names = ["loss"] + [f"loss_{name}" for name in unwrap(model).term_names(plan.stage)]
    window = LossWindow(names)
    window_examples, window_start = 0, time.perf_counter()
    segment_start = time.perf_counter()
    model.train()
    with make_progress(console, disable=not ctx.is_main) as progress:
        bar = progress.add_task(f"{plan.stage.value}", total=plan.steps, completed=state.step, speed="", losses="")
        for step in range(state.step, plan.steps):
            lr = get_lr(step, plan.steps, plan.lr, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # A pure function of (seed, step, rank): a resumed run sees the same batches.
            rows = batch_for_step(session.items, step, settings.batch_size, settings.seed, ctx.rank, ctx.world_size)
            batch = collate_distill(rows, teacher_pad, student_pad).to(ctx.device)
            teacher = teacher_targets(session, batch, plan.stage)
            with session.amp.autocast():
                loss = model(batch, teacher, plan.stage)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss.total).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip or math.inf)
            # With fp16 an inf gradient is the scaler's business (it skips the step); NaN loss never is.
            if not torch.isfinite(loss.total) or (not scaler.is_enabled() and not torch.isfinite(grad_norm)):
                raise TrainingDivergedError(f"{plan.stage.value} step {step + 1}: loss {loss.total.item()}, gradient "
                                            f"norm {grad_norm.item()} at lr {lr:.2e}; lower --lr or check the data")
            scaler.step(optimizer)
            scaler.update()
            done = step + 1
            state.step = done
            terms = {"loss": loss.total.item(), **{f"loss_{k}": v.item() for k, v in loss.terms.items()}}
            window.add(terms)
            window_examples += len(rows) * ctx.world_size
            speed = window_examples / max(time.perf_counter() - window_start, 1e-9)
            progress.update(bar, advance=1, speed=f"{speed:.0f} ex/s",
                            losses=format_losses({k.removeprefix("loss_"): v for k, v in terms.items()}))
            global_step = step_offset + done
            if done % settings.log_every == 0 or done == plan.steps:
                means = window.means(ctx)
                if log is not None:
                    log.log(global_step, "train", stage=plan.stage.value, lr=lr, grad_norm=grad_norm.item(),
                            examples_per_s=speed, **means)
                window, window_examples, window_start = LossWindow(names), 0, time.perf_counter()
            evaluate_now = session.evaluate_dev is not None and plan.stage.matches_logits and (
                done % settings.eval_every == 0 or done == plan.steps)
            if evaluate_now:
                evaluate_and_keep_best(session, global_step, state, log)
                model.train()
            if done % settings.save_every == 0 or done == plan.steps:
                state.train_seconds += time.perf_counter() - segment_start
                segment_start = time.perf_counter()
                if ctx.is_main:
                    save_training_state(session.out_dir / LAST_STATE, unwrap(model), optimizer, done,
                                        extra={"run": plain(state), "stage": plan.stage.value,
                                               "scaler": scaler.state_dict()},
                                        config=session.config)
            if after_step is not None:
                after_step(global_step)
    state.train_seconds += time.perf_counter() - segment_start


def evaluate_and_keep_best(session: Session, global_step: int, state: RunState, log: MetricsLog | None) -> None:
    """Dev metrics of the student (every rank takes part); rank 0 saves it to best/ when strictly better."""
    dev = session.evaluate_dev(session.student)
    if log is not None:
        log.log(global_step, "dev", **dev)
        log.write_csv()
    if session.ctx.is_main:
        session.console.print(f"step {global_step}: dev " + format_losses(dev))
    metric = dev[session.main_metric]
    if state.best["metric"] is None or metric > state.best["metric"]:  # ties keep the earlier step
        state.best = {"metric": metric, "step": global_step, "dev": dev}
        session.save_student(session.out_dir / BEST_DIR, {"step": global_step, "dev": dev})


def check_resumable(saved: dict, current: dict, allowed: frozenset[str], path: Path) -> None:
    """Refuse to resume a run whose saved config differs in anything that changes the weights."""
    changed = sorted(k for k in current if k not in allowed and saved.get(k) != current[k])
    if changed:
        raise ValueError(f"{path}: cannot resume: the run was started with different {', '.join(changed)} "
                         "(use the same options, or a new --out)")


def run_stages(session: Session, plans: list[StagePlan], resume: bool,
               after_step: Callable[[int], None] | None = None,
               on_stage_end: Callable[[Stage], None] | None = None) -> RunState:
    """Run the stages in order, each with a fresh AdamW, resuming from ``last.pt`` when asked.

    ``on_stage_end(stage)`` runs after each stage (it writes checkpoints, so it runs again
    for a stage that had just ended when the run was interrupted); ``after_step(global_step)``
    runs after each step (tests raise from it to simulate a crash).
    """
    ctx, settings = session.ctx, session.settings
    state_path = session.out_dir / LAST_STATE
    objective = session.objective.to(ctx.device)
    optimizer = build_optimizer(objective, plans[0].lr, settings.weight_decay)
    scaler = session.amp.scaler()
    state = RunState()
    if resume:
        saved = load_training_state(state_path, objective, optimizer)  # restores every RNG too
        check_resumable(saved.config, plain(session.config), settings.resumable_changes, state_path)
        run = saved.extra["run"]
        state = RunState(run["stage_index"], run["step"], run["best"], run["train_seconds"])
        if scaler.is_enabled() and saved.extra.get("scaler"):
            scaler.load_state_dict(saved.extra["scaler"])
        if ctx.is_main:
            session.console.print(f"resumed from {state_path}: stage {plans[state.stage_index].stage.value}, "
                                  f"step {state.step} of {plans[state.stage_index].steps}")
    else:
        set_seed(settings.seed)  # dropout masks follow from the seed, as they do after a resume
    offsets = [sum(p.steps for p in plans[:k]) for k in range(len(plans))]
    log = None
    if ctx.is_main:
        log = MetricsLog(session.out_dir, resume_step=offsets[state.stage_index] + state.step if resume else None)
    model = wrap_ddp(objective, ctx)
    first = state.stage_index
    for index in range(first, len(plans)):
        plan = plans[index]
        if index > first:
            state.stage_index, state.step = index, 0
            optimizer = build_optimizer(objective, plan.lr, settings.weight_decay)
            scaler = session.amp.scaler()
        if state.step < plan.steps:
            train_stage(session, plan, offsets[index], optimizer, scaler, model, state, log, after_step)
        barrier(ctx)
        if on_stage_end is not None:
            on_stage_end(plan.stage)
    if log is not None:
        log.write_csv()
    return state
