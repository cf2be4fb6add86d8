"""How every command ends on bad input or Ctrl-C: one line on stderr, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, OSError)  # DataError, DeviceError, ... are ValueErrors


# What would end the line inside a message (a header cell holding U+0085, a path with a newline): shown escaped.
LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def print_error(message: object) -> None:
    """``error: message`` on stderr, as one line (printed as written: no markup, line breaks escaped)."""
    text = str(message).translate(LINE_BREAKS)
    Console(stderr=True, soft_wrap=True, highlight=False).print(Text.assemble(("error:", "red"), f" {text}"))


@contextmanager
def command_errors(resume_state: Path | None = None, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Bad input (ValueError, OSError, and ``also``) exits 1 with ``error: ...``; Ctrl-C exits 130.

    A training command passes ``resume_state`` (its ``last.pt``): the Ctrl-C line then says how to continue.
    """
    try:
        yield
    except (typer.Exit, typer.Abort):  # RuntimeErrors, but a command's own way to end
        raise
    except BAD_INPUT + also as err:
        print_error(err)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        message = f"interrupted; continue with --resume (state in {resume_state})" if resume_state else "interrupted"
        Console(stderr=True, soft_wrap=True, highlight=False).print(message, markup=False)
        raise typer.Exit(130) from None


def training_command_errors(out: Path) -> AbstractContextManager[None]:
    """:func:`command_errors` of a training run in ``out``: a diverged loss is bad input too."""
    from ernie_tiny.training.state import TrainingDivergedError  # torch: imported only by training commands

    return command_errors(resume_state=out / "last.pt", also=(TrainingDivergedError,))
