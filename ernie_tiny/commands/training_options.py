"""Options every training command shares: the time budget, torch.compile, and the batch and lr defaults per device."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ernie_tiny.commands.options import positive
from ernie_tiny.training.schedule import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, default_batch_size, scaled_lr

BATCH_SIZE_HELP = (f"Examples per step (per process under torchrun). Default: {CPU_BATCH_SIZE} on CPU, "
                   f"{CUDA_BATCH_SIZE} on CUDA; with the CUDA default and no --lr, the default peak lr is scaled "
                   f"by sqrt({CUDA_BATCH_SIZE}/{CPU_BATCH_SIZE}) = {(CUDA_BATCH_SIZE / CPU_BATCH_SIZE) ** 0.5:g} "
                   "(the square-root rule for Adam).")
MaxMinutesOpt = Annotated[Optional[float], typer.Option(
    "--max-minutes", callback=positive,
    help="Time budget of the training steps: after the first 20 steps the run fixes its step count (at most the "
         "step option) to end within it; saved, so --resume ends at the same step.")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the training forward (pays on CUDA for "
                                                            "runs of many steps; the first steps compile).")]


def batch_and_lr(device: str, batch_size: int | None, lr: float | None, default_lr: float) -> tuple[int, float]:
    """The batch size and peak lr of a run: given values as written; defaults per device (see BATCH_SIZE_HELP)."""
    if batch_size is None:
        batch_size = default_batch_size(device)
        if lr is None:
            return batch_size, scaled_lr(default_lr, batch_size)
    return batch_size, default_lr if lr is None else lr
DeviceBatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help=BATCH_SIZE_HELP)]


def peak_lr_option(default: float) -> object:
    """``--lr`` whose default depends on the batch (see :func:`batch_and_lr`)."""
    return typer.Option("--lr", callback=positive,
                        help=f"Peak learning rate (default: {default:g}, x2 with the CUDA default batch).")
