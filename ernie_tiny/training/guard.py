"""The NaN/inf guard without a host sync per step: the first bad step is recorded on the device, read at checks.

    guard = FiniteGuard(device)
    guard.watch(step, lr, loss, grad_norm)   # every step: a few tiny device ops, no synchronisation
    guard.check(name)                         # at log lines, evaluations, saves and the end: one sync

Cost: ``float(loss)`` every step would make the host wait for the GPU to finish the step
before it may queue the next one, so the GPU idles while Python prepares each step. Here a
step only adds ``isfinite`` and two ``where`` kernels; the host reads one integer per check.
The price is latency: a divergence is reported at the next check (at most ``log_every - 1``
steps late), and those steps ran on non-finite weights. Nothing they produced is kept:
the loop checks before it evaluates, writes a best checkpoint or saves ``last.pt``.
"""

from __future__ import annotations

import torch

from ernie_tiny.training.state import TrainingDivergedError


class FiniteGuard:
    """The first step whose loss (or loss + gradient norm) was NaN or infinite, kept on the device."""

    def __init__(self, device: torch.device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # -1: every step finite so far
        self.bad_loss = torch.zeros((), device=device)
        self.bad_norm = torch.zeros((), device=device)
        self.lrs: dict[int, float] = {}  # lr of each step since the last check (host values, for the message)

    def watch(self, step: int, lr: float, loss: torch.Tensor, grad_norm: torch.Tensor, loss_only: bool) -> None:
        """Record ``step`` if it is the first non-finite one; ``loss_only`` ignores the gradient norm (fp16:
        an inf gradient there is the loss scaler's business, it skips the step)."""
        value = loss if loss_only else loss + grad_norm
        first = ~torch.isfinite(value) & (self.first_bad < 0)
        self.first_bad = torch.where(first, step, self.first_bad)
        self.bad_loss = torch.where(first, loss.detach().float(), self.bad_loss)
        self.bad_norm = torch.where(first, grad_norm.detach().float(), self.bad_norm)
        self.lrs[step] = lr

    def check(self, name: str) -> None:
        """Raise :class:`TrainingDivergedError` naming the first bad step, if any step since the start was bad."""
        bad = int(self.first_bad)  # the one host sync
        if bad >= 0:
            raise TrainingDivergedError(f"{name} step {bad + 1}: loss {float(self.bad_loss)}, gradient norm "
                                        f"{float(self.bad_norm)} at lr {self.lrs.get(bad, float('nan')):.2e}; "
                                        "lower --lr or check the data")
        self.lrs.clear()
