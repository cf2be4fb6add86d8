"""What the one training loop costs on top of a bare forward/backward/step loop, on the same batches.

Both loops train the same micro char student with the joint distillation objective
(hidden-state, attention and soft cross-entropy terms), from the same initial weights,
on the same pre-collated batches with the same pre-computed teacher outputs, so the only
difference is the loop: ours adds the schedule, the NaN/inf guard, loss terms averaged
for the log, metrics.jsonl, the progress bar, the periodic checks for evaluation and
last.pt. The bare loop is what TextBrewer's and nanoGPT's loops do per step: set lr,
forward, zero_grad, backward, clip, step.

Runs alternate (bare, ours, bare, ours, ...) so that a change of machine load hits both;
the overhead is the median over pairs of (ours / bare - 1), timed from the end of step
``--warmup`` to the end of step ``steps - 1`` (the last step of our loop writes last.pt,
which a bare loop does not do). Both loops must end with the same weights: the script
checks it and prints the largest difference.

    python benchmarks/loop_overhead.py --steps 60 --repeats 7 --threads 1 --out runs/loop-overhead
"""

from __future__ import annotations

import argparse
import copy
import io
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from ernie_tiny.tasks import load_split
from ernie_tiny.distill.config import Stage
from ernie_tiny.distill.data import build_items, collate_distill
from ernie_tiny.distill.teacher import TeacherTargets
from ernie_tiny.distill.layer_map import parse_layer_map
from ernie_tiny.distill.losses import AttentionLossKind, DistillLossWeights
from ernie_tiny.distill.objective import DistillObjective
from ernie_tiny.distill.projection import HiddenProjection
from ernie_tiny.io_utils import atomic_write_json, atomic_write_text
from ernie_tiny.model import ErnieConfig, ModelOutput, build_model
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.training.data_order import batch_for_step
from ernie_tiny.training.distributed import DistributedContext
from ernie_tiny.training.logging import MetricsLog
from ernie_tiny.training.loop import RunContext, StepLoss, TrainSpec, train
from ernie_tiny.training.schedule import OptimConfig, build_optimizer, get_lr, set_seed

STAGE = Stage.joint


def prepare(args: argparse.Namespace):
    """Objective at its initial weights, and (batch, teacher targets) for every step."""
    examples = load_split("reviews", None, "train")[:args.examples]
    tokenizer = CharTokenizer.from_texts([e.text_a for e in examples])
    set_seed(0)
    teacher = build_model(ErnieConfig.from_preset(args.teacher_preset, vocab_size=tokenizer.vocab_size),
                          "sequence_classification", 2).eval().requires_grad_(False)
    student = build_model(ErnieConfig.from_preset(args.student_preset, vocab_size=tokenizer.vocab_size),
                          "sequence_classification", 2)
    # the default map: TinyBERT's uniform one, student layer i learns teacher layer i * T / S
    layer_map = parse_layer_map("tinybert", teacher.ernie.config.num_layers, student.ernie.config.num_layers)
    projection = HiddenProjection.for_layer_map(student.ernie.config.hidden_size, teacher.ernie.config.hidden_size,
                                                layer_map)
    objective = DistillObjective(student, projection, layer_map, DistillLossWeights(hard=0.5), AttentionLossKind.kl)
    items = build_items([(e.text_a, None) for e in examples], [e.label for e in examples], tokenizer, None,
                        args.max_len)
    steps = []
    for step in range(args.steps):
        batch = collate_distill(batch_for_step(items, step, args.batch_size, seed=0), tokenizer.pad_id,
                                tokenizer.pad_id)
        with torch.inference_mode():
            out = teacher(batch.teacher.input_ids, batch.teacher.token_type_ids, batch.teacher.attention_mask,
                          output_hidden_states=True, output_attention_scores=objective.needs_attention)
        assert isinstance(out, ModelOutput)
        steps.append((batch, TeacherTargets(out.logits, out.encoder)))
    return objective, steps


