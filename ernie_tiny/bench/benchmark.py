"""The ERNIE-tiny table on this machine: dev-set accuracy and latency of teacher and student.

    for each task: dev split -> teacher and student (checkpoints, or random weights at the
        real preset shapes with --synthetic) -> on each backend: accuracy over the dev set
    on the first task: latency over its dev texts, all variants interleaved:
        teacher, student, student fed the teacher's char-length sequences (the layer count
        and width alone); on onnxruntime teacher and student each at fp32 and at int8 (CPU)
        or fp16 (CUDA), so every student row has a teacher on its own backend and precision
    per variant: its FLOPs over the timed batches at the shapes it ran (padding included),
        the theoretical speed-up (torch fp32 teacher FLOPs / its FLOPs) and the fraction of
        it that the measured speed-up reaches (see :mod:`ernie_tiny.flops`)

Example::

    result = run_benchmark(BenchConfig(tasks=("lcqmc",), data_dirs=(Path("../shared/data/lcqmc"),),
                                       synthetic=True, student_tokenizer=Path("runs/subword")))
    write_report(result, Path("runs/bench"))   # bench.md, bench.json, bench.png
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from ernie_tiny.bench.config import BenchConfig, BenchError, BenchResult, VariantResult
from ernie_tiny.bench.environment import describe_environment, spinning_warning
from ernie_tiny.flops import pass_flops
from ernie_tiny.deploy.export import ExportOptions, export_model
from ernie_tiny.bench.latency import Backend, InferFn, LatencyStats, Variant, time_variants
from ernie_tiny.bench.torch_variants import timed_rows, torch_variants
from ernie_tiny.deploy.onnx_session import Device, DeviceUnavailableError, Precision, make_session, providers_for
from ernie_tiny.deploy.parity import ParityReport
from ernie_tiny.checkpoint import LoadedCheckpoint, load_pretrained
from ernie_tiny.tokenization.encoding import Tokenizer, pad_to_arrays
from ernie_tiny.heads import HeadKind
from ernie_tiny.model import ErnieConfig, build_model, encoder_of
from ernie_tiny.tasks import (EncodedSplit, Example, TaskKind, TaskSpec, encode_examples, evaluate, get_task,
                              load_split, predictions_from_outputs)
from ernie_tiny.tokenization.load import load_tokenizer

PARITY_EXAMPLES = 64  # dev texts each bench export is checked on


@dataclass
class ModelPair:
    """A task's teacher and student models with their tokenizers."""

    teacher: nn.Module
    student: nn.Module
    teacher_tokenizer: Tokenizer
    student_tokenizer: Tokenizer
    teacher_preset: str
    student_preset: str
    labels: list[str]


FOLDER_ALIASES = {"chnsenticorp": ("chnsenticorp_htl",)}  # the shared data's folder for the hotel reviews
MARKER_FILES = {"data": "dev.tsv", "teacher": "config.json", "student": "config.json"}


def resolve_per_task(paths: list[Path], tasks: list[str], what: str) -> list[Path | None]:
    """One folder per task (``what``: data, teacher or student), given one per task or one root for all.

    A folder holding the marker file (``dev.tsv`` / ``config.json``) is taken as it is;
    otherwise its sub-folder named after the task: ``--task lcqmc --task chnsenticorp
    --data-dir ../shared/data`` finds ``lcqmc/`` and ``chnsenticorp_htl/``.
    """
    if not paths:
        return [None] * len(tasks)
    if len(paths) not in (1, len(tasks)):
        raise BenchError(f"{len(paths)} {what} paths for {len(tasks)} tasks: give one per task or one root folder")
    roots = list(paths) if len(paths) == len(tasks) else list(paths) * len(tasks)
    return [find_task_folder(Path(root), task, what) for root, task in zip(roots, tasks)]


def find_task_folder(root: Path, task: str, what: str) -> Path:
    marker = MARKER_FILES[what]
    if (root / marker).is_file():
        return root
    names = tuple(dict.fromkeys((task, task.replace("-", "_")) + FOLDER_ALIASES.get(task, ())))  # each name once
    found = next((root / name for name in names if (root / name / marker).is_file()), None)
    if found is None:
        raise BenchError(f"{root}: no {marker} there, nor in a {what} sub-folder for task {task} "
                         f"(looked for {', '.join(names)})")
    return found


def check_device(config: BenchConfig) -> torch.device:
    """The torch device; raises :class:`DeviceUnavailableError` (one line) when CUDA is asked for but absent."""
    if config.device is Device.cuda:
        if Backend.torch in config.backends and not torch.cuda.is_available():
            raise DeviceUnavailableError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU "
                                         "(CPU-only build or no driver); use --device cpu")
        if Backend.onnxruntime in config.backends:
            providers_for(Device.cuda)
    return torch.device(config.device.value)


