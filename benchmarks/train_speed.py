"""Training speed of each trainer on one device: examples/s, achieved TFLOP/s, and the time spent waiting for data.

Each trainer runs as the ``ernie-tiny`` command a user would type, for a fixed number of steps,
and the numbers come from the train lines of its ``metrics.jsonl`` (the loop writes
``examples_per_s``, ``tflops`` and ``data_wait`` per log window). The first ``--skip-windows``
windows are left out (CUDA warm-up, kernel selection, torch.compile, the teacher cache's first
fills); the rest are averaged, weighted by nothing: every window has the same number of steps.

    preset real   teacher finetune  ernie-1.0-base on reviews, len 128
                  distill           that teacher -> ernie-tiny (subword), joint stage, len 128
                  pretrain          teacher-small on the embedded corpus, len 128, 8 data workers
    preset micro  the same commands at the micro presets, len 32, 2 data workers, 256 reviews: a dry run

Every trainer runs at batch 128 on the real preset (8 on micro) unless ``--batch-size`` says otherwise.

TFLOP/s counts what :mod:`ernie_tiny.flops` counts (the matmuls; a backward is two
forwards), per process. ``data wait`` is the share of the loop's time spent blocked on the next
step's batches: the loop never waits for the GPU between log lines, so while it waits for data
the GPU drains its queue and then idles (``GPU busy`` = 1 - data wait is an upper bound).

    python benchmarks/train_speed.py --device cuda --preset real --out runs/train-speed
    python benchmarks/train_speed.py --device cpu --preset micro --out runs/train-speed-micro
    python benchmarks/train_speed.py --preset real --padding-only   # what length buckets save, no training
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from ernie_tiny.cli import app
from ernie_tiny.io_utils import atomic_write_text


@dataclass(frozen=True)
class Preset:
    teacher: str
    student: str
    pretrain_model: str
    max_len: int
    steps: int
    log_every: int
    workers: int
    eval_limit: int
    limit: int | None  # training examples of the task (None: all 13,888 reviews)
    batch_size: int  # examples per step of every trainer (--batch-size overrides)


PRESETS = {
    "real": Preset(teacher="ernie-1.0-base", student="ernie-tiny", pretrain_model="teacher-small", max_len=128,
                   steps=120, log_every=10, workers=8, eval_limit=256, limit=None,
                   batch_size=128),
    "micro": Preset(teacher="teacher-micro", student="student-micro", pretrain_model="teacher-micro", max_len=32,
                    steps=12, log_every=3, workers=2, eval_limit=32, limit=256,
                    batch_size=8),
}


def run_command(argv: list[str]) -> float:
    """Run one ``ernie-tiny`` command in this process; its wall seconds."""
    started = time.perf_counter()
    code = typer.main.get_command(app).main(argv, prog_name="ernie-tiny", standalone_mode=False)
    if isinstance(code, int) and code != 0:
        raise SystemExit(f"ernie-tiny {' '.join(argv)} exited with {code}")
    return time.perf_counter() - started


def window_means(run_dir: Path, skip: int) -> dict[str, float]:
    """Mean examples/s, TFLOP/s and data wait over the train lines after the first ``skip``."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    train = [r for r in lines if r.get("split") == "train"]
    kept = train[skip:] or train[-1:]
    return {key: statistics.fmean(r[key] for r in kept if key in r) if any(key in r for r in kept) else float("nan")
            for key in ("examples_per_s", "tflops", "data_wait")} | {"windows": len(kept)}