def bare_loop(objective: DistillObjective, steps: list, optim: OptimConfig) -> list[float]:
    """Set lr, forward, zero_grad, backward, clip, step: the end time of every step."""
    optimizer = build_optimizer(objective, optim.lr, optim.weight_decay)
    warmup = optim.warmup_steps(len(steps))
    set_seed(optim.seed)  # the dropout masks our loop draws (it seeds itself the same way)
    objective.train()
    ends = []
    for step, (batch, teacher) in enumerate(steps):
        lr = get_lr(step, len(steps), optim.lr, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = objective(batch, teacher, STAGE)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), optim.grad_clip)
        optimizer.step()
        ends.append(time.perf_counter())
    return ends


def our_loop(objective: DistillObjective, steps: list, optim: OptimConfig, out_dir: Path) -> list[float]:
    """The same steps through ernie_tiny.training.loop.train (metrics.jsonl, progress bar and last.pt included)."""
    ends: list[float] = []
    spec = TrainSpec(name="joint", model=objective, steps=len(steps), items_for_step=lambda step: [step],
                     collate=lambda rows: rows[0],
                     loss_fn=lambda model, step: model(steps[step][0], steps[step][1], STAGE),
                     term_names=objective.term_names(STAGE))
    ctx = DistributedContext(0, 1, 0, torch.device("cpu"))
    console = Console(file=io.StringIO(), force_terminal=True, width=120)  # a live bar, drawn to a buffer
    run = RunContext(ctx, out_dir, {"benchmark": "loop_overhead"}, console, MetricsLog(out_dir),
                     after_step=lambda step: ends.append(time.perf_counter()))
    train(spec, optim, run)
    return ends


def fixed_cost_us(steps: int, repeats: int, out_dir: Path) -> tuple[float, float]:
    """Microseconds per step that each loop adds around a near-free step (a 4 -> 1 linear model).

    With the model's own cost near zero, what is left is the loop's bookkeeping: the
    absolute number to set against a real step's time, far less sensitive to machine load
    than a ratio of two long runs.
    """
    inputs, targets = torch.randn(8, 4), torch.randn(8)
    optim = OptimConfig(lr=1e-3, batch_size=8, log_every=10, save_every=10 ** 9, eval_every=10 ** 9)
    spec_loss = lambda model, batch: StepLoss(((model(batch[0]).squeeze(-1) - batch[1]) ** 2).mean(), {})  # noqa: E731
    bare_runs, our_runs = [], []
    for repeat in range(repeats):
        model = torch.nn.Linear(4, 1)
        optimizer = build_optimizer(model, optim.lr, optim.weight_decay)
        start = time.perf_counter()
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = get_lr(step, steps, optim.lr, 0)
            loss = spec_loss(model, (inputs, targets))
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            optimizer.step()
        bare_runs.append((time.perf_counter() - start) / steps)
        model = torch.nn.Linear(4, 1)
        spec = TrainSpec(name="tiny", model=model, steps=steps, items_for_step=lambda step: [0],
                         collate=lambda rows: (inputs, targets), loss_fn=spec_loss)
        ctx = DistributedContext(0, 1, 0, torch.device("cpu"))
        run_dir = out_dir / f"tiny-{repeat}"
        run = RunContext(ctx, run_dir, {}, Console(file=io.StringIO(), force_terminal=True, width=120),
                         MetricsLog(run_dir))
        start = time.perf_counter()
        train(spec, optim, run)
        our_runs.append((time.perf_counter() - start) / steps)
    return 1e6 * statistics.median(bare_runs), 1e6 * statistics.median(our_runs)


