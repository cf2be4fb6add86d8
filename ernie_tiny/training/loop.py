"""The one training loop every trainer runs on: fine-tuning, pretraining and each distillation stage.

A trainer gives the loop a :class:`TrainSpec`: the model, a function batch -> :class:`StepLoss`
(total and named terms), the data order (the examples of step ``s``, a pure function of
``s`` and the rank) and an evaluation function. The loop owns everything else::

    for step in range(start, steps):
        lr = get_lr(step)                                   # warmup, then linear decay to 0
        for micro in split(items_for_step(step), grad_accum):
            with no_sync (all but the last micro-batch), autocast:
                loss = loss_fn(model, collate(micro))        # DDP averages the gradients over ranks
            backward(loss / grad_accum)                      # through the fp16 scaler when there is one
        unscale -> clip -> NaN/inf guard -> optimizer step
        log (terms averaged over ranks) / evaluate, keep best / save last.pt

Resuming: ``last.pt`` holds weights, AdamW moments, the fp16 scaler, every RNG, the log
window and the best-dev record, and the data order is a function of the step, so a
resumed run takes exactly the steps the uninterrupted one would have.

Cost: the loop never makes the host wait for the GPU within a step. Loss terms are summed on
the device and read at log lines; the NaN/inf guard records the first bad step on the
device and is read at log lines, evaluations and saves (:mod:`ernie_tiny.training.guard`
says what that costs); the progress bar is redrawn at most ``PROGRESS_HZ`` times a second
with the last log line's losses. On CUDA the optimizer is fused AdamW and the batches come
from DataLoader workers through pinned memory (:mod:`ernie_tiny.training.feed`);
``optim.compile`` compiles the training forward. Each log line says the examples/s, the
share of the time spent waiting for batches (``data_wait``) and, when the trainer can count
them, the achieved TFLOP/s. ``benchmarks/loop_overhead.py`` measures the overhead against
a bare forward/backward/step loop on the same batches, ``benchmarks/train_speed.py`` the
speed of each trainer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from ernie_tiny.training.budget import StepBudget
from ernie_tiny.training.distributed import DistributedContext, all_reduce_sum, wrap_ddp
from ernie_tiny.training.feed import StepBatches, split_micro_batches, to_device
from ernie_tiny.training.guard import FiniteGuard
from ernie_tiny.training.logging import MetricsLog, format_losses, make_progress
from ernie_tiny.training.precision import Amp
from ernie_tiny.training.schedule import OptimConfig, build_optimizer, get_lr, set_seed
from ernie_tiny.training.state import (TrainingState, apply_training_state, plain, read_training_state,
                                       save_training_state)

LAST_STATE = "last.pt"
PROGRESS_HZ = 4  # progress bar redraws per second
DEFAULT_CUDA_WORKERS = 2  # batch-building processes on CUDA when the trainer does not choose
ALWAYS_RESUMABLE = frozenset({"optim.compile"})  # fields any resumed run may change: same weights either way
__all__ = ["split_micro_batches", "to_device"]  # re-exported: the loop's feed lives in training/feed.py


@dataclass
class StepLoss:
    total: torch.Tensor  # scalar, weighted sum of the terms
    terms: dict[str, torch.Tensor]  # unweighted, detached


@dataclass
class BestRecord:
    """The best dev result so far (ties keep the earlier step)."""

    metric: float | None = None
    step: int = 0
    dev: dict[str, float] = field(default_factory=dict)

    def beaten_by(self, metric: float) -> bool:
        return self.metric is None or metric > self.metric


@dataclass
class LoopState:
    """What the loop carries across a resume (saved in last.pt's ``extra["loop"]``)."""

    step: int = 0  # steps done in this loop (a distillation stage counts its own)
    best: BestRecord = field(default_factory=BestRecord)
    train_seconds: float = 0.0  # summed over resumed segments
    window_sums: dict[str, float] = field(default_factory=dict)  # loss sums since the last log line
    window_counts: dict[str, int] = field(default_factory=dict)
    planned_steps: int | None = None  # the step count a time budget fixed (budget.py); None: spec.steps

    @classmethod
    def from_dict(cls, values: dict) -> "LoopState":
        return cls(values["step"], BestRecord(**values["best"]), values["train_seconds"],
                   dict(values["window_sums"]), dict(values["window_counts"]), values.get("planned_steps"))


@dataclass
class TrainSpec:
    """What a trainer gives the loop."""

    name: str  # progress label, e.g. "fine-tune reviews" or "joint"
    model: nn.Module  # the trained module (wrapped in DDP by the loop)
    steps: int  # optimizer steps of this loop
    items_for_step: Callable[[int], Sequence]  # this rank's examples of 0-based step s: a pure function of s
    collate: Callable[[Sequence], Any]  # examples -> batch on the CPU (pure: it may run in a data worker)
    loss_fn: Callable[[nn.Module, Any], StepLoss]  # (model, batch) -> loss and terms; runs inside DDP's forward
    term_names: Sequence[str] = ()  # the terms loss_fn can return, in a fixed order (every rank reduces all)
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None  # unwrapped model -> dev metrics; every rank
    main_metric: str | None = None  # the dev metric that picks the best checkpoint
    save_best: Callable[[nn.Module, int, dict[str, float]], None] | None = None  # rank 0: model, global step, dev
    data_workers: int | None = None  # processes building the next steps' batches (0: inline; None: 2 on CUDA, else 0)
    before_step: Callable[[int, int], None] | None = None  # (0-based step, the run's steps) before its forward
    flops_of: Callable[[Any], int] | None = None  # training FLOPs of one collated micro-batch, from its shapes


@dataclass
class RunContext:
    """Where the loop runs and what it writes."""

    ctx: DistributedContext
    out_dir: Path
    config: object  # the run's typed config: saved in last.pt (resume checks it)
    console: Console  # the progress bar and one-line messages (quiet on ranks > 0)
    metrics: MetricsLog | None  # rank 0 only
    step_offset: int = 0  # global step of this loop's step 0 (later distillation stages)
    extra: dict = field(default_factory=dict)  # the trainer's own resumable fields (e.g. the stage)
    after_step: Callable[[int], None] | None = None  # called with the global step (tests crash runs from it)
    clock: Callable[[], float] = time.perf_counter  # seconds (tests give a fake one to time-budget runs)


class LossModule(nn.Module):
    """The model and the trainer's loss function as one module whose forward returns only the StepLoss.

    DDP looks for the parameters a step used in what forward returns: a model output that
    also carries, say, the pooled output of an unused pooler would make DDP wait forever for
    its gradients. Returning the loss (and detached terms) alone marks exactly the used ones.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], StepLoss]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> StepLoss:
        return self.loss_fn(self.model, batch)


def train(spec: TrainSpec, optim: OptimConfig, run: RunContext, resume: TrainingState | None = None) -> LoopState:
    """Run ``spec.steps`` optimizer steps of ``spec`` (from ``resume``'s step when given); return the final state.

    With ``optim.max_minutes`` the run's length is fixed after its first steps (see
    :mod:`ernie_tiny.training.budget`) and saved, so a resumed run ends where the plan said.
    """
    ctx, console = run.ctx, run.console
    model = spec.model.to(ctx.device)
    on_cuda = ctx.device.type == "cuda"
    optimizer = build_optimizer(model, optim.lr, optim.weight_decay, fused=on_cuda)
    amp = Amp.resolve(optim.precision, ctx.device)
    scaler = amp.scaler()
    state = LoopState()
    if resume is not None:
        apply_training_state(resume, model, optimizer, run.out_dir / LAST_STATE)  # restores the RNGs too
        state = LoopState.from_dict(resume.extra["loop"])
        if scaler.is_enabled() and resume.extra.get("scaler"):
            scaler.load_state_dict(resume.extra["scaler"])
    else:
        set_seed(optim.seed)  # dropout masks follow from the seed, as they do after a resume
    forward = LossModule(model, spec.loss_fn)
    if optim.compile:
        forward = torch.compile(forward)  # the parameters stay model's: checkpoints keep their plain names
    wrapped = wrap_ddp(forward, ctx)
    names = ["loss"] + [f"loss_{name}" for name in spec.term_names]
    clock = run.clock if not on_cuda else lambda: (torch.cuda.synchronize(ctx.device), run.clock())[1]
    budget = StepBudget(spec.steps, optim.max_minutes, state.planned_steps, clock)
    guard = FiniteGuard(ctx.device)
    window = Window(run.clock())
    segment_start, last_redraw = run.clock(), 0.0
    model.train()
    workers = spec.data_workers if spec.data_workers is not None else (DEFAULT_CUDA_WORKERS if on_cuda else 0)
    feed = StepBatches(spec.items_for_step, spec.collate, spec.steps, optim.grad_accum).iterate(
        state.step, workers, pin=on_cuda)
    shown_losses = ""
    with make_progress(console, disable=not ctx.is_main) as progress:
        bar = progress.add_task(spec.name, total=budget.steps, completed=state.step, speed="", losses="")
        step = state.step
        while step < budget.steps:
            steps = budget.steps
            waited = run.clock()
            item = next(feed)
            window.data_wait += run.clock() - waited
            lr = get_lr(step, steps, optim.lr, optim.warmup_steps(steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            if spec.before_step is not None:
                spec.before_step(step, steps)  # steps: the planned count once a time budget fixed it
            step_terms: dict[str, torch.Tensor] = {}
            optimizer.zero_grad(set_to_none=True)  # before, not after: the model may arrive with gradients
            for index, (size, batch) in enumerate(item.micro_batches):
                last = index == len(item.micro_batches) - 1
                if spec.flops_of is not None:
                    window.flops += spec.flops_of(batch)  # from the shapes on the host: no sync
                # DDP all-reduces gradients on the last micro-batch only.
                sync = nullcontext() if last or not ctx.is_distributed else wrapped.no_sync()
                with sync:
                    with amp.autocast():
                        loss = wrapped(to_device(batch, ctx.device))
                    share = size / item.examples  # each micro-batch's mean loss, weighted by its examples
                    scaler.scale(loss.total if share == 1 else loss.total * share).backward()
                for name, value in (("loss", loss.total.detach()), *((f"loss_{k}", v) for k, v in loss.terms.items())):
                    step_terms[name] = value if share == 1 else step_terms.get(name, 0.0) + value * share
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip or math.inf)
            # With fp16 an inf gradient is the scaler's business (it skips the step); a NaN loss never is.
            guard.watch(step, lr, step_terms["loss"], grad_norm, loss_only=scaler.is_enabled())
            scaler.step(optimizer)
            scaler.update()
            done = step + 1
            state.step = done
            for name, value in step_terms.items():  # device tensors: summed there, read at the log line
                state.window_sums[name] = state.window_sums.get(name, 0.0) + value
                state.window_counts[name] = state.window_counts.get(name, 0) + 1
            window.examples += item.examples * ctx.world_size
            if budget.after_step(done, lambda: state.train_seconds + run.clock() - segment_start,
                                 agree=lambda seconds: all_reduce_sum([seconds], ctx)[0] / ctx.world_size):
                state.planned_steps = budget.planned
                progress.update(bar, total=budget.planned)
                if ctx.is_main:
                    console.print(f"{spec.name}: {optim.max_minutes:g} min budget -> {budget.planned} steps")
            steps = budget.steps
            global_step = run.step_offset + done
            log_now = done % optim.log_every == 0 or done == steps
            evaluate_now = spec.evaluate is not None and (done % optim.eval_every == 0 or done == steps)
            save_now = done % optim.save_every == 0 or done == steps
            if log_now or evaluate_now or save_now:
                guard.check(spec.name)  # nothing computed on non-finite weights is logged or kept
            now = run.clock()
            if log_now:
                means = window_means(state, names, ctx)
                shown_losses = format_losses({k.removeprefix("loss_"): v for k, v in means.items()})
                elapsed = max(now - window.start, 1e-9)
                if run.metrics is not None:
                    extra = {"tflops": window.flops / elapsed / 1e12} if spec.flops_of is not None else {}
                    run.metrics.log(global_step, "train", **log_fields(run), lr=lr, grad_norm=float(grad_norm),
                                    examples_per_s=window.examples / elapsed, data_wait=window.data_wait / elapsed,
                                    **extra, **means)
                state.window_sums, state.window_counts = {}, {}
            if log_now or now - last_redraw > 1 / PROGRESS_HZ:  # losses of the last log line: no sync here
                progress.update(bar, completed=done, losses=shown_losses,
                                speed=f"{window.examples / max(now - window.start, 1e-9):.0f} ex/s")
                last_redraw = now
            if log_now:
                window = Window(run.clock())
            if evaluate_now:
                evaluate_and_keep_best(spec, model, global_step, state, run)
                model.train()
            if save_now:
                state.train_seconds += run.clock() - segment_start
                segment_start = run.clock()
                if ctx.is_main:
                    save_training_state(run.out_dir / LAST_STATE, model, optimizer, done, config=run.config,
                                        extra={**run.extra, "loop": plain(state), "scaler": scaler.state_dict()})
            if run.after_step is not None:
                run.after_step(global_step)
            step = done
        progress.update(bar, completed=budget.steps)
    del feed  # stops the loader's workers
    state.train_seconds += run.clock() - segment_start
    return state


@dataclass
class Window:
    """What the loop counts between two log lines (host values only)."""

    start: float  # clock at the window's start
    examples: int = 0  # over every process
    flops: int = 0  # this process's training FLOPs (spec.flops_of), for the TFLOP/s column
    data_wait: float = 0.0  # seconds spent waiting for the next step's batches


def log_fields(run: RunContext) -> dict:
    """Scalar fields of the trainer's extra state that belong on every train line (e.g. the stage)."""
    return {k: v for k, v in run.extra.items() if isinstance(v, str)}


def window_means(state: LoopState, names: Sequence[str], ctx: DistributedContext) -> dict[str, float]:
    """Each loss term averaged over the steps since the last log line and over every process.

    Every rank reduces the same fixed list of names, even when a term was absent from its
    batches (a batch of only augmented rows has no hard-label term): sums and counts are
    reduced, not means.
    """
    sums = [float(state.window_sums.get(n, 0.0)) for n in names]
    counts = [float(state.window_counts.get(n, 0)) for n in names]
    reduced = all_reduce_sum(sums + counts, ctx)
    return {n: s / c for n, s, c in zip(names, reduced[:len(names)], reduced[len(names):]) if c > 0}


def evaluate_and_keep_best(spec: TrainSpec, model: nn.Module, global_step: int, state: LoopState,
                           run: RunContext) -> None:
    """Dev metrics (every rank takes part); rank 0 writes the best checkpoint when strictly better."""
    dev = spec.evaluate(model)
    if run.metrics is not None:
        run.metrics.log(global_step, "dev", **dev)
        run.metrics.write_csv()
    if run.ctx.is_main:
        run.console.print(f"step {global_step}: dev " + format_losses(dev))
    metric = dev[spec.main_metric]
    if state.best.beaten_by(metric):
        state.best = BestRecord(metric, global_step, dev)
        if run.ctx.is_main and spec.save_best is not None:
            spec.save_best(model, global_step, dev)


@dataclass(frozen=True)
class RunStart:
    """What every trainer knows before its first expensive step."""

    out_dir: Path
    resume: TrainingState | None  # the saved state to continue from; None for a new run
    amp: Amp  # the precision this device runs (an impossible one is refused here)


def start_run(config: Any, ctx: DistributedContext, resumable_changes: frozenset[str]) -> RunStart:
    """Open ``config.out_dir`` for a trainer (``config`` has ``out_dir``, ``resume``, ``overwrite``, ``optim``).

    Every trainer starts here, before any expensive set-up: a run in a folder that holds one is
    refused unless resumed or overwritten, a resumed run must have the same settings, and the
    precision must be possible on this device.
    """
    out_dir = Path(config.out_dir)
    resume = open_run(out_dir, config, config.resume, config.overwrite, resumable_changes)
    return RunStart(out_dir, resume, Amp.resolve(config.optim.precision, ctx.device))


def open_run(out_dir: Path, config: object, resume: bool, overwrite: bool,
             resumable_changes: frozenset[str]) -> TrainingState | None:
    """The saved state to resume from, or None for a new run; refuses to overwrite a run by accident.

    Checked before any expensive set-up: a new run in a folder with ``last.pt`` needs
    ``overwrite``, and a resumed one must have been started with the same settings.
    """
    state_path = Path(out_dir) / LAST_STATE
    if not resume and not overwrite and state_path.exists():
        raise ValueError(f"{state_path} exists: add --resume to continue that run, --overwrite to start over, "
                         "or choose a new --out")
    if not resume:
        return None
    saved = read_training_state(state_path)
    check_resumable(saved.config, plain(config), resumable_changes, state_path)
    return saved


def changed_fields(saved: dict, current: dict, allowed: frozenset[str], prefix: str = "") -> list[str]:
    """Names of the config fields whose values differ, nested blocks field by field (``optim.lr``)."""
    changed = []
    for key in sorted(set(current) | set(saved)):
        name = f"{prefix}{key}"
        if name in allowed:
            continue
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += changed_fields(old, new, allowed, prefix=f"{name}.")
        elif old != new:
            changed.append(name)
    return changed


def check_resumable(saved: dict, current: dict, allowed: frozenset[str], path: Path) -> None:
    """Refuse to resume a run whose saved config differs in anything that changes the weights.

    ``allowed`` names the fields a resumed run may change (``optim.log_every`` for nested ones).
    """
    changed = changed_fields(saved, current, allowed | ALWAYS_RESUMABLE)
    if changed:
        raise ValueError(f"{path}: cannot resume: the run was started with different {', '.join(changed)} "
                         "(use the same options, or a new --out)")
