"""What a run shows and leaves behind: metrics.jsonl / metrics.csv, the loss-curve PNG, the progress bar."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ernie_tiny.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per logged step) and ``metrics.csv`` in ``directory``.

    ``resume_step`` keeps the records up to that step and drops later ones (a crashed
    run logged them; the resumed run logs them again).
    """

    def __init__(self, directory: str | os.PathLike, resume_step: int | None = None):
        self.jsonl_path = Path(directory) / "metrics.jsonl"
        self.csv_path = Path(directory) / "metrics.csv"
        kept = [r for r in read_metrics(self.jsonl_path) if r["step"] <= resume_step] if resume_step is not None else []
        atomic_write_text(self.jsonl_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))

    def log(self, step: int, split: str, **values: float) -> dict:
        record = {"step": step, "split": split, **values}
        with open(self.jsonl_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record

    def write_csv(self) -> None:
        """Rewrite ``metrics.csv`` from the JSONL: one row per record, one column per key ever logged."""
        records = read_metrics(self.jsonl_path)
        columns = list(dict.fromkeys(key for record in records for key in record))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
        atomic_write_text(self.csv_path, out.getvalue())


def read_metrics(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def loss_curve_figure(records: list[dict]):
    """The Figure of :func:`plot_loss_curves`: one panel per ``loss*`` train term, then the dev metrics.

    Each term gets its own y-axis (a small term is not squashed under the total; a log
    scale when it spans more than two decades); the dev metrics are marked and labelled
    point by point (a run evaluates only a few times); legends sit outside the curves.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: never touches the global backend
    from matplotlib.figure import Figure

    train = [r for r in records if r.get("split") == "train"]
    dev = [r for r in records if r.get("split") == "dev"]

    def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
        return [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]

    loss_terms = [k for k in dict.fromkeys(k for r in train for k in r) if k.startswith("loss") and series(train, k)]
    dev_keys = [k for k in dict.fromkeys(k for r in dev for k in r) if k not in ("step", "split") and series(dev, k)]
    scores = [k for k in dev_keys if all(0.0 <= v <= 1.0 for _, v in series(dev, k)) and "loss" not in k]
    dev_panels = [("dev metrics", scores)] if scores else []
    dev_panels += [(f"dev {k}", [k]) for k in dev_keys if k not in scores]  # e.g. a dev loss: its own scale
    panels = len(loss_terms) + len(dev_panels)
    columns = min(3, max(panels, 1))
    rows = -(-max(panels, 1) // columns)
    figure = Figure(figsize=(4.6 * columns, 3.3 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    last_step = max((r["step"] for r in records if isinstance(r.get("step"), (int, float))), default=1)
    stage_starts = [b["step"] for a, b in zip(train, train[1:]) if a.get("stage") != b.get("stage")]
    for axes, key in zip(grid, loss_terms):
        steps, values = zip(*series(train, key))
        axes.plot(steps, values, color="#4f81bd", linewidth=1.2, marker="." if len(steps) <= 20 else None)
        if min(values) > 0 and max(values) / min(values) > 100:
            axes.set_yscale("log")
        for step in stage_starts:
            axes.axvline(step, color="grey", linestyle=":", linewidth=1)
        axes.set_title("loss (total)" if key == "loss" else key, fontsize=10)
    colours = ["#c0504d", "#2e9e6b", "#7a5fb0", "#e08a2c", "#3fa7c4"]
    for axes, (title, keys) in zip(grid[len(loss_terms):], dev_panels):
        every_value = []
        for key, colour in zip(keys, colours * len(keys)):
            points = series(dev, key)
            steps, values = zip(*points)
            every_value += values
            axes.plot(steps, values, marker="o", color=colour, label=key, linewidth=1.2)
            if len(points) <= 12:  # few evaluations: say each value
                for step, value in points:
                    axes.annotate(f"{value:.3f}", (step, value), textcoords="offset points", xytext=(0, 6),
                                  ha="center", fontsize=7, color=colour, annotation_clip=False)
        low, high = min(every_value), max(every_value)
        margin = max(0.25 * (high - low), 0.005 * max(abs(high), 1.0))  # zoomed to the values, not to 0-1
        axes.set_ylim(low - margin, high + 1.5 * margin)  # headroom for the value labels
        axes.set_title(title if len(keys) > 1 else f"dev {keys[0]}", fontsize=10)
        if len(keys) > 1:
            axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    for axes in grid[:panels]:
        axes.set_xlim(0, last_step * 1.06)
        axes.set_xlabel("step", fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
    for axes in grid[panels:]:
        axes.set_axis_off()
    if panels == 0:
        grid[0].text(0.5, 0.5, "no train or dev metrics logged", ha="center", va="center")
    return figure


def plot_loss_curves(log_path: str | os.PathLike, png_path: str | os.PathLike) -> Path:
    """Plot every ``loss*`` term of the train records and every dev metric against the step, as a PNG."""
    png_path = Path(png_path)
    buffer = io.BytesIO()
    loss_curve_figure(read_metrics(log_path)).savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(png_path, buffer.getvalue())
    return png_path


def make_progress(console: Console | None = None, disable: bool = False) -> Progress:
    """A rich progress bar: description, bar, steps, speed, loss terms, ETA.

    Tasks must be added with the ``speed`` and ``losses`` fields, e.g.
    ``progress.add_task("fine-tune", total=n, speed="", losses="")``, and updated
    with ``progress.update(task, advance=1, speed="512 ex/s", losses="loss 0.41")``.
    """
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[losses]}"),
                    TimeRemainingColumn(), console=console, disable=disable)


def format_losses(values: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.4f}" for name, value in values.items())


def write_run_summary(out_dir: str | os.PathLike, summary: dict) -> None:
    """The files every trainer ends with: ``metrics.json`` (atomic) and ``loss_curve.png`` from ``metrics.jsonl``."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "metrics.json", summary)
    plot_loss_curves(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")
