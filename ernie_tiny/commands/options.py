"""Options that several commands share, as ``Annotated`` aliases, and the one way a command group is made.

Imports neither torch nor onnxruntime: ``predict`` uses these aliases on the torch-free path.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ernie_tiny.data.tasks import TASKS
from ernie_tiny.devices import AUTO, DEVICE_HELP

TaskName = Enum("TaskName", {name: name for name in TASKS}, type=str)

DEFAULT_DEVICE = AUTO
DeviceOpt = Annotated[str, typer.Option("--device", help=f"Device: {DEVICE_HELP}")]
TaskOpt = Annotated[TaskName, typer.Option("--task", help="Task of ernie_tiny.data.tasks; 'reviews' is embedded "
                                                          "and needs no --data-dir.")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Folder with train.tsv, dev.tsv, test.tsv "
                                                                       "(not for the embedded reviews).")]
RunDirOpt = Annotated[Path, typer.Option("--out", help="Output folder: best/, last.pt, metrics.json, "
                                                       "loss_curve.png.")]
MaxLenOpt = Annotated[int, typer.Option("--max-len", help="Tokens per example, specials included; longer texts "
                                                          "are truncated.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Examples per step (per process under torchrun).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of init, data order, augmentation and dropout.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last.pt.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="torch CPU threads (default: torch's; 1 is "
                                                                     "faster on a busy machine).")]


def command_group(help: str) -> typer.Typer:
    """A typer app as every ernie-tiny group is made: help printed as written, tracebacks not prettified.

    ``rich_markup_mode=None``: rich markup would read ``[default: 128]``, ``[UNK]`` or ``[freq]`` in a
    help text as style tags and drop them, and its option table cut long option names at 80 columns.
    """
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)
