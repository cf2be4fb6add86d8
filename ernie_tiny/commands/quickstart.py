"""``ernie-tiny quickstart``: the whole pipeline on the embedded default, each step an ernie-tiny command."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ernie_tiny.quickstart import SCALES, QuickstartConfig, run_quickstart

Scale = Enum("Scale", {name: name for name in SCALES}, type=str)


def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for every artefact.")] = Path("runs/quickstart"),
    scale: Annotated[Scale, typer.Option(help="small: scaled 12L->3L presets, ~10 min on a laptop CPU; "
                                              "micro: a one-minute smoke run.")] = Scale("small"),
    force: Annotated[bool, typer.Option("--force", help="Redo finished steps instead of reusing them.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every step.")] = 42,
) -> None:
    """Build the tokenizer, fine-tune a teacher, distil the student, export it to ONNX and bench both.

    Example: ernie-tiny quickstart --out runs/quickstart
    """
    from ernie_tiny.cli import app  # the steps are the same commands a user types

    console = Console()

    def run_command(argv: list[str]) -> None:
        # Outside standalone mode click returns a step's exit code instead of exiting.
        code = app(argv, standalone_mode=False)
        if isinstance(code, int) and code != 0:
            raise typer.Exit(code)

    try:
        results = run_quickstart(QuickstartConfig(out_dir=str(out), scale=scale.value, force=force, seed=seed),
                                 run_command, echo=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except (RuntimeError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        raise typer.Exit(1) from None
    summary = out / "summary.md"
    console.print(summary.read_text(encoding="utf-8"), highlight=False)
    console.print(f"quickstart: {len(results)} steps done; everything is in {out} (summary: {summary})")
