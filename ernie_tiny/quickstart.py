"""The whole pipeline on the embedded default, as a list of the CLI commands it runs.

    segment train -> teacher finetune -> distill -> export (fp32, int8) -> bench

The quickstart owns no training code: each step is an ``ernie-tiny`` command line,
printed before it runs, so a user can re-run any step alone. A step whose output
marker exists is skipped (``force`` redoes it); a step with a ``last.pt`` left by an
interrupted run continues with ``--resume``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ernie_tiny.io_utils import atomic_write_json, atomic_write_text


class StepFailed(RuntimeError):
    """A step ended without the file that marks it done."""


@dataclass(frozen=True)
class ScaleSettings:
    """How big and how long: ``small`` for a laptop CPU (~10 min), ``micro`` for CI (~1 min)."""

    teacher_preset: str
    student_preset: str
    vocab_size: int
    max_len: int
    teacher_steps: int
    student_steps: int  # joint distillation: layer-wise + prediction-layer losses at every step
    augment: int
    batch_size: int
    eval_every: int
    bench_runs: int
    latency_examples: int | None  # dev texts the latency table times (accuracy: all of dev, or `limit`)
    limit: int | None = None  # examples per split; None = all


SCALES: dict[str, ScaleSettings] = {
    "small": ScaleSettings(teacher_preset="teacher-small", student_preset="student-small", vocab_size=20000, max_len=64,
                           teacher_steps=300, student_steps=500, augment=1,
                           batch_size=32, eval_every=200, bench_runs=5, latency_examples=256),
    "micro": ScaleSettings(teacher_preset="teacher-micro", student_preset="student-micro", vocab_size=2000, max_len=32,
                           teacher_steps=6, student_steps=6, augment=1,
                           batch_size=8, eval_every=3, bench_runs=2, latency_examples=64, limit=64),
}


@dataclass(frozen=True)
class QuickstartConfig:
    out_dir: str = "runs/quickstart"
    scale: str = "small"
    force: bool = False  # redo every step even when its output exists
    seed: int = 42

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; choose one of {', '.join(SCALES)}")


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]  # arguments of `ernie-tiny`
    done_marker: str  # this file exists once the step has finished
    resume_state: str | None = None  # a training state left by an interrupted run: add --resume


@dataclass
class StepResult:
    name: str
    status: str  # "ran", "resumed" or "reused"
    seconds: float
    command: str = field(default="")


def plan_steps(config: QuickstartConfig) -> list[Step]:
    """The ordered command lines of the pipeline, with the folders they read and write."""
    s = SCALES[config.scale]
    out = Path(config.out_dir)
    tokenizer, teacher, student = out / "tokenizer", out / "teacher", out / "student"
    onnx, bench = out / "onnx", out / "bench"
    limit = ["--limit", str(s.limit), "--eval-limit", str(s.limit)] if s.limit else []
    seed = ["--seed", str(config.seed)]
    return [
        Step("tokenizer", ["segment", "train", "--vocab-size", str(s.vocab_size), "--out", str(tokenizer)]
             + (["--max-sentences", str(50 * s.limit)] if s.limit else []),
             done_marker=str(tokenizer / "tokenizer_config.json")),
        Step("teacher", ["teacher", "finetune", "--preset", s.teacher_preset, "--task", "reviews", "--out", str(teacher),
                         "--max-len", str(s.max_len), "--max-steps", str(s.teacher_steps), "--batch-size", str(s.batch_size),
                         "--eval-every", str(s.eval_every), *seed, *limit],
             done_marker=str(teacher / "metrics.json"), resume_state=str(teacher / "last.pt")),
        Step("student", ["distill", "--teacher", str(teacher / "best"), "--task", "reviews", "--out", str(student),
                         "--student-preset", s.student_preset, "--student-tokenizer", str(tokenizer),
                         "--stage", "joint", "--steps-prediction", str(s.student_steps), "--augment", str(s.augment),
                         "--max-len", str(s.max_len), "--batch-size", str(s.batch_size), "--eval-every", str(s.eval_every),
                         *seed, *limit],
             done_marker=str(student / "metrics.json"), resume_state=str(student / "last.pt")),
        Step("onnx-fp32", ["export", "--model", str(student / "best"), "--out", str(onnx / "fp32")],
             done_marker=str(onnx / "fp32" / "parity.json")),
        Step("onnx-int8", ["export", "--model", str(student / "best"), "--out", str(onnx / "int8"), "--quantize", "int8"],
             done_marker=str(onnx / "int8" / "parity.json")),
        Step("bench", ["bench", "--task", "reviews", "--teacher", str(teacher / "best"), "--student", str(student / "best"),
                       "--device", "cpu", "--backend", "torch", "--backend", "onnxruntime", "--max-len", "128",
                       "--runs", str(s.bench_runs), "--work-dir", str(bench / "onnx"), "--out", str(bench),
                       *(["--latency-examples", str(s.latency_examples)] if s.latency_examples else []),
                       *(["--accuracy-examples", str(s.limit)] if s.limit else [])],
             done_marker=str(bench / "bench.json")),
    ]


def run_quickstart(config: QuickstartConfig, run_command: Callable[[list[str]], None],
                   echo: Callable[[str], None] = print) -> list[StepResult]:
    """Run (or reuse) every step through ``run_command(argv)``; write ``quickstart.json`` and ``summary.md``."""
    out = Path(config.out_dir)
    results: list[StepResult] = []
    echo(f"quickstart: scale {config.scale} ({SCALES[config.scale].teacher_preset} -> {SCALES[config.scale].student_preset}), "
         f"output in {out}")
    echo("quickstart: no pretrained ERNIE can be downloaded here, so the teacher is trained from scratch on the embedded "
         "reviews; pass a real one with `ernie-tiny teacher convert` + `teacher finetune --init`.")
    for step in plan_steps(config):
        command = "ernie-tiny " + " ".join(step.argv)
        if Path(step.done_marker).exists() and not config.force:
            echo(f"[{step.name}] reusing {Path(step.done_marker).parent} (--force redoes it)")
            results.append(StepResult(step.name, "reused", 0.0, command))
            continue
        argv = list(step.argv)
        status = "ran"
        if step.resume_state and Path(step.resume_state).exists() and not config.force:
            argv.append("--resume")
            status = "resumed"
        elif config.force:
            target = Path(step.done_marker).parent
            if target.exists():
                shutil.rmtree(target)  # a forced step starts from nothing, not from an old last.pt
        echo(f"[{step.name}] $ ernie-tiny {' '.join(argv)}")
        started = time.perf_counter()
        run_command(argv)
        if not Path(step.done_marker).exists():
            raise StepFailed(f"step {step.name} finished without writing {step.done_marker}")
        results.append(StepResult(step.name, status, time.perf_counter() - started, "ernie-tiny " + " ".join(argv)))
    write_summary(config, results)
    return results


def write_summary(config: QuickstartConfig, results: list[StepResult]) -> Path:
    """``summary.md``: the bench table, the step times, and where each artefact is."""
    out = Path(config.out_dir)
    atomic_write_json(out / "quickstart.json", {"config": asdict(config), "scale": asdict(SCALES[config.scale]),
                                                "steps": [asdict(r) for r in results]})
    lines = ["# ernie-tiny quickstart", "", f"Scale `{config.scale}`: " + json.dumps(asdict(SCALES[config.scale])), ""]
    table = out / "bench" / "bench.md"
    if table.exists():
        lines += [table.read_text(encoding="utf-8").strip(), ""]
    lines += ["| step | status | seconds | command |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} | `{r.command}` |" for r in results]
    lines += ["", "Artefacts: `tokenizer/`, `teacher/best/`, `student/best/`, `onnx/fp32`, `onnx/int8`, `bench/` "
              "(bench.md, bench.json, bench.png), loss curves in `teacher/` and `student/`."]
    path = out / "summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