def timed(ends: list[float], warmup: int) -> float:
    """Seconds from the end of step ``warmup`` to the end of the second-last step."""
    return ends[-2] - ends[warmup - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--teacher-preset", default="teacher-micro")
    parser.add_argument("--student-preset", default="student-micro")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny-steps", type=int, default=2000, help="steps of the near-free model")
    parser.add_argument("--out", type=Path, default=Path("runs/loop-overhead"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optim = OptimConfig(lr=5e-4, batch_size=args.batch_size, log_every=10, save_every=10 ** 9, eval_every=10 ** 9)
    objective, steps = prepare(args)
    initial = copy.deepcopy(objective.state_dict())
    pairs, final = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            seconds = {}
            for name in ("bare", "ours"):
                objective.load_state_dict(initial)
                run_dir = Path(tmp) / f"{name}-{repeat}"
                ends = bare_loop(objective, steps, optim) if name == "bare" else our_loop(objective, steps, optim,
                                                                                          run_dir)
                seconds[name] = timed(ends, args.warmup)
                final[name] = copy.deepcopy(objective.state_dict())
            pairs.append(seconds)
            print(f"repeat {repeat + 1}/{args.repeats}: bare {seconds['bare']:.3f}s, ours {seconds['ours']:.3f}s, "
                  f"overhead {100 * (seconds['ours'] / seconds['bare'] - 1):+.2f}%", flush=True)
        tiny_bare_us, tiny_ours_us = fixed_cost_us(args.tiny_steps, args.repeats, Path(tmp))
    worst = max((final["bare"][k] - final["ours"][k]).abs().max().item() for k in final["bare"])
    timed_steps = args.steps - 1 - args.warmup
    overheads = [100 * (p["ours"] / p["bare"] - 1) for p in pairs]
    result = {
        "overhead_pct_median": round(statistics.median(overheads), 2),
        "overhead_pct_per_pair": [round(o, 2) for o in overheads],
        "bare_ms_per_step_median": round(1000 * statistics.median(p["bare"] for p in pairs) / timed_steps, 2),
        "ours_ms_per_step_median": round(1000 * statistics.median(p["ours"] for p in pairs) / timed_steps, 2),
        "bare_examples_per_s_median": round(args.batch_size * timed_steps / statistics.median(p["bare"] for p in pairs), 1),
        "ours_examples_per_s_median": round(args.batch_size * timed_steps / statistics.median(p["ours"] for p in pairs), 1),
        "tiny_model_us_per_step": {"bare": round(tiny_bare_us, 1), "ours": round(tiny_ours_us, 1)},
        "fixed_overhead_pct_of_bare_step": round(100 * (tiny_ours_us - tiny_bare_us)
                                                 / (1e6 * statistics.median(p["bare"] for p in pairs) / timed_steps), 3),
        "max_weight_difference": worst, "timed_steps": timed_steps, "threads": args.threads,
        "load_average": [round(v, 2) for v in os.getloadavg()], "settings": {k: str(v) for k, v in vars(args).items()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "loop_overhead.json", result)
    table = ("| loop | ms per step | examples/s |\n|---|---|---|\n"
             f"| bare forward/backward/clip/step | {result['bare_ms_per_step_median']} | "
             f"{result['bare_examples_per_s_median']} |\n"
             f"| `ernie_tiny.training.loop.train` | {result['ours_ms_per_step_median']} | "
             f"{result['ours_examples_per_s_median']} |\n\n"
             f"Overhead, median of {args.repeats} paired runs: **{result['overhead_pct_median']:+.2f}%** "
             f"(per pair: {', '.join(f'{o:+.1f}%' for o in overheads)}); final weights equal to "
             f"{worst:.1e}; load average {result['load_average']}.\n\n"
             f"Fixed cost per step around a near-free model (4 -> 1 linear, median of {args.repeats}): bare "
             f"{tiny_bare_us:.0f} us, ours {tiny_ours_us:.0f} us: the loop adds {tiny_ours_us - tiny_bare_us:.0f} us "
             f"per step, **{result['fixed_overhead_pct_of_bare_step']:.2f}%** of the micro student's bare step.\n")
    atomic_write_text(args.out / "loop_overhead.md", table)
    print(table)
    if not math.isfinite(worst) or worst > 1e-6:
        raise SystemExit(f"the two loops ended with different weights (max difference {worst})")


if __name__ == "__main__":
    main()
