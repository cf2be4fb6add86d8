"""The whole pipeline on the embedded default, as a list of the CLI commands it runs.

    small        segment train -> teacher finetune (from scratch) -> distill -> export (fp32, int8) -> bench
    micro, real  segment train -> pretrain (knowledge masking) -> teacher finetune --init, and the same
                 teacher from scratch -> distill-general -> distill --student-init (augmented)
                 -> export (fp32 + int8 on CPU, fp32 + fp16 on a GPU) -> bench

``real`` is the ERNIE-tiny recipe at full size on one GPU: each training stage has a time
budget in minutes (``StageMinutes``; a stage fixes its step count after its first steps and
saves it, so a resumed stage ends where the interrupted one would have). ``micro`` runs the
same steps at the micro presets for a few steps each: the CPU test suite runs it.

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
from enum import Enum
from pathlib import Path

from ernie_tiny.io_utils import atomic_write_json, atomic_write_text


class StepFailed(RuntimeError):
    """A step ended without the file that marks it done."""


class Scale(str, Enum):
    micro = "micro"  # the real recipe at micro presets: the CPU test suite runs it (~1-2 min)
    small = "small"  # scaled presets from scratch on a laptop CPU (~10 min): no pretraining
    real = "real"  # ernie-1.0-base pretrained -> ERNIE-tiny on one GPU (~10 min)


@dataclass(frozen=True)
class StageMinutes:
    """Time budget of each training stage (``--max-minutes`` of its command); None: its step count alone.

    A stage with a budget fixes its step count after its first 20 steps and saves it, so a
    resumed quickstart ends each stage where the interrupted one would have.
    """

    pretrain: float | None = None  # knowledge-masking pretraining of the teacher
    teacher: float | None = None  # fine-tuning the teacher on reviews (and the from-scratch comparison)
    general: float | None = None  # general distillation into the student on unlabelled text
    student: float | None = None  # task distillation with augmentation

    def __post_init__(self) -> None:
        for name, minutes in asdict(self).items():
            if minutes is not None and not minutes > 0:
                raise ValueError(f"--{name}-minutes must be positive, got {minutes}")

    def merged(self, overrides: "StageMinutes") -> "StageMinutes":
        """These budgets with every budget ``overrides`` sets replacing ours."""
        return StageMinutes(**{k: v if v is not None else getattr(self, k) for k, v in asdict(overrides).items()})


@dataclass(frozen=True)
class ScaleSettings:
    """How big and how long each step is at one scale."""

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
    pretrain_steps: int = 0  # 0: no pretraining, the teacher starts from scratch (the small recipe)
    general_steps: int = 0  # general distillation steps (with pretraining only)
    pretrain_lr: float = 5e-4
    pretrain_batch_size: int = 32
    data_workers: int = 1  # masking processes of the pretraining step
    pretrain_eval_every: int = 1000  # steps between masked-LM evaluations and last.pt saves of the pretraining
    pretrain_eval_examples: int = 512  # masked dev examples per evaluation
    minutes: StageMinutes = field(default_factory=StageMinutes)  # default budgets; step counts are then caps
    gpu: bool = False  # export fp16 ONNX and bench the torch precisions on CUDA (else int8 + onnxruntime on CPU)

    @property
    def pretrained(self) -> bool:
        return self.pretrain_steps > 0


SCALES: dict[Scale, ScaleSettings] = {
    Scale.small: ScaleSettings(teacher_preset="teacher-small", student_preset="student-small", vocab_size=20000,
                               max_len=64, teacher_steps=300, student_steps=500, augment=1,
                               batch_size=32, eval_every=200, bench_runs=5, latency_examples=256),
    Scale.micro: ScaleSettings(teacher_preset="teacher-micro", student_preset="student-micro", vocab_size=2000,
                               max_len=32, teacher_steps=6, student_steps=6, augment=1,
                               batch_size=8, eval_every=3, bench_runs=2, latency_examples=64, limit=64,
                               pretrain_steps=6, general_steps=4, pretrain_lr=2e-3, pretrain_batch_size=8,
                               pretrain_eval_every=3, pretrain_eval_examples=32),
    # Budgets (minutes) sum to 9 with setup and bench on top; the step counts are caps the budgets cut.
    Scale.real: ScaleSettings(teacher_preset="ernie-1.0-base", student_preset="ernie-tiny", vocab_size=50000,
                              max_len=128, teacher_steps=3000, student_steps=3000, augment=1,
                              batch_size=128, eval_every=250, bench_runs=5, latency_examples=512,
                              pretrain_steps=100_000, general_steps=100_000, pretrain_lr=2e-4,
                              pretrain_batch_size=256, data_workers=8,
                              minutes=StageMinutes(pretrain=4.5, teacher=1.0, general=1.0, student=1.0), gpu=True),
}


@dataclass(frozen=True)
class QuickstartConfig:
    out_dir: str = "runs/quickstart"
    scale: Scale = Scale.small
    force: bool = False  # redo every step even when its output exists
    seed: int = 42
    device: str | None = None  # every step's --device (None: each command's default, auto)
    minutes: StageMinutes = field(default_factory=StageMinutes)  # overrides the scale's budgets

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "scale", Scale(self.scale))
        except ValueError:
            raise ValueError(f"unknown scale {self.scale!r}; choose one of {', '.join(s.value for s in Scale)}") \
                from None

    @property
    def settings(self) -> ScaleSettings:
        return SCALES[self.scale]

    @property
    def budgets(self) -> StageMinutes:
        return self.settings.minutes.merged(self.minutes)


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
    s, budgets = config.settings, config.budgets
    out = Path(config.out_dir)
    tokenizer, pretrained, teacher, scratch = out / "tokenizer", out / "pretrain", out / "teacher", out / "teacher-scratch"
    general, student, onnx, bench = out / "general", out / "student", out / "onnx", out / "bench"
    limit = ["--limit", str(s.limit), "--eval-limit", str(s.limit)] if s.limit else []
    common = ["--seed", str(config.seed)] + (["--device", config.device] if config.device else [])

    def minutes(value: float | None) -> list[str]:
        return ["--max-minutes", f"{value:g}"] if value is not None else []

    def finetune(name: str, folder: Path, start: list[str]) -> Step:
        return Step(name, ["teacher", "finetune", *start, "--task", "reviews", "--out", str(folder),
                           "--max-len", str(s.max_len), "--max-steps", str(s.teacher_steps),
                           "--batch-size", str(s.batch_size), "--eval-every", str(s.eval_every),
                           *minutes(budgets.teacher), *common, *limit],
                    done_marker=str(folder / "metrics.json"), resume_state=str(folder / "last.pt"))

    steps = [Step("tokenizer", ["segment", "train", "--vocab-size", str(s.vocab_size), "--out", str(tokenizer)]
                  + (["--max-sentences", str(50 * s.limit)] if s.limit else []),
                  done_marker=str(tokenizer / "tokenizer_config.json"))]
    student_init: list[str] = []
    if s.pretrained:
        steps += [
            Step("pretrain", ["pretrain", "--preset", s.teacher_preset, "--out", str(pretrained),
                              "--max-len", str(s.max_len), "--max-steps", str(s.pretrain_steps),
                              "--batch-size", str(s.pretrain_batch_size), "--lr", f"{s.pretrain_lr:g}",
                              "--eval-every", str(s.pretrain_eval_every), "--save-every", str(s.pretrain_eval_every),
                              "--eval-examples", str(s.pretrain_eval_examples),
                              "--data-workers", str(s.data_workers), *minutes(budgets.pretrain), *common],
                 done_marker=str(pretrained / "metrics.json"), resume_state=str(pretrained / "last.pt")),
            finetune("teacher", teacher, ["--init", str(pretrained / "best")]),
            finetune("teacher-scratch", scratch, ["--preset", s.teacher_preset]),
            Step("general", ["distill-general", "--teacher", str(pretrained / "best"), "--out", str(general),
                             "--student-preset", s.student_preset, "--student-tokenizer", str(tokenizer),
                             "--steps", str(s.general_steps), "--batch-size", str(s.batch_size),
                             "--max-len", str(s.max_len), *minutes(budgets.general), *common]
                 + (["--max-texts", str(50 * s.limit)] if s.limit else []),
                 done_marker=str(general / "metrics.json"), resume_state=str(general / "last.pt")),
        ]
        student_init = ["--student-init", str(general / "student")]
    else:
        steps.append(finetune("teacher", teacher, ["--preset", s.teacher_preset]))
    student_source = student_init or ["--student-preset", s.student_preset, "--student-tokenizer", str(tokenizer)]
    steps.append(Step("student", ["distill", "--teacher", str(teacher / "best"), "--task", "reviews",
                                  "--out", str(student), *student_source,
                                  "--stage", "joint", "--steps-prediction", str(s.student_steps),
                                  "--augment", str(s.augment), "--max-len", str(s.max_len),
                                  "--batch-size", str(s.batch_size), "--eval-every", str(s.eval_every),
                                  *minutes(budgets.student), *common, *limit],
                      done_marker=str(student / "metrics.json"), resume_state=str(student / "last.pt")))
    reduced = ("fp16", ["--fp16"]) if s.gpu else ("int8", ["--quantize", "int8"])
    steps += [
        Step("onnx-fp32", ["export", "--model", str(student / "best"), "--out", str(onnx / "fp32")],
             done_marker=str(onnx / "fp32" / "parity.json")),
        Step(f"onnx-{reduced[0]}", ["export", "--model", str(student / "best"), "--out", str(onnx / reduced[0]),
                                    *reduced[1]],
             done_marker=str(onnx / reduced[0] / "parity.json")),
    ]
    # On a GPU the torch rows are fp32, fp16 and bf16 (same precision teacher beside each student row).
    backends = ["--backend", "torch"] if s.gpu else ["--backend", "torch", "--backend", "onnxruntime"]
    steps.append(Step("bench", ["bench", "--task", "reviews", "--teacher", str(teacher / "best"),
                                "--student", str(student / "best"), "--device", "cuda" if s.gpu else "cpu",
                                *backends, "--max-len", "128", "--runs", str(s.bench_runs),
                                "--work-dir", str(bench / "onnx"), "--out", str(bench),
                                *(["--latency-examples", str(s.latency_examples)] if s.latency_examples else []),
                                *(["--accuracy-examples", str(s.limit)] if s.limit else [])],
                      done_marker=str(bench / "bench.json")))
    return steps


def run_quickstart(config: QuickstartConfig, run_command: Callable[[list[str]], None],
                   echo: Callable[[str], None] = print) -> list[StepResult]:
    """Run (or reuse) every step through ``run_command(argv)``; write ``quickstart.json`` and ``summary.md``."""
    out = Path(config.out_dir)
    results: list[StepResult] = []
    s = config.settings
    echo(f"quickstart: scale {config.scale.value} ({s.teacher_preset} -> {s.student_preset}), output in {out}")
    if s.pretrained:
        echo("quickstart: the teacher is pretrained here (knowledge masking on the embedded corpus), then fine-tuned; "
             "the same teacher fine-tuned from scratch is the comparison.")
    else:
        echo("quickstart: no pretrained ERNIE can be downloaded here, so the teacher is trained from scratch on the "
             "embedded reviews; pass a real one with `ernie-tiny teacher convert` + `teacher finetune --init`.")
    budgets = {k: v for k, v in asdict(config.budgets).items() if v is not None}
    if budgets:
        echo("quickstart: time budgets (minutes) " + ", ".join(f"{k} {v:g}" for k, v in budgets.items()))
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


@dataclass
class Comparison:
    """The recipe's two claims, read from the runs' metrics.json files (None where a run is missing)."""

    metric: str  # the task's main metric, on test
    teacher: float | None  # the fine-tuned (pretrained, with that recipe) teacher
    scratch: float | None  # the same teacher fine-tuned from scratch
    student: float | None

    @property
    def pretraining_gain_points(self) -> float | None:
        return None if self.teacher is None or self.scratch is None else 100 * (self.teacher - self.scratch)

    @property
    def retention_pct(self) -> float | None:
        return None if not self.teacher or self.student is None else 100 * self.student / self.teacher


def read_comparison(out: Path) -> Comparison:
    """Test scores of the teacher, the from-scratch teacher and the student (their main metric)."""
    def score(path: Path, *keys: str) -> tuple[str | None, float | None]:
        if not path.is_file():
            return None, None
        data = json.loads(path.read_text(encoding="utf-8"))
        split = data
        for key in keys:
            split = split.get(key) or {}
        metric = data.get("main_metric")
        return metric, split.get(metric) if metric else None

    metric, teacher = score(out / "teacher" / "metrics.json", "test")
    _, scratch = score(out / "teacher-scratch" / "metrics.json", "test")
    _, student = score(out / "student" / "metrics.json", "student", "test")
    return Comparison(metric or "accuracy", teacher, scratch, student)


def comparison_lines(comparison: Comparison) -> list[str]:
    """The comparison as markdown lines (rows only for the runs that exist)."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    lines = [f"| model | test {comparison.metric} |", "|---|---|", f"| teacher | {pct(comparison.teacher)} |"]
    if comparison.scratch is not None:
        lines.append(f"| same teacher from scratch | {pct(comparison.scratch)} |")
    lines.append(f"| student | {pct(comparison.student)} |")
    lines.append("")
    if comparison.pretraining_gain_points is not None:
        lines.append(f"Pretraining gain: {comparison.pretraining_gain_points:+.2f} points over the teacher from scratch.")
    if comparison.retention_pct is not None:
        lines.append(f"The student keeps {comparison.retention_pct:.1f}% of the teacher's test {comparison.metric} "
                     "(speed-ups: the bench table).")
    return lines


