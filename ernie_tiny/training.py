"""Training infrastructure shared by teacher fine-tuning and distillation.

Everything a resumable run needs, as small pure pieces:

- :func:`get_lr`: linear warmup then linear decay to 0, a pure function of the step;
- :func:`batch_for_step`: the batch of global step ``s`` is a pure function of
  ``(seed, epoch, s)``, so a resumed run sees exactly the batches the original would have;
- :func:`save_training_state` / :func:`load_training_state`: weights, AdamW moments,
  step and every RNG (python, numpy, torch, cuda) in one atomically written file, so
  dropout masks after ``--resume`` are the ones the uninterrupted run draws;
- :class:`MetricsLog` (``metrics.jsonl`` + ``metrics.csv``), :func:`plot_loss_curves`,
  :func:`make_progress`, and :func:`predict` (per-example model outputs for evaluation).

Example::

    optim = OptimConfig(lr=5e-4, max_steps=1000, batch_size=32)
    optimizer = build_optimizer(model, optim.lr, optim.weight_decay)
    for step in range(start, optim.max_steps):
        lr = get_lr(step, optim.max_steps, optim.lr, optim.warmup_steps)
        batch = batch_for_step(train_items, step, optim.batch_size, optim.seed)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from ernie_tiny.io_utils import atomic_write_bytes, atomic_write_text

T = TypeVar("T")
STATE_FORMAT = 1


@dataclass
class OptimConfig:
    lr: float = 5e-5  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.01  # AdamW decay on weight matrices; never on biases or LayerNorm
    warmup_ratio: float = 0.1  # fraction of max_steps spent warming up linearly from 0
    max_steps: int = 1000  # optimizer steps in the whole run (the schedule decays to 0 at this step)
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    batch_size: int = 32  # examples per optimizer step (per process under DDP)
    seed: int = 42  # model init, data order and dropout all follow from it
    eval_every: int = 200  # steps between dev evaluations (and at the last step)
    save_every: int = 200  # steps between resumable training states (last.pt)
    log_every: int = 10  # steps between metrics.jsonl lines

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("max_steps", "batch_size", "eval_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup_ratio * self.max_steps)


def get_lr(step: int, max_steps: int, base_lr: float, warmup_steps: int) -> float:
    """Learning rate of (0-based) ``step``: linear warmup, then linear decay reaching 0 at ``max_steps``.

    lr = base_lr * (step + 1) / warmup_steps             for step < warmup_steps
    lr = base_lr * (max_steps - step) / (max_steps - warmup_steps)   afterwards (>= 0)

    The ``+ 1`` makes the very first step train (lr 0 would waste it).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return base_lr * max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and embeddings only.

    Parameters with fewer than 2 dimensions (biases, LayerNorm scales and shifts) are
    not decayed: pulling a LayerNorm scale towards 0 shrinks activations, not complexity.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


# ---- RNG and training state ---------------------------------------------------------------------

def capture_rng_state() -> dict:
    """Python, numpy, torch CPU (and CUDA) generator states, as plain lists/tensors (weights_only-safe)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "keys": keys.tolist(), "position": position, "has_gauss": has_gauss,
                       "cached_gauss": cached_gauss},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    saved = state["numpy"]
    np.random.set_state((saved["kind"], np.array(saved["keys"], dtype=np.uint32), saved["position"],
                         saved["has_gauss"], saved["cached_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain(value: object) -> object:
    """Dataclasses, enums, paths and tuples as plain dicts/strings/lists (safe for JSON and weights_only)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass
class TrainingState:
    step: int  # optimizer steps already taken: training resumes at this 0-based step
    extra: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def save_training_state(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                        extra: dict | None = None, config: object = None) -> None:
    """``torch.save`` weights, optimizer, step, RNG states, ``extra`` and ``config`` to ``path`` atomically.

    Written to a temp file in the same folder and renamed: a crash mid-save leaves the
    previous state file intact.
    """
    payload = {"format": STATE_FORMAT, "step": step, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "rng": capture_rng_state(),
               "extra": plain(extra or {}), "config": plain(config or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_training_state(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainingState:
    """Load a :func:`save_training_state` file into ``model`` and ``optimizer`` and restore every RNG."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state to resume from")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != STATE_FORMAT:
            raise ValueError(f"format {payload.get('format')!r}, expected {STATE_FORMAT}")
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError, EOFError, OSError) as err:
        raise ValueError(f"{path}: unusable training state: {err}") from err
    restore_rng_state(payload["rng"])
    return TrainingState(step=int(payload["step"]), extra=payload["extra"], config=payload["config"])


# ---- data order -----------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _epoch_order(num_items: int, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int) -> tuple[int, ...]:
    order = np.random.default_rng([seed, epoch]).permutation(num_items) if shuffle else np.arange(num_items)
    if world_size > 1:
        # DistributedSampler's rule: wrap around to a multiple of world_size, then rank r takes every r-th item.
        padded = np.resize(order, -(-num_items // world_size) * world_size)
        order = padded[rank::world_size]
    return tuple(order.tolist())


def batch_indices(num_items: int, batch_size: int, shuffle: bool, seed: int, epoch: int,
                  rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Item indices of every batch of one epoch: a pure function of its arguments."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    order = _epoch_order(num_items, shuffle, seed, epoch, rank, world_size)
    return [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def batches(items: Sequence[T], batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
            rank: int = 0, world_size: int = 1) -> Iterator[list[T]]:
    """Yield the batches of one epoch; with ``world_size > 1`` only this rank's shard."""
    for indices in batch_indices(len(items), batch_size, shuffle, seed, epoch, rank, world_size):
        yield [items[i] for i in indices]


def batch_for_step(items: Sequence[T], step: int, batch_size: int, seed: int,
                   rank: int = 0, world_size: int = 1) -> list[T]:
    """The shuffled training batch of global ``step``: epoch ``step // steps_per_epoch``, then its position."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    per_rank = -(-len(items) // world_size)  # each rank's share after DistributedSampler's wrap-around
    epoch, position = divmod(step, -(-per_rank // batch_size))
    order = _epoch_order(len(items), True, seed, epoch, rank, world_size)
    return [items[i] for i in order[position * batch_size:(position + 1) * batch_size]]


# ---- logging, plots, progress ---------------------------------------------------------------------

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


# ---- inference ------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, items: Sequence[T], collate_fn: Callable[[list[T]], object], batch_size: int,
            device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Each item's unpadded model output in eval mode: logits (C,), a score (), or token logits (T_i, C).

    ``collate_fn`` turns a list of items into a batch with ``to(device)``, ``model_inputs()``
    and ``attention_mask`` (like ``ernie_tiny.task_batches.collate``); labels are not passed to the model.
    """
    was_training = model.training
    model.eval()
    outputs: list[np.ndarray] = []
    for chunk in batches(items, batch_size, shuffle=False):
        batch = collate_fn(chunk).to(device)
        inputs = {k: v for k, v in batch.model_inputs().items() if k not in ("labels", "group_ids")}
        logits = model(**inputs).logits.float().cpu().numpy()
        lengths = batch.attention_mask.sum(dim=1).tolist()
        for row, length in enumerate(lengths):
            # token-level heads return (B, T, C): cut each row back to its own length
            outputs.append(logits[row, :length] if logits.ndim == 3 else logits[row])
    model.train(was_training)
    return outputs