def padding_table(max_len: int, batch_sizes: tuple[int, ...] = (32, 128)) -> str:
    """Share of padded positions in a reviews epoch, shuffled vs length-bucketed batches (no model runs)."""
    from ernie_tiny.tasks import encode_examples, load_split
    from ernie_tiny.tokenization.char import CharTokenizer
    from ernie_tiny.training.data_order import batch_for_step, bucketed_batch_for_step

    train = load_split("reviews", None, "train")
    items = encode_examples(train, CharTokenizer.from_texts([e.text_a for e in train]), max_len).items
    lengths = [len(item.encoding.input_ids) for item in items]
    indices = list(range(len(items)))
    rows = ["| batch | order | positions computed | real tokens | padding |", "|---|---|---|---|---|"]
    for batch_size in batch_sizes:
        orders = {"shuffled": lambda step: batch_for_step(indices, step, batch_size, 42),
                  "length-buckets": lambda step: bucketed_batch_for_step(indices, lengths, step, batch_size, 42)}
        for name, batch_of in orders.items():
            batches = [batch_of(step) for step in range(-(-len(items) // batch_size))]
            positions = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
            rows.append(f"| {batch_size} | {name} | {positions:,} | {sum(lengths):,} | "
                        f"{1 - sum(lengths) / positions:.1%} |")
    return f"reviews train, {len(items)} examples at max_len {max_len}, one epoch\n\n" + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="real")
    parser.add_argument("--out", type=Path, default=Path("runs/train-speed"))
    parser.add_argument("--batch-size", type=int, default=None, help="Examples per step (default: the preset's).")
    parser.add_argument("--steps", type=int, default=None, help="Steps per trainer (default: the preset's).")
    parser.add_argument("--skip-windows", type=int, default=2, help="Log windows left out at the start.")
    parser.add_argument("--compile", action="store_true", help="Pass --compile to each trainer.")
    parser.add_argument("--only", choices=["finetune", "distill", "pretrain"], action="append",
                        help="Run only these trainers (repeat); distill needs finetune's teacher in --out.")
    parser.add_argument("--padding-only", action="store_true",
                        help="Print the padding share of shuffled vs length-bucketed batches and stop (no training).")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    if args.padding_only:
        print(padding_table(preset.max_len))
        return
    steps = args.steps or preset.steps
    wanted = args.only or ["finetune", "distill", "pretrain"]
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device, "--max-len", str(preset.max_len), "--log-every", str(preset.log_every)]
    common += ["--batch-size", str(args.batch_size or preset.batch_size)]
    common += ["--compile"] if args.compile else []
    task_limit = ["--limit", str(preset.limit)] if preset.limit else []
    teacher_dir, student_dir, pretrain_dir = (args.out / name for name in ("teacher", "student", "pretrain"))
    commands = {
        "finetune": ["teacher", "finetune", "--preset", preset.teacher, "--task", "reviews", "--out", str(teacher_dir),
                     "--max-steps", str(steps), "--eval-every", str(steps), "--eval-limit", str(preset.eval_limit),
                     *task_limit, *common],
        "distill": ["distill", "--teacher", str(teacher_dir / "best"), "--task", "reviews", "--out", str(student_dir),
                    "--student-preset", preset.student, "--stage", "joint", "--steps-prediction", str(steps),
                    "--eval-every", str(steps), "--eval-limit", str(preset.eval_limit), *task_limit, *common],
        "pretrain": ["pretrain", "--preset", preset.pretrain_model, "--out", str(pretrain_dir),
                     "--max-steps", str(steps), "--eval-every", str(steps), "--save-every", str(steps),
                     "--eval-examples", str(preset.eval_limit), "--data-workers", str(preset.workers), *common],
    }
    dirs = {"finetune": teacher_dir, "distill": student_dir, "pretrain": pretrain_dir}
    labels = {"finetune": f"teacher finetune {preset.teacher}",
              "distill": f"distill {preset.teacher} -> {preset.student}",
              "pretrain": f"pretrain {preset.pretrain_model}, {preset.workers} data workers"}
    rows, results = [], []
    for name in wanted:
        if dirs[name].exists():
            shutil.rmtree(dirs[name])
        print(f"$ ernie-tiny {' '.join(commands[name])}", flush=True)
        wall = run_command(commands[name])
        means = window_means(dirs[name], args.skip_windows)
        rows.append((labels[name], means, wall))
        results.append({"trainer": labels[name], "kind": name, "wall_s": round(wall, 1),
                        **{key: means[key] for key in ("examples_per_s", "tflops", "data_wait", "windows")}})
    table = ["| trainer | examples/s | TFLOP/s | data wait | GPU busy (<=) | windows | wall s |",
             "|---|---|---|---|---|---|---|"]
    for label, means, wall in rows:
        table.append(f"| {label} | {means['examples_per_s']:,.0f} | {means['tflops']:.2f} | "
                     f"{means['data_wait']:.1%} | {1 - means['data_wait']:.1%} | {means['windows']} | {wall:.0f} |")
    text = (f"Training speed, preset {args.preset}, device {args.device}, batch {args.batch_size or preset.batch_size}, "
            f"len {preset.max_len}, {steps} steps per trainer, "
            f"first {args.skip_windows} log windows left out\n\n" + "\n".join(table) + "\n")
    atomic_write_text(args.out / "train_speed.md", text)
    atomic_write_text(args.out / "train_speed.json", json.dumps(
        {"preset": args.preset, "device": args.device, "steps": steps, "skip_windows": args.skip_windows,
         "rows": results}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