def load_checkpoint_for(path: Path, task: TaskSpec, role: str) -> LoadedCheckpoint:
    loaded = load_pretrained(path)
    if loaded.meta.head is not task.head:
        raise BenchError(f"{path}: {role} checkpoint has a {loaded.meta.head.value} head; task {task.name} "
                         f"needs {task.head.value}")
    num_labels = getattr(loaded.model, "num_labels", 0)
    if task.kind is not TaskKind.ranking and num_labels != task.num_labels:
        raise BenchError(f"{path}: {role} checkpoint has {num_labels} outputs; task {task.name} has "
                         f"{task.num_labels} labels")
    if loaded.tokenizer is None:
        raise BenchError(f"{path}: {role} checkpoint holds no tokenizer files")
    return loaded


def synthetic_models(config: BenchConfig, task: TaskSpec, examples: list[Example]) -> ModelPair:
    """Random weights at the presets' shapes, with the real tokenizers (the student's is required)."""
    if config.student_tokenizer is None:
        raise BenchError("--synthetic needs the student's subword tokenizer (--student-tokenizer DIR): "
                         "the student's sequence lengths come from it, and there is no honest stand-in")
    student_tokenizer = load_tokenizer(config.student_tokenizer)
    if config.teacher_tokenizer is not None:
        teacher_tokenizer = load_tokenizer(config.teacher_tokenizer)
    else:  # a char vocab of the dev texts themselves: char-level lengths are what a char teacher sees
        from ernie_tiny.tokenization.char import CharTokenizer

        teacher_tokenizer = CharTokenizer.from_texts([t for e in examples for t in (e.text_a, e.text_b) if t])
    models = []
    for preset, tokenizer in ((config.teacher_preset, teacher_tokenizer), (config.student_preset, student_tokenizer)):
        base = ErnieConfig.from_preset(preset)
        model_config = replace(base, vocab_size=max(base.vocab_size, tokenizer.vocab_size))
        torch.manual_seed(0)
        models.append(build_model(model_config, task.head, task.num_labels).eval())
    return ModelPair(models[0], models[1], teacher_tokenizer, student_tokenizer, config.teacher_preset,
                     config.student_preset, list(task.labels))


def checkpoint_models(teacher_dir: Path, student_dir: Path, task: TaskSpec) -> ModelPair:
    teacher = load_checkpoint_for(teacher_dir, task, "teacher")
    student = load_checkpoint_for(student_dir, task, "student")
    return ModelPair(teacher.model.eval(), student.model.eval(), teacher.tokenizer, student.tokenizer,
                     teacher.config.preset, student.config.preset, teacher.meta.labels or list(task.labels))


def onnx_infer(session: ort.InferenceSession) -> InferFn:
    feeds_names = [i.name for i in session.get_inputs()]

    def infer(arrays: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], {name: arrays[name] for name in feeds_names})[0]
    return infer


def evaluate_infer(task: TaskSpec, examples: list[Example], encoded: EncodedSplit, pad_id: int, infer: InferFn,
                   batch_size: int) -> dict[str, float]:
    """The task's metrics for one model variant over ``examples`` encoded by its tokenizer (dataset order,
    dynamic padding)."""
    rows: list[np.ndarray] = []
    for start in range(0, len(encoded), batch_size):
        encodings = [item.encoding for item in encoded.items[start:start + batch_size]]
        outputs = infer(pad_to_arrays(encodings, pad_id=pad_id))
        for row, encoding in enumerate(encodings):
            rows.append(outputs[row, :len(encoding)] if task.kind is TaskKind.ner else outputs[row])
    return evaluate(task, predictions_from_outputs(task, rows, encoded, examples), examples)


def reduced_precision(device: Device) -> Precision:
    """The onnxruntime precision below fp32 that the device runs fast: fp16 on CUDA, int8 on CPU."""
    return Precision.fp16 if device is Device.cuda else Precision.int8


