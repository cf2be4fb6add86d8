"""The distillation quality table: teacher, labels-only student, distilled student and its ablations.

Rows (same student preset, tokenizer, data, batch size and total optimizer steps):

    teacher          the fine-tuned char teacher itself
    labels-only      the student trained on the gold labels alone (hard cross-entropy), no teacher
    joint            layer-wise + prediction-layer losses summed at every step, with --augment N
    two-stage        TinyBERT's schedule: intermediate stage, then prediction stage, with --augment N
    no-intermediate  prediction stage only (all the steps), with augmentation
    no-augment       the --method (joint or two-stage) without augmentation
    no-alignment     the --method with augmentation, student on the teacher's char tokens (identity alignment)

Every task distils: ``--task msra-ner`` students read the teacher's chars (so its
no-alignment row is the joint row again: leave it out), ``--task nlpcc-dbqa`` augments
the answer side and reports MRR / F1 (``benchmarks/lcqmc_ranking.py`` builds a ranking set).

Each student row is one ``ernie_tiny.distill.task.distill`` run in ``OUT/<row>/``; ``--jobs``
runs that many at once (one torch thread each). A row whose ``OUT/<row>/metrics.json``
was written with the same settings is reused, not rerun (delete the folder to redo it).
Writes ``OUT/quality.json`` and ``OUT/quality.md`` with every requested row.

Example::

    python benchmarks/distill_quality.py --teacher runs/senti/teacher/best --task chnsenticorp \\
        --data-dir ../shared/data/chnsenticorp_htl --steps-intermediate 150 --steps-prediction 250 \\
        --augment 2 --max-len 64 --jobs 2 --out runs/senti/quality
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of benchmarks/
from finished_runs import finished_metrics, settings_difference  # noqa: E402

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROWS = ("labels-only", "joint", "two-stage", "no-intermediate", "no-augment", "no-alignment")
METHODS = ("joint", "two-stage")  # the schedules a distilled row can use
DESCRIPTIONS = {
    "teacher": "fine-tuned char teacher",
    "labels-only": "student on gold labels only (hard CE), same steps",
    "joint": "layer-wise + prediction losses summed at every step, augmentation",
    "two-stage": "intermediate stage, then prediction stage (TinyBERT), augmentation",
    "no-intermediate": "prediction stage only (all steps), augmentation",
    "no-augment": "the method without augmentation",
    "no-alignment": "the method with augmentation, student on the teacher's char tokens",
}


def row_config(row: str, args: argparse.Namespace) -> dict:
    """The DistillConfig fields of one row (plain values: they cross a process boundary)."""
    total = args.steps_intermediate + args.steps_prediction
    base = dict(teacher=args.teacher, task=args.task, data_dir=args.data_dir, out_dir=str(Path(args.out) / row),
                student_preset=args.student_preset, student_tokenizer=args.student_tokenizer,
                steps_intermediate=args.steps_intermediate, steps_prediction=args.steps_prediction,
                optim={"lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "eval_every": args.eval_every,
                       "save_every": args.eval_every},
                max_len=args.max_len, augment=args.augment, limit=args.limit, eval_limit=args.eval_limit, device="cpu",
                augment_cache_dir=str(Path(args.out) / "pos-cache"),
                loss_weights={"temperature": args.temperature, "hard": args.hard_weight,
                              **{name: getattr(args, name) for name in ("feature_balance", "feature_ratio",
                                                                        "feature_warmup")
                                 if getattr(args, name) is not None},
                              **dict.fromkeys(("embedding", "hidden", "attention"), args.feature_weight)})
    schedules = {"joint": {"stage": "joint", "steps_prediction": total}, "two-stage": {"stage": "both"}}
    if row == "labels-only":
        return {**base, "stage": "prediction", "steps_prediction": total, "augment": 0,
                "loss_weights": {"soft": 0.0, "hard": 1.0}}
    if row in schedules:
        return {**base, **schedules[row]}
    if row == "no-intermediate":
        return {**base, "stage": "prediction", "steps_prediction": total}
    if row == "no-augment":
        return {**base, **schedules[args.method], "augment": 0}
    if row == "no-alignment":
        return {**base, **schedules[args.method], "student_tokenizer": "char"}
    raise ValueError(f"unknown row {row!r}")


def finished_row(values: dict) -> dict | None:
    """The metrics.json of a finished run with these settings, else None."""
    metrics = finished_metrics(values["out_dir"])
    if metrics is None or settings_difference(values, metrics.get("config", {})):
        return None
    return metrics


def row_progress(out_dir: str | Path) -> tuple[int, float | None]:
    """The last logged train step of a running row and its loss (0, None before the first log line)."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0, None
    last = (0, None)
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written right now
            continue
        if record.get("split") == "train":
            last = (record["step"], record.get("loss"))
    return last


def row_steps(values: dict) -> int:
    """Optimizer steps a row runs (both stages for TinyBERT's schedule)."""
    return values["steps_intermediate"] + values["steps_prediction"] if values.get("stage") == "both" \
        else values["steps_prediction"]


