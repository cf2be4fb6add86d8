"""How the training commands end on bad input or Ctrl-C: one line, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from ernie_tiny.training.state import TrainingDivergedError


@contextmanager
def training_command_errors(console: Console, out: Path) -> Iterator[None]:
    """Bad input exits 1 with ``error: ...``; Ctrl-C exits 130 saying how to resume from ``out/last.pt``."""
    try:
        yield
    except (ValueError, FileNotFoundError, TrainingDivergedError) as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(f"interrupted; continue with --resume (state in {out / 'last.pt'})")
        raise typer.Exit(130) from None
