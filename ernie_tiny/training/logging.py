"""What a run shows and leaves behind: metrics.jsonl / metrics.csv, the loss-curve PNG, the progress bar."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ernie_tiny.io_utils import atomic_write_bytes, atomic_write_text


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


def plot_loss_curves(log_path: str | os.PathLike, png_path: str | os.PathLike) -> Path:
    """Plot every ``loss*`` term of the train records and every dev metric against the step, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: never touches the global backend
    from matplotlib.figure import Figure

    records = read_metrics(log_path)
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    loss_axes, dev_axes = figure.subplots(1, 2)
    for axes, split, wanted in ((loss_axes, "train", lambda k: k.startswith("loss")),
                                (dev_axes, "dev", lambda k: k != "step" and k != "split")):
        rows = [r for r in records if r.get("split") == split]
        for key in dict.fromkeys(k for r in rows for k in r if wanted(k)):
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if points:
                axes.plot(*zip(*points), label=key, marker="." if split == "dev" else None)
        axes.set_xlabel("step")
        axes.set_title("training loss" if split == "train" else "dev metrics")
        if axes.has_data():
            axes.legend()
    figure.tight_layout()
    png_path = Path(png_path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
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
