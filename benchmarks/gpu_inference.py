"""Every GPU inference figure of issue 23 in one markdown table: teacher vs student, model and end to end.

    python benchmarks/gpu_inference.py --device cuda --preset real          # on the GPU host
    python benchmarks/gpu_inference.py --device cpu --preset micro          # a dry run, < 1 min on a CPU

Random weights at the teacher / student shapes (``real``: ``ernie-1.0-base`` vs ``ernie-tiny``;
``micro``: ``teacher-micro`` vs ``student-micro``; speed does not depend on the weights), real
LCQMC dev pairs (``--data-dir``), the teacher fed by a char tokenizer of those texts, the
student by its subword tokenizer (``--student-tokenizer``). For each precision (fp32, fp16,
bf16), path (eager; on CUDA also CUDA graphs) and batch size (1, 8, 32), both models run
through :class:`ernie_tiny.deploy.torch_runner.TorchRunner` (length buckets of 16, batch
buckets) on the same texts, ``--runs`` times, teacher and student taking turns. Per batch:

    model ms       runner.run on padded int64 arrays: to the device, forward (or graph replay), outputs
                   back to the host (one synchronisation)
    tokenize ms    encode_batch + pad_to_arrays, on the host, single-threaded
    end to end ms  tokenize + model
    pipelined ms   batch 8 and 32 (on CUDA with graphs only): a stream of --pipeline-texts pairs (the dev
                   pairs cycled) tokenized by --tokenizer-workers forked processes (``TokenizerPool``, what
                   ``predict --tokenizer-workers`` runs) while the model runs the batches before: wall ms per
                   batch, tokenization included
    x              teacher / student at the same precision and path

Every bucket the timed batches reach is run (and captured) once before timing. Prints the
table and writes ``gpu_inference.json`` and ``gpu_inference.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ernie_tiny.tasks import get_task, load_split
from ernie_tiny.deploy.torch_runner import RunnerConfig, TorchPrecision, TorchRunner, bucket_for  # noqa: E402
from ernie_tiny.model import ErnieConfig, build_model  # noqa: E402
from ernie_tiny.tokenization.char import CharTokenizer  # noqa: E402
from ernie_tiny.tokenization.encoding import Tokenizer, pad_to_arrays  # noqa: E402
from ernie_tiny.tokenization.load import load_tokenizer  # noqa: E402
from ernie_tiny.tokenization.workers import TokenizerPool, default_workers  # noqa: E402

PRESETS = {"real": ("ernie-1.0-base", "ernie-tiny"), "micro": ("teacher-micro", "student-micro")}
BATCH_SIZES = (1, 8, 32)
DTYPE_OF = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_DATA = Path(os.environ.get("ERNIE_TINY_DATA", ROOT.parent / "shared" / "data")) / "lcqmc"
DEFAULT_TOKENIZER = Path(os.environ.get("ERNIE_TINY_CACHE", Path.home() / ".cache" / "ernie-tiny")) / \
    "subword-embedded-70000"
Pair = tuple[str, str | None]


def random_model(preset: str, tokenizer: Tokenizer) -> torch.nn.Module:
    """A pair classifier at ``preset``'s shape with random weights, its vocabulary widened to the tokenizer's."""
    base = ErnieConfig.from_preset(preset)
    torch.manual_seed(0)
    return build_model(replace(base, vocab_size=max(base.vocab_size, tokenizer.vocab_size)),
                       "sequence_classification", 2).eval()


def tokenize_batches(tokenizer: Tokenizer, pairs: list[Pair], batch_size: int, max_len: int,
                     runs: int) -> tuple[list[dict[str, np.ndarray]], float]:
    """The padded arrays of every batch, and the mean tokenize ms per batch (best pass of ``runs``)."""
    batches = [pairs[start:start + batch_size] for start in range(0, len(pairs), batch_size)]
    passes = []
    for batch in batches:  # untimed: dictionaries load and caches fill once per process
        tokenizer.encode_batch(batch, max_len=max_len)
    for _ in range(runs):
        started = time.perf_counter()
        arrays = [pad_to_arrays(tokenizer.encode_batch(batch, max_len=max_len), pad_id=tokenizer.pad_id)
                  for batch in batches]
        passes.append((time.perf_counter() - started) * 1000 / len(batches))
    return arrays, float(np.median(passes))


def median_pass_ms(roles: list[str], one_pass: Callable[[str], int], runs: int) -> dict[str, float]:
    """Ms per batch of each role: median over ``runs`` passes, the roles taking turns (order reversed every
    other pass); ``one_pass(role)`` runs one pass and returns how many batches it ran."""
    per_pass: dict[str, list[float]] = {role: [] for role in roles}
    for run in range(runs):
        for role in roles if run % 2 == 0 else roles[::-1]:
            started = time.perf_counter()
            batches = one_pass(role)
            per_pass[role].append((time.perf_counter() - started) * 1000 / batches)
    return {role: float(np.median(values)) for role, values in per_pass.items()}


def time_runners(runners: dict[str, TorchRunner], arrays: dict[str, list[dict[str, np.ndarray]]],
                 runs: int) -> dict[str, float]:
    """Mean model ms per batch of each role: median over ``runs`` passes, the roles taking turns per pass."""
    for role, runner in runners.items():  # every bucket these batches reach: run (and capture) it now
        shapes = {(bucket_for(a["input_ids"].shape[0], runner.batch_sizes),
                   bucket_for(a["input_ids"].shape[1], runner.lengths)) for a in arrays[role]}
        runner.warm_up(sorted(shapes))

    def one_pass(role: str) -> int:
        for batch in arrays[role]:
            runners[role].run(batch)
        return len(arrays[role])

    return median_pass_ms(list(runners), one_pass, runs)


PIPELINED_BATCH_SIZES = (8, 32)


def time_pipelined(runners: dict[str, TorchRunner], pools: dict[str, TokenizerPool], pairs: list[Pair],
                   batch_size: int, runs: int) -> dict[str, float]:
    """Wall ms per batch of each role when its pool tokenizes the stream while its model runs: median of ``runs``
    passes, the roles taking turns per pass (each pass starts with an empty pipeline, so its first batches wait)."""
    batches = [pairs[start:start + batch_size] for start in range(0, len(pairs), batch_size)]

    def one_pass(role: str) -> int:
        for batch in pools[role].map(batches):
            runners[role].run(batch.arrays)
        return len(batches)

    return median_pass_ms(list(runners), one_pass, runs)


def paths_for(device: str) -> list[tuple[str, bool]]:
    return [("eager", False), ("CUDA graphs", True)] if device.startswith("cuda") else [("eager", False)]


def measure(args: argparse.Namespace, pairs: list[Pair], tokenizers: dict[str, Tokenizer],
            models: dict[str, torch.nn.Module], pools: dict[str, TokenizerPool]) -> list[dict]:
    rows = []
    tokenized = {(role, b): tokenize_batches(tokenizers[role], pairs, b, args.max_len, args.runs)
                 for b in BATCH_SIZES for role in tokenizers}
    stream = [pairs[i % len(pairs)] for i in range(args.pipeline_texts)]
    for precision in args.precisions:
        for path, graphs in paths_for(args.device):
            config = RunnerConfig(device=args.device, precision=TorchPrecision(precision), cuda_graphs=graphs,
                                  max_len=args.max_len)
            runners = {role: TorchRunner(copy.deepcopy(model), ("logits",), config) for role, model in models.items()}
            for batch_size in BATCH_SIZES:
                arrays = {role: tokenized[role, batch_size][0] for role in runners}
                model_ms = time_runners(runners, arrays, args.runs)
                tokenize_ms = {role: tokenized[role, batch_size][1] for role in runners}
                e2e = {role: model_ms[role] + tokenize_ms[role] for role in runners}
                row = {"precision": precision, "path": path, "batch": batch_size,
                       "teacher_model_ms": model_ms["teacher"], "student_model_ms": model_ms["student"],
                       "model_x": model_ms["teacher"] / model_ms["student"],
                       "teacher_tokenize_ms": tokenize_ms["teacher"], "student_tokenize_ms": tokenize_ms["student"],
                       "teacher_e2e_ms": e2e["teacher"], "student_e2e_ms": e2e["student"],
                       "e2e_x": e2e["teacher"] / e2e["student"],
                       "student_padded_tokens": float(np.mean([a["input_ids"].size for a in arrays["student"]])),
                       "teacher_padded_tokens": float(np.mean([a["input_ids"].size for a in arrays["teacher"]]))}
                # pipelined on the path a GPU user runs (graphs; eager off CUDA): the stage's time stays in bounds
                if batch_size in PIPELINED_BATCH_SIZES and (graphs or not args.device.startswith("cuda")):
                    pipelined = time_pipelined(runners, pools, stream, batch_size, args.runs)
                    row |= {"teacher_pipelined_ms": pipelined["teacher"], "student_pipelined_ms": pipelined["student"],
                            "pipelined_x": pipelined["teacher"] / pipelined["student"],
                            "tokenizer_workers": args.tokenizer_workers}
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                      flush=True)
            del runners
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return rows


def diagnose_half_precision(args: argparse.Namespace, arrays: list[dict[str, np.ndarray]],
                            teacher: torch.nn.Module) -> list[dict]:
    """Issue 23's "fp16 slower than fp32": the bench's old path (``torch_infer``, dynamic padding, eager) on the
    teacher at batch 8, with torch's default SDPA order (cuDNN attention first on sm90+) and with the encoder's
    flash / memory-efficient / math; first pass (every padded length new) and the median of later passes."""
    import ernie_tiny.model as model_module
    from torch.nn.attention import SDPBackend

    from ernie_tiny.bench.torch_variants import torch_infer

    ours = list(model_module.CUDA_SDPA_BACKENDS)
    default_order = [SDPBackend.CUDNN_ATTENTION] + ours
    device = torch.device(args.device)
    rows = []
    try:
        for precision in ("fp32", "fp16"):
            model = copy.deepcopy(teacher).to(device=device, dtype=DTYPE_OF[precision])
            infer = torch_infer(model, device)
            for label, backends in (("flash, memory-efficient, math (the encoder's)", ours),
                                    ("torch's default (cuDNN attention first on sm90+)", default_order)):
                model_module.CUDA_SDPA_BACKENDS = backends
                passes = []
                for _ in range(1 + args.runs):
                    started = time.perf_counter()
                    for batch in arrays:
                        infer(batch)
                    passes.append((time.perf_counter() - started) * 1000 / len(arrays))
                rows.append({"precision": precision, "sdpa": label, "first_pass_ms": passes[0],
                             "later_passes_ms": float(np.median(passes[1:]))})
                print(json.dumps(rows[-1]), flush=True)
            del model
    finally:
        model_module.CUDA_SDPA_BACKENDS = ours
    return rows


def diagnosis_table(rows: list[dict]) -> str:
    lines = ["Why half precision was slower (teacher, batch 8, the bench's old path: eager, dynamic padding, "
             "ms per batch):", "", "| precision | SDPA backends allowed | first pass (new shapes) | later passes |",
             "|---|---|---:|---:|"]
    lines += [f"| {r['precision']} | {r['sdpa']} | {ms(r['first_pass_ms'])} | {ms(r['later_passes_ms'])} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| precision | path | batch | teacher model ms | student model ms | model x | teacher tokenize ms | "
             "student tokenize ms | teacher end to end ms | student end to end ms | end-to-end x | "
             "teacher pipelined ms | student pipelined ms | pipelined x |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        pipelined = (f"{ms(row['teacher_pipelined_ms'])} | {ms(row['student_pipelined_ms'])} | "
                     f"{row['pipelined_x']:.1f}x" if "pipelined_x" in row else "— | — | —")
        lines.append(f"| {row['precision']} | {row['path']} | {row['batch']} | {ms(row['teacher_model_ms'])} | "
                     f"{ms(row['student_model_ms'])} | {row['model_x']:.1f}x | {ms(row['teacher_tokenize_ms'])} | "
                     f"{ms(row['student_tokenize_ms'])} | {ms(row['teacher_e2e_ms'])} | {ms(row['student_e2e_ms'])} | "
                     f"{row['e2e_x']:.1f}x | {pipelined} |")
    return "\n".join(lines) + "\n"


def target_lines(rows: list[dict]) -> list[str]:
    """Issue 23's GPU targets, read off the fastest path and precision of the student."""
    best = min(rows, key=lambda r: (r["batch"] != 32, r["student_model_ms"]))
    chosen = [r for r in rows if (r["precision"], r["path"]) == (best["precision"], best["path"])]
    by_batch = {r["batch"]: r for r in chosen}
    lines = [f"Targets, at the student's fastest setting ({best['precision']}, {best['path']}):"]
    if 1 in by_batch:
        lines.append(f"- student model ms at batch 1: {ms(by_batch[1]['student_model_ms'])} (target <= 0.3)")
    if 32 in by_batch:
        lines.append(f"- student model ms at batch 32: {ms(by_batch[32]['student_model_ms'])} (target <= 0.5)")
    lines.append("- model x at batch " + ", ".join(f"{b}: {r['model_x']:.1f}x" for b, r in by_batch.items())
                 + " (target >= 3.3x each)")
    lines.append("- end-to-end x at batch " + ", ".join(f"{b}: {r['e2e_x']:.1f}x" for b, r in by_batch.items()
                                                       if b in (8, 32)) + " (target >= 3x at 8 and 32)")
    piped = {b: r for b, r in by_batch.items() if "pipelined_x" in r}
    if piped:
        workers = next(iter(piped.values()))["tokenizer_workers"]
        lines.append(f"- end-to-end x with {workers} tokenizer processes beside the model (pipelined) at batch "
                     + ", ".join(f"{b}: {r['pipelined_x']:.1f}x" for b, r in piped.items()))
    return lines


