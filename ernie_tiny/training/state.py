"""Resumable training state: weights, optimizer, step and every RNG in one atomically written file."""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ernie_tiny.config import StrictConfig, strict_config  # noqa: F401 (re-exported: configs import them from here)
from ernie_tiny.io_utils import atomic_open

STATE_FORMAT = 1


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
    extra: dict = field(default_factory=dict)  # what the loop and the trainer keep (best dev, stage, log window)
    config: dict = field(default_factory=dict)  # the run's config, as plain values
    model: dict | None = None  # state dicts, read but not yet applied (see apply_training_state)
    optimizer: dict | None = None
    rng: dict | None = None


def save_training_state(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                        extra: dict | None = None, config: object = None) -> None:
    """``torch.save`` weights, optimizer, step, RNG states, ``extra`` and ``config`` to ``path`` atomically.

    Written to a temp file in the same folder and renamed: a crash mid-save leaves the
    previous state file intact.
    """
    payload = {"format": STATE_FORMAT, "step": step, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "rng": capture_rng_state(),
               "extra": plain(extra or {}), "config": plain(config or {})}
    with atomic_open(path) as f:
        torch.save(payload, f)


def read_training_state(path: str | os.PathLike) -> TrainingState:
    """The :func:`save_training_state` file at ``path``, checked but not yet applied to any model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state to resume from")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != STATE_FORMAT:
            raise ValueError(f"format {payload.get('format')!r}, expected {STATE_FORMAT}")
        return TrainingState(step=int(payload["step"]), extra=payload["extra"], config=payload["config"],
                             model=payload["model"], optimizer=payload["optimizer"], rng=payload["rng"])
    except (RuntimeError, ValueError, KeyError, EOFError, OSError, AttributeError) as err:
        raise ValueError(f"{path}: unusable training state: {err}") from err


def apply_training_state(state: TrainingState, model: nn.Module, optimizer: torch.optim.Optimizer,
                         path: str | os.PathLike = "last.pt") -> None:
    """Load the weights and optimizer moments of ``state`` and restore every RNG."""
    try:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: unusable training state: {err}") from err
    restore_rng_state(state.rng)
