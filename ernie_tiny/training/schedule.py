"""Optimisation settings and the pure pieces of a schedule: peak lr, warmup/linear decay, AdamW groups, seeds."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ernie_tiny.training.precision import Precision
from ernie_tiny.training.state import StrictConfig


@dataclass
class OptimConfig(StrictConfig):
    """The optimisation block every trainer shares (fine-tuning, pretraining, each distillation stage).

    The number of steps is the trainer's (a distillation run has one count per stage).
    """

    lr: float = 5e-5  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.01  # AdamW decay on weight matrices; never on biases or LayerNorm
    warmup_ratio: float = 0.1  # fraction of the steps spent warming up linearly from 0
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    batch_size: int = 32  # examples per optimizer step, per process under DDP
    grad_accum: int = 1  # micro-batches per step: each forward sees batch_size / grad_accum examples
    precision: Precision = Precision.auto  # auto: bf16 (or fp16 + loss scaling) on CUDA, fp32 on CPU
    seed: int = 42  # model init, data order and dropout all follow from it
    eval_every: int = 200  # steps between dev evaluations (and at the last step)
    save_every: int = 200  # steps between resumable training states (last.pt)
    log_every: int = 10  # steps between metrics.jsonl lines
    max_minutes: float | None = None  # time budget of the loop's steps: fixes the step count early (budget.py)
    compile: bool = False  # torch.compile the training forward (pays on CUDA for long runs; off: eager)

    def __post_init__(self) -> None:
        self.precision = Precision(self.precision)
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("batch_size", "grad_accum", "eval_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of grad_accum {self.grad_accum}")

    def warmup_steps(self, steps: int) -> int:
        """Warmup steps of a run of ``steps`` optimizer steps."""
        return int(self.warmup_ratio * steps)



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


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and embeddings only.

    Parameters with fewer than 2 dimensions (biases, LayerNorm scales and shifts) are
    not decayed: pulling a LayerNorm scale towards 0 shrinks activations, not complexity.
    ``fused`` runs the whole update as one kernel per parameter group (the loop asks for it on
    CUDA; the CPU keeps the reference implementation, so CPU results are unchanged).
    Its state dict is the same as the unfused one's: a run may resume on the other path.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=True) if fused else torch.optim.AdamW(groups, lr=lr)


CPU_BATCH_SIZE = 32  # the default batch on CPU: every --lr default in the CLI is tuned for it
CUDA_BATCH_SIZE = 128  # the default batch on a GPU: 4x the examples per step keeps an H200 busy


def default_batch_size(device: str) -> int:
    """The batch a command uses when ``--batch-size`` is not given: 32 on CPU, 128 on CUDA."""
    return CUDA_BATCH_SIZE if str(device).startswith("cuda") else CPU_BATCH_SIZE


def scaled_lr(lr: float, batch_size: int, reference_batch: int = CPU_BATCH_SIZE) -> float:
    """The square-root rule for Adam: ``lr * sqrt(batch_size / reference_batch)`` (x2 from batch 32 to 128).

    The gradient noise of a mean over ``b`` examples shrinks as ``1/sqrt(b)``; scaling Adam's step
    by the same factor keeps the update noise comparable (linear scaling, right for SGD, tends to
    diverge with Adam at the warmup lengths used here). Commands apply it only when neither
    ``--lr`` nor ``--batch-size`` is given, so an explicit lr is always used as written.
    """
    return lr * (batch_size / reference_batch) ** 0.5
