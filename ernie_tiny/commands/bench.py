"""``ernie-tiny bench``: the CLI over :mod:`ernie_tiny.bench.benchmark` and :mod:`ernie_tiny.bench.report`.

torch is imported inside the command, so that loading the CLI for ``ernie-tiny predict`` stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ernie_tiny.bench.latency import Backend
from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import DEFAULT_DEVICE, DeviceOpt, TaskName, MAX_THREADS
from ernie_tiny.deploy.onnx_session import Device, DeviceUnavailableError
from ernie_tiny.devices import resolve_device


def bench(
    task: Annotated[list[TaskName], typer.Option("--task", help="Task(s); several give the Average column.")],
    teacher: Annotated[Optional[list[Path]], typer.Option("--teacher", exists=True, file_okay=False, help="Teacher checkpoint per task, or one "
                                                          "folder with a sub-folder per task.")] = None,
    student: Annotated[Optional[list[Path]], typer.Option("--student", exists=True, file_okay=False, help="Student checkpoint per task, or one "
                                                          "folder with a sub-folder per task.")] = None,
    data_dir: Annotated[Optional[list[Path]], typer.Option("--data-dir", exists=True, file_okay=False, help="dev.tsv folder per task, or one "
                                                           "root holding them (e.g. ../shared/data).")] = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    backend: Annotated[Optional[list[Backend]], typer.Option("--backend", help="torch and/or onnxruntime "
                                                             "(repeat for both) (default: torch).")] = None,
    max_len: Annotated[int, typer.Option(min=3, help="Truncation, in each model's own tokens.")] = 128,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per batch.")] = 8,
    runs: Annotated[int, typer.Option(min=1, help="Timed passes over the texts.")] = 10,
    warmup_batches: Annotated[int, typer.Option(min=0, help="Untimed batches per variant first.")] = 3,
    threads: Annotated[Optional[int], typer.Option(min=1, max=MAX_THREADS, help="torch threads = onnxruntime intra-op threads "
                                                        "(default: torch's).")] = None,
    latency_examples: Annotated[Optional[int], typer.Option(min=1, help="Time the first N dev texts (default: all).")] = None,
    accuracy_examples: Annotated[Optional[int], typer.Option(min=1, help="Score the first N dev examples "
                                                                  "(default: all).")] = None,
    sort_by_length: Annotated[bool, typer.Option("--sort-by-length", help="Batch length-sorted texts "
                                                 "(less padding) instead of dataset order.")] = False,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Random weights at the preset shapes, real dev "
                                            "texts: latency without checkpoints.")] = False,
    teacher_preset: Annotated[str, typer.Option(help="--synthetic teacher shape.")] = "ernie-1.0-base",
    student_preset: Annotated[str, typer.Option(help="--synthetic student shape.")] = "ernie-tiny",
    teacher_tokenizer: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="--synthetic: char vocab folder "
                                                              "(default: built from the dev texts).")] = None,
    student_tokenizer: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="--synthetic: the student's subword "
                                                              "tokenizer folder (required).")] = None,
    char_length: Annotated[bool, typer.Option("--char-length/--no-char-length", help="Also time the student on "
                                              "the teacher's char sequences.")] = True,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs/--no-cuda-graphs", help="--device cuda: torch rows "
                                              "replay one CUDA graph per (batch, length) bucket, or run eager.")] = True,
    work_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Keep the ONNX exports here (default: temp).")] = None,
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="bench.md, bench.json, bench.png go here.")] = Path("runs/bench"),
) -> None:
    """Dev accuracy and latency of teacher vs student: the ERNIE-tiny table, measured here.

    Every row also gets the speed-up its shapes allow (torch teacher FLOPs / its FLOPs at the batch shapes it
    ran) and the fraction of it measured; onnxruntime runs the teacher at each precision the student runs.
    On --device cuda the torch rows are fp32, fp16 and bf16 through the deployed runner (length buckets, CUDA graphs).

    Example: ernie-tiny bench --synthetic --task lcqmc --data-dir ../shared/data/lcqmc --student-tokenizer runs/subword --backend torch --backend onnxruntime --runs 10
    """
    console = Console()
    with command_errors(also=(DeviceUnavailableError,)):
        backends = tuple(backend or [Backend.torch])
        device = Device(resolve_device(device, runtimes=[b.value for b in backends], any_gpu=False).split(":")[0])

        from ernie_tiny.bench.benchmark import BenchConfig, BenchError, resolve_per_task, run_benchmark
        from ernie_tiny.bench.report import caption, markdown_table, write_report

        tasks = [t.value for t in task]
        config = BenchConfig(
            tasks=tuple(tasks), data_dirs=tuple(resolve_per_task(data_dir or [], tasks, "data")),
            teachers=() if synthetic else tuple(resolve_per_task(teacher or [], tasks, "teacher")),
            students=() if synthetic else tuple(resolve_per_task(student or [], tasks, "student")),
            device=device, backends=backends, max_len=max_len, batch_size=batch_size,
            runs=runs, warmup_batches=warmup_batches, threads=threads, latency_examples=latency_examples,
            accuracy_examples=accuracy_examples, sort_by_length=sort_by_length, synthetic=synthetic,
            teacher_preset=teacher_preset, student_preset=student_preset, teacher_tokenizer=teacher_tokenizer,
            student_tokenizer=student_tokenizer, char_length_student=char_length, work_dir=work_dir,
            cuda_graphs=cuda_graphs)
        if not synthetic and None in config.teachers + config.students:
            raise BenchError("give --teacher and --student checkpoints (one per task), or --synthetic")
        result = run_benchmark(config, log=lambda line: console.print(line, highlight=False, markup=False))
        paths = write_report(result, out)
    console.print(markdown_table(result) + "\n" + caption(result), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}", highlight=False, markup=False)