def build_variants(config: BenchConfig, pair: ModelPair, task: TaskSpec, examples: list[Example],
                   work_dir: Path, device: torch.device, parity: dict[str, dict]) -> list[Variant]:
    """Every (model, backend, precision, input) to evaluate and time, exporting ONNX as needed."""
    variants = []
    if Backend.onnxruntime in config.backends:  # export before any model moves to a GPU
        parity_examples = examples[:PARITY_EXAMPLES]
        # The teacher at every precision the student runs: each student row gets a same-precision teacher row.
        precisions = (Precision.fp32, reduced_precision(config.device))
        exports = [(role, model, tokenizer, precision) for role, model, tokenizer in (
            ("teacher", pair.teacher, pair.teacher_tokenizer), ("student", pair.student, pair.student_tokenizer))
            for precision in precisions]
        for role, model, tokenizer, precision in exports:
            name = f"{task.name}-{role}-{precision.value}"
            result = export_model(model, tokenizer, work_dir / name, ExportOptions(precision=precision),
                                  parity_examples, parity_task=None if config.synthetic else task,
                                  labels=pair.labels, model_task=task.name,
                                  parity_source=f"{task.name} dev, first {len(parity_examples)}")
            parity[name] = result.parity.to_dict() | {"fused_operators": result.fused_operators,
                                                      "operator_counts": result.config.operator_counts}
            session = make_session(result.directory / "model.onnx", device=config.device, threads=config.threads)
            variants.append(make_variant(pair, role, Backend.onnxruntime, precision, onnx_infer(session)))
    if Backend.torch in config.backends:  # CPU: fp32 eager; CUDA: fp32, fp16, bf16 through the deployed runner
        timed = len(examples[:config.latency_examples] if config.latency_examples else examples)
        variants += torch_variants(
            {"teacher": pair.teacher, "student": pair.student},
            {role: f"{preset} ({role})" for role, preset in (("teacher", pair.teacher_preset),
                                                             ("student", pair.student_preset))},
            {"teacher": pair.teacher_tokenizer, "student": pair.student_tokenizer}, device, config.max_len,
            timed_rows(config.batch_size, timed), cuda_graphs=config.cuda_graphs)
    # A char student (msra-ner) already reads the teacher's sequences: its char-length row would repeat its own.
    if config.char_length_student and not reads_teacher_tokens(pair):
        for variant in [v for v in variants if v.role == "student" and v.precision == "fp32"]:
            variants.append(Variant(variant.name, "student", variant.backend, variant.precision,
                                    pair.teacher_tokenizer, variant.infer, input_kind="char-length",
                                    vocab_size=pair.student_tokenizer.vocab_size))
    order = {Backend.torch.value: 0, Backend.onnxruntime.value: 1}
    return sorted(variants, key=lambda v: (order[v.backend], v.role != "teacher", v.input_kind != "own"))


def reads_teacher_tokens(pair: ModelPair) -> bool:
    """True when the student's tokenizer is the teacher's char vocabulary (same kind, same tokens)."""
    student, teacher = pair.student_tokenizer, pair.teacher_tokenizer
    return student.kind == teacher.kind == "char" and getattr(student, "vocab", None) == getattr(teacher, "vocab", None)


def make_variant(pair: ModelPair, role: str, backend: Backend, precision: Precision, infer: InferFn) -> Variant:
    tokenizer = pair.teacher_tokenizer if role == "teacher" else pair.student_tokenizer
    preset = pair.teacher_preset if role == "teacher" else pair.student_preset
    name = f"{preset} ({role})"
    return Variant(name, role, backend.value, precision.value, tokenizer, infer)


def variant_result(variant: Variant, pair: ModelPair) -> VariantResult:
    preset = pair.teacher_preset if variant.role == "teacher" else pair.student_preset
    return VariantResult(variant.name, variant.role, variant.backend, variant.precision, variant.input_kind, preset)


def run_benchmark(config: BenchConfig, log: Callable[[str], None] = print) -> BenchResult:
    """Accuracy on every task, latency on the first; see the module docstring."""
    device = check_device(config)
    load_at_start = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    threads_before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    config = replace(config, threads=torch.get_num_threads())  # onnxruntime gets the same intra-op thread count
    warning = spinning_warning(config.threads) if Backend.torch in config.backends else None
    if warning:
        log(warning)
    try:
        variants, parity, latency_source = measure(config, device, log)
    finally:
        torch.set_num_threads(threads_before)
    reference = add_speedups(variants)
    environment = describe_environment(config.device.value, config.threads) | {"load_average_start": load_at_start}
    return BenchResult(config=config, environment=environment, variants=variants, latency_task=config.tasks[0],
                       latency_source=latency_source, parity=parity, reference=reference)


