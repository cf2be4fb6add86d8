"""Reproduce the ERNIE-tiny latency table on this machine at the real model shapes.

Random weights at ``ernie-1.0-base`` (12 layers, 768 hidden, char input) and ``ernie-tiny``
(3 layers, 1024 hidden, subword input), real dev texts, torch fp32 and onnxruntime
fp32 / int8 (fused graph) side by side in one interleaved run per task. Prints the three
ratios the README reports:

    same backend (torch fp32): student on its subword sequences vs the teacher on chars
    same backend, student fed the teacher's char-length sequences (layer count and width alone)
    onnxruntime int8 student vs torch fp32 teacher

Usage (from the repository root; 5-15 min per task on 2 idle cores, exports included)::

    python benchmarks/ernie_tiny_table.py --student-tokenizer runs/subword --tasks chnsenticorp lcqmc \
        --batch-size 8 --runs 10 --latency-examples 64 --out runs/benchmarks
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Before torch loads: idle OpenMP threads must not spin. On a shared machine spinning threads made
# torch's 2-thread timings up to 7x slower (see ernie_tiny.bench.environment.spinning_warning), while
# onnxruntime's sessions here never spin; without this the torch-vs-onnxruntime ratios are unfair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ernie_tiny.bench.benchmark import BenchConfig, BenchResult, resolve_per_task, run_benchmark
from ernie_tiny.bench.report import caption, markdown_table, write_report
from ernie_tiny.io_utils import atomic_write_json

DEFAULT_DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


HEADLINES = {  # name -> (role, backend, precision, input), each vs the torch fp32 teacher
    "torch fp32: student (subword) vs teacher (chars)": ("student", "torch", "fp32", "own"),
    "torch fp32: student on the teacher's char-length input vs teacher": ("student", "torch", "fp32", "char-length"),
    "onnxruntime int8 student vs torch fp32 teacher": ("student", "onnxruntime", "int8", "own"),
    "onnxruntime fp32 student vs torch fp32 teacher": ("student", "onnxruntime", "fp32", "own"),
}


def ratios(result: BenchResult) -> dict[str, dict[str, float]]:
    """The headline speed-ups: median of per-run ratios, their range, and the ratio of mean latencies."""
    rows = {v.key: v for v in result.variants if v.latency is not None}
    found = {}
    for name, key in HEADLINES.items():
        if key in rows:
            variant = rows[key]
            found[name] = {"median_of_runs": variant.speedup, "min_run": min(variant.speedup_runs),
                           "max_run": max(variant.speedup_runs), "of_means": variant.speedup_of_means}
    ort_student = rows.get(("student", "onnxruntime", "fp32", "own"))
    if ort_student is not None:
        found["onnxruntime fp32: student vs teacher (same backend)"] = {
            "median_of_runs": ort_student.speedup_same_backend}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student-tokenizer", type=Path, required=True, help="subword tokenizer folder")
    parser.add_argument("--teacher-tokenizer", type=Path, help="char vocab folder [default: built from the texts]")
    parser.add_argument("--tasks", nargs="+", default=["chnsenticorp", "lcqmc"])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--latency-examples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--sort-by-length", action="store_true")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()

    summary = {}
    for task, data_dir in zip(args.tasks, resolve_per_task([args.data_root], args.tasks, "data")):
        config = BenchConfig(tasks=(task,), data_dirs=(data_dir,), synthetic=True, backends=tuple(args.backends),
                             student_tokenizer=args.student_tokenizer, teacher_tokenizer=args.teacher_tokenizer,
                             batch_size=args.batch_size, runs=args.runs, latency_examples=args.latency_examples,
                             threads=args.threads, sort_by_length=args.sort_by_length)
        result = run_benchmark(config)
        out = args.out / f"{task}-b{args.batch_size}{'-sorted' if args.sort_by_length else ''}"
        write_report(result, out)
        print(markdown_table(result) + "\n" + caption(result))
        summary[task] = ratios(result)
        for name, value in summary[task].items():
            print(f"{task}: {name}: {value['median_of_runs']:.2f}x (median of per-run ratios)")
    atomic_write_json(args.out / "ratios.json", summary)


if __name__ == "__main__":
    main()
