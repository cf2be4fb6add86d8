"""What a benchmark is asked to run (:class:`BenchConfig`) and what it returns (:class:`BenchResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ernie_tiny.bench.latency import Backend, LatencyStats
from ernie_tiny.deploy.onnx_session import Device


class BenchError(ValueError):
    """A benchmark that cannot run as asked (missing checkpoint, tokenizer, data or device)."""


@dataclass(frozen=True)
class BenchConfig:
    tasks: tuple[str, ...]
    data_dirs: tuple[Path | None, ...]  # one per task (None: the task's embedded data)
    teachers: tuple[Path, ...] = ()  # one checkpoint per task (ignored with synthetic)
    students: tuple[Path, ...] = ()
    device: Device = Device.cpu
    backends: tuple[Backend, ...] = (Backend.torch,)
    max_len: int = 128
    batch_size: int = 8
    runs: int = 10
    warmup_batches: int = 3
    threads: int | None = None  # torch threads = onnxruntime intra-op threads; None: torch's default
    latency_examples: int | None = None  # time the first N dev texts of the latency task (None: all)
    accuracy_examples: int | None = None  # evaluate on the first N dev examples (None: all)
    sort_by_length: bool = False  # batch length-sorted texts instead of dataset order
    synthetic: bool = False  # random weights at the presets' shapes: latency only
    teacher_preset: str = "ernie-1.0-base"
    student_preset: str = "ernie-tiny"
    teacher_tokenizer: Path | None = None  # synthetic: a char vocab folder (default: built from the dev texts)
    student_tokenizer: Path | None = None  # synthetic: a subword tokenizer folder (required)
    char_length_student: bool = True  # also time the student on the teacher's char sequences
    cuda_graphs: bool = True  # CUDA torch rows replay a CUDA graph per bucket; False: eager on buckets
    work_dir: Path | None = None  # where onnxruntime exports go (default: a temp folder)
    show_progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", Device(self.device))
        object.__setattr__(self, "backends", tuple(dict.fromkeys(Backend(b) for b in self.backends)))
        if not self.tasks:
            raise ValueError("give at least one --task")
        if len(self.data_dirs) != len(self.tasks):
            raise ValueError(f"{len(self.data_dirs)} data folders for {len(self.tasks)} tasks")
        if not self.synthetic and (len(self.teachers) != len(self.tasks) or len(self.students) != len(self.tasks)):
            raise ValueError(f"give one --teacher and one --student checkpoint per task ({len(self.tasks)} tasks), "
                             f"got {len(self.teachers)} and {len(self.students)}; or use --synthetic")
        for name in ("max_len", "batch_size", "runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.backends:
            raise ValueError("give at least one --backend")
        if self.synthetic and len(self.tasks) > 1:
            raise ValueError("--synthetic times one task (random weights have no accuracy to average)")


@dataclass
class VariantResult:
    name: str
    role: str
    backend: str
    precision: str
    input_kind: str  # "own" tokenizer or "char-length"
    preset: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    latency: LatencyStats | None = None
    # Speed-ups are medians over runs of per-run ratios: each run times every variant back to back,
    # so a change in machine load between runs cancels in the ratio (it does not in the means).
    speedup: float | None = None  # vs the reference teacher (the first backend's fp32 teacher)
    speedup_same_backend: float | None = None  # vs the teacher on this variant's backend and precision
    speedup_runs: list[float] = field(default_factory=list)  # per-run ratios vs the reference
    speedup_of_means: float | None = None  # reference mean latency / this mean latency
    flops_per_pass: int | None = None  # FLOPs of one timed pass at the shapes this variant ran (padding included)
    theoretical_speedup: float | None = None  # reference FLOPs / these FLOPs: the limit the shapes allow
    fraction_of_limit: float | None = None  # speedup / theoretical_speedup
    fraction_of_limit_same_backend: float | None = None  # speedup_same_backend / its own theoretical ratio

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.role, self.backend, self.precision, self.input_kind


@dataclass
class BenchResult:
    config: BenchConfig
    environment: dict
    variants: list[VariantResult]
    latency_task: str
    latency_source: str  # which texts were timed
    parity: dict[str, dict] = field(default_factory=dict)  # export name -> ParityReport dict
    reference: str = ""  # the variant the Latency column's "(1x)" is
