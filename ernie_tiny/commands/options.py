"""Options that several commands share, as ``Annotated`` aliases, and the one way a command group is made.

Imports neither torch nor onnxruntime: ``predict`` uses these aliases on the torch-free path.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ernie_tiny.tasks import TASKS
from ernie_tiny.devices import AUTO, DEVICE_HELP


def keep_hyphenated_words_whole() -> None:
    """Help text wraps at spaces only: ``--max-batch`` or ``runs/teacher-ernie1`` never splits at its hyphen.

    A command copied from a help text wrapped at a hyphen breaks (``--max-`` then ``batch``). typer formats help
    with click's ``wrap_text`` (click is vendored in typer >= 0.24), which takes its ``TextWrapper`` from the
    ``_textwrap`` module on each call and offers no switch: the module gets a wrapper that keeps such words whole.
    """
    try:
        from typer._click import _textwrap
    except ImportError:  # an older typer on click
        from click import _textwrap
    if getattr(_textwrap.TextWrapper, "keeps_hyphenated_words", False):
        return

    class WholeWordWrapper(_textwrap.TextWrapper):
        keeps_hyphenated_words = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "break_on_hyphens": False})

    _textwrap.TextWrapper = WholeWordWrapper


keep_hyphenated_words_whole()


def positive(value: float | None) -> float | None:
    """A typer ``callback`` for a float that must be > 0 (typer's ``min=`` accepts the bound itself)."""
    if value is not None and not value > 0:  # `not >` also refuses nan
        raise typer.BadParameter(f"must be > 0, got {value}")
    return value


def one_of(choices: Iterable[str]) -> str:
    """``one of: a, b, c`` for a help text: long choice lists wrap there, not in the option column."""
    return "one of: " + ", ".join(choices)


# Bounds are typer's min=/max= (or callback=positive): a value out of range stops at parsing, before any work,
# with click's one line naming the option. New options built on these aliases inherit them.
MAX_THREADS = 1024  # more threads than any machine's cores: an input error, not a setting (torch overflows a C int)
MAX_SEED = 2 ** 32 - 1  # numpy's seeds stop here

TaskName = Enum("TaskName", {name: name for name in TASKS}, type=str)

DEFAULT_DEVICE = AUTO
DeviceOpt = Annotated[str, typer.Option("--device", help=f"Device: {DEVICE_HELP}")]
TaskOpt = Annotated[TaskName, typer.Option("--task", help="Task of ernie_tiny.tasks; 'reviews' is embedded "
                                                          "and needs no --data-dir.")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", exists=True, file_okay=False, help="Folder with train.tsv, dev.tsv, test.tsv "
                                                                       "(not for the embedded reviews).")]
RunDirOpt = Annotated[Path, typer.Option("--out", file_okay=False, help="Output folder: best/, last.pt, metrics.json, "
                                                       "loss_curve.png.")]
MaxLenOpt = Annotated[int, typer.Option("--max-len", min=3, help="Tokens per example, specials included; longer "
                                                                 "texts are truncated.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Examples per step (per process under "
                                                                       "torchrun).")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of init, data order, augmentation "
                                                                          "and dropout.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last.pt.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Start over although --out holds a run.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, max=MAX_THREADS, help="torch CPU threads "
                                                   "(default: torch's; 1 is faster on a busy machine).")]


def command_group(help: str) -> typer.Typer:
    """A typer app as every ernie-tiny group is made: help printed as written, tracebacks not prettified.

    ``rich_markup_mode=None``: rich markup would read ``[default: 128]``, ``[UNK]`` or ``[freq]`` in a
    help text as style tags and drop them, and its option table cut long option names at 80 columns.
    """
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)