def measure(config: BenchConfig, device: torch.device,
            log: Callable[[str], None]) -> tuple[list[VariantResult], dict[str, dict], str]:
    """Per task: models, exports, accuracy of every variant; latency of every variant on the first task."""
    results: dict[tuple, VariantResult] = {}
    parity: dict[str, dict] = {}
    latency_source = ""
    with tempfile.TemporaryDirectory(prefix="ernie-tiny-bench-") as scratch:
        work_dir = config.work_dir or Path(scratch)
        for index, (task_name, data_dir) in enumerate(zip(config.tasks, config.data_dirs)):
            task = get_task(task_name)
            examples = load_split(task, data_dir, "dev")
            log(f"{task.name}: {len(examples)} dev examples from {data_dir or 'embedded data'}")
            pair = synthetic_models(config, task, examples) if config.synthetic else \
                checkpoint_models(config.teachers[index], config.students[index], task)
            variants = build_variants(config, pair, task, examples, work_dir, device, parity)
            for variant in variants:
                results.setdefault(variant_key(variant), variant_result(variant, pair))
            if not config.synthetic:
                scored = examples[:config.accuracy_examples] if config.accuracy_examples else examples
                encoded_by_tokenizer: dict[int, EncodedSplit] = {}  # teacher and student variants share two
                for variant in [v for v in variants if v.input_kind == "own"]:
                    key = id(variant.tokenizer)
                    if key not in encoded_by_tokenizer:
                        encoded_by_tokenizer[key] = encode_examples(scored, variant.tokenizer, config.max_len)
                    metrics = evaluate_infer(task, scored, encoded_by_tokenizer[key], variant.tokenizer.pad_id,
                                             variant.infer, config.batch_size)
                    results[variant_key(variant)].metrics[task.name] = metrics
                    log(f"  {variant.label}: {task.main_metric} {100 * metrics[task.main_metric]:.2f}")
            if index == 0:
                timed = examples[:config.latency_examples] if config.latency_examples else examples
                latency_source = f"{task.name} dev, {'first ' if len(timed) < len(examples) else ''}" \
                                 f"{len(timed)} of {len(examples)} texts"
                log(f"timing {len(variants)} variants on {latency_source}, {config.runs} runs")
                stats = time_variants(variants, [(e.text_a, e.text_b) for e in timed], config.batch_size,
                                      config.max_len, config.runs, config.warmup_batches, config.sort_by_length,
                                      config.show_progress)
                for variant in variants:
                    result = results[variant_key(variant)]
                    result.latency = stats[variant.label]
                    model = pair.teacher if variant.role == "teacher" else pair.student
                    result.flops_per_pass = model_flops(model, result.latency.batch_shapes)
            del pair, variants
    return list(results.values()), parity, latency_source


def variant_key(variant: Variant) -> tuple[str, str, str, str]:
    return variant.role, variant.backend, variant.precision, variant.input_kind


def model_flops(model: nn.Module, batch_shapes: list[tuple[int, int]]) -> int:
    """FLOPs of a pass of ``model`` over batches of (rows, padded length), from its config and head."""
    head = getattr(model, "head_kind", HeadKind.encoder)
    return pass_flops(encoder_of(model).config, head, getattr(model, "num_labels", 0), batch_shapes)


def per_run_ratios(reference: LatencyStats, variant: LatencyStats) -> list[float]:
    return [r / v for r, v in zip(reference.run_model_ms, variant.run_model_ms)]


def add_speedups(variants: list[VariantResult]) -> str:
    """Fill speed-ups vs the first backend's fp32 teacher (the reference) and vs the teacher on each variant's
    backend and precision, each with the theoretical ratio of FLOPs and the fraction of it reached."""
    teachers = [v for v in variants if v.role == "teacher" and v.latency is not None]
    if not teachers:
        return ""
    reference = next((v for v in teachers if v.precision == Precision.fp32.value), teachers[0])
    same_backend = {(v.backend, v.precision): v for v in teachers}
    for variant in variants:
        if variant.latency is None:
            continue
        variant.speedup_runs = per_run_ratios(reference.latency, variant.latency)
        variant.speedup = float(np.median(variant.speedup_runs))
        variant.speedup_of_means = reference.latency.model_ms / variant.latency.model_ms
        if variant.flops_per_pass and reference.flops_per_pass:
            variant.theoretical_speedup = reference.flops_per_pass / variant.flops_per_pass
            variant.fraction_of_limit = variant.speedup / variant.theoretical_speedup
        own = same_backend.get((variant.backend, variant.precision))
        if own is not None:
            variant.speedup_same_backend = float(np.median(per_run_ratios(own.latency, variant.latency)))
            if variant.flops_per_pass and own.flops_per_pass:
                variant.fraction_of_limit_same_backend = \
                    variant.speedup_same_backend / (own.flops_per_pass / variant.flops_per_pass)
    return f"{reference.name} [{reference.backend} {reference.precision}]"


def parity_summary(parity: dict[str, dict]) -> list[str]:
    """One line per export: its parity numbers, fused operators and quantised operators."""
    fields = set(ParityReport.__dataclass_fields__)
    lines = []
    for name, report in parity.items():
        line = f"{name}: {ParityReport(**{k: v for k, v in report.items() if k in fields}).summary()}"
        fused = ", ".join(f"{op} {n}" for op, n in report.get("fused_operators", {}).items())
        quantized = ", ".join(f"{op} {n}" for op, n in report.get("operator_counts", {}).items()
                              if op in ("QAttention", "MatMulInteger", "QEmbedLayerNormalization"))
        lines.append(line + (f"; fused: {fused}" if fused else "") + (f"; int8 ops: {quantized}" if quantized else ""))
    return lines
