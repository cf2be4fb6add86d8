"""Does pretraining help? The same teacher fine-tuned from random weights and from pretrained checkpoints.

Every (task, init, seed) cell is one ``teacher finetune`` run with the same preset, steps, learning
rate, batch size, max length and data; only the starting weights differ:

    scratch          random init of ``--preset``, char vocabulary from the task's train texts
    NAME=CKPT        a pretrained checkpoint (``ernie-tiny pretrain``'s ``best/``), its char
                     vocabulary rebuilt from the task's train texts with the known rows kept
                     (``--vocab-from-train``), so both columns read the same characters

Tasks (``--tasks``, comma-separated): ``reviews`` (embedded), ``chnsenticorp_htl``, ``lcqmc``,
``waimai_10k`` and ``ocnli`` (fine-tuned as ``--task xnli``), the folders of ``--data-root``.

A cell whose ``OUT/<task>/<init>-s<seed>/metrics.json`` exists with the same settings is reused;
one with a ``last.pt`` but no ``metrics.json`` (a run cut short) resumes. So the whole table
continues where it stopped: rerun the same command. Writes ``OUT/pipeline.json``,
``OUT/pipeline.md`` (dev and test accuracy per cell, the average, and each init's gain over
scratch) and ``OUT/pipeline.png``.

Example (the README's table)::

    python benchmarks/pretrained_pipeline.py --data-root ../shared/data \\
        --inits pretrained=runs/pretrain/teacher-small-mlm/best --steps 300 --lr 5e-4 \\
        --max-len 64 --out runs/pipeline
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of benchmarks/
from finished_runs import finished_metrics, settings_difference  # noqa: E402

# folder under --data-root -> the finetune task that reads it (None: embedded, no folder)
TASK_FOLDERS = {"reviews": ("reviews", None), "chnsenticorp_htl": ("chnsenticorp", "chnsenticorp_htl"),
                "lcqmc": ("lcqmc", "lcqmc"), "waimai_10k": ("chnsenticorp", "waimai_10k"),
                "ocnli": ("xnli", "ocnli")}
SCRATCH = "scratch"


@dataclass(frozen=True)
class Cell:
    table_task: str  # the column name: a key of TASK_FOLDERS
    init_name: str  # "scratch" or the name given in --inits
    init_path: str | None  # the checkpoint, None for scratch
    seed: int

    def out_dir(self, root: Path) -> Path:
        return root / self.table_task / f"{self.init_name}-s{self.seed}"


def finetune_values(cell: Cell, args: argparse.Namespace, task_folders: dict = TASK_FOLDERS,
                    vocab_from_train: bool = True) -> dict:
    """The FinetuneConfig fields of one cell (as a dict: compared with a finished run's saved config).

    ``task_folders`` maps the cell's table task to (task, data folder); ``vocab_from_train=False`` keeps a
    pretrained init's char vocabulary unchanged (a char student that reads it must find the same ids).
    """
    task, folder = task_folders[cell.table_task]
    values = {"task": task, "out_dir": str(cell.out_dir(Path(args.out))),
              "data_dir": None if folder is None else str(Path(args.data_root) / folder),
              "max_len": args.max_len, "max_steps": args.steps, "limit": args.limit, "eval_limit": args.eval_limit,
              "device": "cpu",
              "optim": {"lr": args.lr, "batch_size": args.batch_size, "seed": cell.seed,
                        "eval_every": args.eval_every, "save_every": args.eval_every}}
    if cell.init_path is None:
        return {**values, "preset": args.preset}
    return {**values, "init": cell.init_path, "vocab_from_train": vocab_from_train}


def finished_cell(values: dict) -> dict | None:
    """A finished cell's metrics.json when it was run with these settings, else None."""
    metrics = finished_metrics(values["out_dir"])
    if metrics is None:
        return None
    saved = dict(metrics.get("config", {}))
    examples = metrics.get("examples", {})
    if saved.get("eval_limit") is not None and all(examples.get(split, saved["eval_limit"]) < saved["eval_limit"]
                                                   for split in ("dev", "test")):
        saved["eval_limit"] = None  # a limit above both split sizes scored every example: the same as no limit
    return None if settings_difference(values, saved) else metrics


def run_in_folder(values: dict, build_config: Callable[..., object], run: Callable[[object, object], None],
                  wall_key: str, recorded: dict | None = None) -> dict:
    """Run one stage in this process, resumed when cut short; its log goes to OUT_DIR/run.log.

    ``build_config(**values, resume=...)`` makes the stage's config and ``run(config, console)`` runs
    it; the stage's metrics.json gets its wall seconds (``wall_key``), the load average before/after
    and the ``recorded`` fields, in one write.
    """
    from rich.console import Console

    out_dir = Path(values["out_dir"])
    resume = (out_dir / "last.pt").is_file()
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(out_dir / "run.log", "a", encoding="utf-8") as log:
        console = Console(file=log, width=160, force_terminal=False, force_interactive=False)
        run(build_config(**{**values, "resume": resume}), console)
    path = out_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics[wall_key] = round(time.perf_counter() - started, 1)
    metrics["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    metrics.update(recorded or {})
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    return metrics


def run_cell(values: dict, threads: int) -> dict:
    """Fine-tune one cell in this process (see :func:`run_in_folder`)."""
    import torch

    from ernie_tiny.finetune import FinetuneConfig, finetune

    torch.set_num_threads(threads)
    return run_in_folder(values, lambda **v: FinetuneConfig.from_dict(v), finetune, "cell_wall_seconds")


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarise(cells: list[Cell], results: dict[Cell, dict], tasks: list[str], inits: list[str]) -> dict:
    """Per task and init: mean dev/test accuracy over seeds (x100), and the per-init average over tasks."""
    summary: dict = {"tasks": tasks, "inits": inits, "cells": {}, "average": {}}
    for task in tasks:
        for init in inits:
            done = [results[c] for c in cells if c.table_task == task and c.init_name == init and c in results]
            if not done:
                continue
            summary["cells"][f"{task}/{init}"] = {
                "dev": 100 * mean([m["dev"]["accuracy"] for m in done]),
                "test": 100 * mean([m["test"]["accuracy"] for m in done]),
                "seeds": len(done), "train_seconds": mean([m["train_seconds"] for m in done])}
    for init in inits:
        scores = [summary["cells"].get(f"{task}/{init}") for task in tasks]
        if all(scores):
            summary["average"][init] = {split: mean([s[split] for s in scores]) for split in ("dev", "test")}
    return summary


def markdown(summary: dict) -> str:
    """Test accuracy per task (dev in brackets), an Average column and the gain over scratch."""
    tasks, inits = summary["tasks"], summary["inits"]
    lines = ["| init | " + " | ".join(tasks) + " | average | gain over scratch (test) |",
             "|---|" + "---|" * (len(tasks) + 2)]
    for init in inits:
        row = [init]
        for task in tasks:
            cell = summary["cells"].get(f"{task}/{init}")
            row.append("-" if cell is None else f"{cell['test']:.2f} ({cell['dev']:.2f})")
        average = summary["average"].get(init)
        row.append("-" if average is None else f"{average['test']:.2f} ({average['dev']:.2f})")
        scratch = summary["average"].get(SCRATCH)
        gain = "-" if average is None or scratch is None or init == SCRATCH else \
            f"{average['test'] - scratch['test']:+.2f}"
        row.append(gain)
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Cells: test accuracy (dev accuracy), x100, mean over seeds; the dev-best step's checkpoint.")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """Grouped bars: test accuracy per task, one bar per init."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, inits = summary["tasks"], summary["inits"]
    width = 0.8 / len(inits)
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 4.2), dpi=120)
    for i, init in enumerate(inits):
        heights = [summary["cells"].get(f"{t}/{init}", {}).get("test", 0.0) for t in tasks]
        bars = ax.bar([k + i * width for k in range(len(tasks))], heights, width, label=init)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks([k + width * (len(inits) - 1) / 2 for k in range(len(tasks))], tasks)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("teacher fine-tuned from scratch vs from pretrained weights")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_inits(text: str) -> list[tuple[str, str | None]]:
    """``name=path,name=path`` -> [("scratch", None), (name, path), ...]."""
    inits: list[tuple[str, str | None]] = [(SCRATCH, None)]
    for item in filter(None, text.split(",")):
        name, sep, path = item.partition("=")
        if not sep or not name or not path or name == SCRATCH:
            raise SystemExit(f"--inits {item!r}: expected NAME=CHECKPOINT_DIR (NAME not 'scratch')")
        if not Path(path).is_dir():
            raise SystemExit(f"--inits {item!r}: {path} is not a checkpoint folder")
        inits.append((name, path))
    return inits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inits", default="", help="NAME=CHECKPOINT,... compared with scratch")
    parser.add_argument("--tasks", default=",".join(TASK_FOLDERS))
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--preset", default="teacher-small")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/pipeline")
    parser.add_argument("--run-only", default=None,
                        help="INIT,... fine-tune only these inits' cells (e.g. while another invocation runs the "
                             "others); other cells are shown when finished, else left out")
    args = parser.parse_args()

    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASK_FOLDERS]
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from {', '.join(TASK_FOLDERS)}")
    inits = parse_inits(args.inits)
    seeds = [int(s) for s in args.seeds.split(",")]
    cells = [Cell(task, name, path, seed) for task in tasks for name, path in inits for seed in seeds]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    run_only = None if args.run_only is None else set(args.run_only.split(","))
    if run_only is not None and run_only - {name for name, _ in inits}:
        parser.error(f"--run-only {args.run_only}: not among the inits {[name for name, _ in inits]}")
    results: dict[Cell, dict] = {}
    for index, cell in enumerate(cells, 1):
        values = finetune_values(cell, args)
        metrics = finished_cell(values)
        status = "reused"
        if metrics is None and run_only is not None and cell.init_name not in run_only:
            print(f"[{index}/{len(cells)}] {cell.table_task} {cell.init_name} seed {cell.seed}: not run here "
                  "(--run-only)", flush=True)
            continue
        if metrics is None:
            print(f"[{index}/{len(cells)}] {cell.table_task} {cell.init_name} seed {cell.seed}: fine-tuning "
                  f"({values['out_dir']}/run.log)", flush=True)
            metrics = run_cell(values, args.threads)
            status = f"{metrics['cell_wall_seconds']:.0f} s, load {metrics['load_average']}"
        results[cell] = metrics
        print(f"[{index}/{len(cells)}] {cell.table_task} {cell.init_name} seed {cell.seed}: dev "
              f"{100 * metrics['dev']['accuracy']:.2f} test {100 * metrics['test']['accuracy']:.2f} ({status})",
              flush=True)
        summary = write_outputs(cells, results, tasks, [name for name, _ in inits], args)
    summary = write_outputs(cells, results, tasks, [name for name, _ in inits], args)
    plot(summary, out / "pipeline.png")
    print(markdown(summary))


def write_outputs(cells: list[Cell], results: dict[Cell, dict], tasks: list[str], inits: list[str],
                  args: argparse.Namespace) -> dict:
    """pipeline.json and pipeline.md of the cells finished so far (rewritten after every cell)."""
    out = Path(args.out)
    summary = summarise(cells, results, tasks, inits)
    summary["settings"] = dict(vars(args))
    (out / "pipeline.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "pipeline.md").write_text(markdown(summary) + "\n", encoding="utf-8")
    return summary


if __name__ == "__main__":
    main()