def write_summary(config: QuickstartConfig, results: list[StepResult]) -> Path:
    """``summary.md``: the teacher/student comparison, the bench table, the step times, where each artefact is."""
    out = Path(config.out_dir)
    comparison = read_comparison(out)
    atomic_write_json(out / "quickstart.json", {
        "config": asdict(config), "scale": asdict(config.settings), "steps": [asdict(r) for r in results],
        "comparison": {**asdict(comparison), "pretraining_gain_points": comparison.pretraining_gain_points,
                       "retention_pct": comparison.retention_pct}})
    settings = {k: v for k, v in asdict(config.settings).items() if k != "minutes"}
    lines = ["# ernie-tiny quickstart", "", f"Scale `{config.scale.value}`: " + json.dumps(settings), ""]
    lines += comparison_lines(comparison) + [""]
    table = out / "bench" / "bench.md"
    if table.exists():
        lines += [table.read_text(encoding="utf-8").strip(), ""]
    lines += ["| step | status | seconds | command |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} | `{r.command}` |" for r in results]
    lines += ["", f"Total: {sum(r.seconds for r in results):.0f} s of steps run in this invocation.", "",
              "Artefacts: " + ", ".join(f"`{Path(step.done_marker).parent.relative_to(out)}/`"
                                        for step in plan_steps(config))
              + " (bench.md, bench.json, bench.png in `bench/`; loss curves beside each training run)."]
    path = out / "summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