def environment(device: str) -> dict:
    described = {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_average": [round(x, 2) for x in os.getloadavg()]}
    if device.startswith("cuda"):
        described |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                      "cudnn": torch.backends.cudnn.version()}
    return described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (a dry run)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="real")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="an LCQMC folder with dev.tsv")
    parser.add_argument("--student-tokenizer", type=Path, default=DEFAULT_TOKENIZER,
                        help="the student's subword tokenizer folder")
    parser.add_argument("--texts", type=int, help="dev pairs timed, the first N (default: 256 real, 64 micro)")
    parser.add_argument("--runs", type=int, help="timed passes; the median pass is reported (default: 3 real, "
                                                 "2 micro)")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--precisions", default="fp32,fp16,bf16", type=lambda text: text.split(","))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tokenization is single-threaded)")
    parser.add_argument("--tokenizer-workers", type=int, default=default_workers(),
                        help="tokenizer processes of the pipelined rows (default: cores - 2, at most 8; 0: in process)")
    parser.add_argument("--pipeline-texts", type=int, help="pairs streamed through each pipelined pass, the dev pairs "
                                                           "cycled (default: 4096 real, 256 micro)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_inference")
    args = parser.parse_args()
    args.pipeline_texts = args.pipeline_texts or (4096 if args.preset == "real" else 256)
    if args.tokenizer_workers < 0 or args.pipeline_texts < 1:
        raise SystemExit("--tokenizer-workers must be >= 0 and --pipeline-texts >= 1")
    args.texts = args.texts or (256 if args.preset == "real" else 64)
    args.runs = args.runs or (3 if args.preset == "real" else 2)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
    if not (args.data_dir / "dev.tsv").is_file():
        raise SystemExit(f"{args.data_dir}: no dev.tsv (give --data-dir, an LCQMC folder)")
    if not (args.student_tokenizer / "tokenizer_config.json").is_file():
        raise SystemExit(f"{args.student_tokenizer}: no tokenizer_config.json (give --student-tokenizer, the "
                         "student's subword tokenizer folder; `python benchmarks/tokenizer_speed.py` trains the default)")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    examples = load_split(get_task("lcqmc"), args.data_dir, "dev")[:args.texts]
    pairs = [(e.text_a, e.text_b) for e in examples]
    teacher_tokenizer = CharTokenizer.from_texts([t for pair in pairs for t in pair if t])
    tokenizers = {"teacher": teacher_tokenizer, "student": load_tokenizer(args.student_tokenizer)}
    teacher_preset, student_preset = PRESETS[args.preset]
    models = {"teacher": random_model(teacher_preset, tokenizers["teacher"]),
              "student": random_model(student_preset, tokenizers["student"])}
    for tokenizer in tokenizers.values():  # dictionaries loaded and caches warm before the pools copy them
        tokenizer.encode_batch(pairs, max_len=args.max_len)
    # the pools fork before any model reaches the GPU: a child of a process with a CUDA context must not touch it
    with TokenizerPool(tokenizers["teacher"], args.tokenizer_workers, args.max_len, batches_per_task=4) as teacher_pool, \
            TokenizerPool(tokenizers["student"], args.tokenizer_workers, args.max_len, batches_per_task=4) as student_pool:
        rows = measure(args, pairs, tokenizers, models, {"teacher": teacher_pool, "student": student_pool})
    diagnosis = []
    if args.device.startswith("cuda"):
        teacher_arrays = [pad_to_arrays(tokenizers["teacher"].encode_batch(pairs[start:start + 8], max_len=args.max_len),
                                        pad_id=tokenizers["teacher"].pad_id) for start in range(0, len(pairs), 8)]
        diagnosis = diagnose_half_precision(args, teacher_arrays, models["teacher"])
    env = environment(args.device)
    header = (f"`{' '.join([Path(sys.executable).name, *sys.argv])}`, "
              f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}, "
              f"{env.get('gpu', 'CPU')} (torch {env['torch']}, {env['cpus']} CPUs, load average at the end "
              f"{env['load_average']}); {teacher_preset} vs {student_preset}, random weights; LCQMC dev, first "
              f"{len(pairs)} pairs, max_len {args.max_len}; median of {args.runs} passes; pipelined: "
              f"{args.pipeline_texts} pairs, {args.tokenizer_workers} tokenizer processes; "
              f"{time.perf_counter() - started:.0f} s in all")
    table = markdown_table(rows)
    text = f"{header}\n\n{table}\n" + "\n".join(target_lines(rows)) + "\n"
    if diagnosis:
        text += "\n" + diagnosis_table(diagnosis)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_inference.md").write_text(text, encoding="utf-8")
    (args.out / "gpu_inference.json").write_text(json.dumps({"header": header, "environment": env, "rows": rows,
                                                             "half_precision_diagnosis": diagnosis,
                                                             "args": {k: str(v) for k, v in vars(args).items()}},
                                                            indent=1), encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