def run_row(row: str, values: dict, threads: int) -> dict:
    """Run one row in this process (a pool worker) and return its metrics.json."""
    import torch
    from rich.console import Console

    from ernie_tiny.distill.config import DistillConfig
    from ernie_tiny.distill.losses import DistillLossWeights
    from ernie_tiny.distill.task import distill

    torch.set_num_threads(threads)
    out_dir = Path(values["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    config = DistillConfig(**{**values, "loss_weights": DistillLossWeights(**values["loss_weights"])})
    started = time.perf_counter()
    with open(out_dir / "run.log", "w", encoding="utf-8") as log:
        # not interactive: no live bar redrawn into the file (its last redraw was cut mid-number); the
        # messages and the finished bar are whole lines. The parent shows the live progress.
        distill(config, Console(file=log, width=160, force_terminal=False, force_interactive=False))
    metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics["row_wall_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def score(metrics: dict[str, float], main_metric: str) -> str:
    """The main metric x100; ranking adds its F1 (``mrr / f1``), as the ERNIE table does."""
    cell = f"{100 * metrics[main_metric]:.2f}"
    return cell + (f" / {100 * metrics['f1']:.2f}" if main_metric == "mrr" else "")


def table(results: dict[str, dict], main_metric: str) -> str:
    """Markdown: one line per row, teacher first."""
    any_run = next(iter(results.values()))
    teacher = any_run["teacher"]
    shown = "mrr / f1" if main_metric == "mrr" else main_metric
    lines = ["| row | what it is | student tokens / example | steps (int. + pred.) | dev " + shown
             + " | test " + shown + " | retention (test) | train s |",
             "|---|---|---|---|---|---|---|---|",
             f"| teacher | {DESCRIPTIONS['teacher']} ({any_run['presets']['teacher']}) | "
             f"{any_run['mean_train_tokens']['teacher']:.1f} | - | {score(teacher['dev'], main_metric)} | "
             f"{score(teacher['test'], main_metric)} | 100 | - |"]
    for row, m in results.items():
        steps = f"{m['steps'].get('intermediate', 0)} + {m['steps'].get('prediction', 0)}" if "joint" not in m["steps"] \
            else f"{m['steps']['joint']} joint"
        lines.append(f"| {row} | {DESCRIPTIONS[row]} | {m['mean_train_tokens']['student']:.1f} | {steps} | "
                     f"{score(m['student']['dev'], main_metric)} | {score(m['student']['test'], main_metric)} | "
                     f"{m['retention_pct']['test']:.1f}% | {m['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="fine-tuned teacher checkpoint folder")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    parser.add_argument("--method", choices=METHODS, default="joint",
                        help="the schedule the no-augment and no-alignment rows ablate")
    parser.add_argument("--student-preset", default="student-small")
    parser.add_argument("--student-tokenizer", default=None, help="subword tokenizer folder [default: embedded-corpus one]")
    parser.add_argument("--steps-intermediate", type=int, default=150)
    parser.add_argument("--steps-prediction", type=int, default=250)
    parser.add_argument("--augment", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--feature-weight", type=float, default=1.0,
                        help="weight of each embedding / hidden-state / attention term")
    parser.add_argument("--feature-balance", choices=("none", "first_step"), default=None,
                        help="joint rows: first_step scales the layer-wise total to --feature-ratio x the "
                             "prediction loss of the first step; none keeps the weights [default: DistillLossWeights']")
    parser.add_argument("--feature-ratio", type=float, default=None,
                        help="layer-wise / prediction loss at the first joint step [default: DistillLossWeights']")
    parser.add_argument("--feature-warmup", type=float, default=None,
                        help="joint rows: share of the steps over which the layer-wise total ramps from 0 "
                             "[default: DistillLossWeights']")
    parser.add_argument("--hard-weight", type=float, default=0.0, help="gold-label CE weight in distilled rows")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N training rows")
    parser.add_argument("--eval-limit", type=int, default=None, help="score only the first N dev/test rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=2, help="rows run at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per row")
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # spawn: a fresh interpreter per worker, no forked torch thread pools.
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        configs = {row: row_config(row, args) for row in rows}
        reused = {row: m for row in rows if (m := finished_row(configs[row])) is not None}
        futures = {row: pool.submit(run_row, row, configs[row], args.threads) for row in rows if row not in reused}
        results = dict(reused)
        for row in reused:
            print(f"{row} (reused): test {reused[row]['student']['test']}", flush=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[loss]}"), TimeElapsedColumn()) as progress:
            bars = {row: progress.add_task(row, total=row_steps(configs[row]), loss="") for row in futures}
            while len(results) < len(rows):
                for row, future in futures.items():
                    step, loss = row_progress(configs[row]["out_dir"])
                    progress.update(bars[row], completed=step, loss="" if loss is None else f"loss {loss:.4f}")
                    if future.done() and row not in results:
                        results[row] = m = future.result()
                        progress.console.print(f"{row}: test {m['student']['test']} retention "
                                               f"{m['retention_pct']['test']:.1f}% ({m['row_wall_seconds']:.0f} s)")
                time.sleep(2)
        results = {row: results[row] for row in rows}
    wall = time.perf_counter() - started
    main_metric = next(iter(results.values()))["main_metric"]
    summary = {"task": args.task, "main_metric": main_metric, "settings": vars(args), "wall_seconds": round(wall, 1),
               "rows": results}
    (out / "quality.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    any_run = next(iter(results.values()))
    header = (f"## {args.task}: distillation quality\n\nTeacher {any_run['presets']['teacher']}, student "
              f"{any_run['presets']['student']}; batch {args.batch_size}, max_len {args.max_len}, lr {args.lr}, "
              f"augment {args.augment}, temperature {args.temperature}, hard weight {args.hard_weight}, "
              f"feature weight {args.feature_weight}, feature balance {args.feature_balance or 'default'} "
              f"(ratio {args.feature_ratio or 'default'}), feature warm-up {args.feature_warmup or 'default'}; ablations of the {args.method} method; "
              f"{len(rows)} student runs, {args.jobs} at a time, {wall / 60:.1f} min wall.\n\n")
    (out / "quality.md").write_text(header + table(results, main_metric), encoding="utf-8")
    print(header + table(results, main_metric))


if __name__ == "__main__":
    main()
