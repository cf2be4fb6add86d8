"""``ernie-tiny quickstart``: the whole pipeline on the embedded default, each step an ernie-tiny command."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup
from rich.console import Console

from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import SeedOpt
from ernie_tiny.quickstart import SCALES, QuickstartConfig, StepFailed, run_quickstart

Scale = Enum("Scale", {name: name for name in SCALES}, type=str)


def quickstart(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for every artefact.")] = Path("runs/quickstart"),
    scale: Annotated[Scale, typer.Option(help="small: scaled 12L->3L presets, ~10 min on a laptop CPU; "
                                              "micro: a one-minute smoke run.")] = Scale("small"),
    force: Annotated[bool, typer.Option("--force", help="Redo finished steps instead of reusing them.")] = False,
    seed: SeedOpt = 42,
) -> None:
    """Build the tokenizer, fine-tune a teacher, distil the student, export it to ONNX and bench both.

    Example: ernie-tiny quickstart --out runs/quickstart
    """
    console = Console(highlight=False, soft_wrap=True)
    run_command = step_runner(ctx.find_root().command)  # the app this command runs in: no import of ernie_tiny.cli
    with command_errors(also=(StepFailed,)):
        results = run_quickstart(QuickstartConfig(out_dir=str(out), scale=scale.value, force=force, seed=seed),
                                 run_command, echo=lambda line: console.print(line, markup=False))
    summary = out / "summary.md"
    console.print(summary.read_text(encoding="utf-8"), markup=False)
    console.print(f"quickstart: {len(results)} steps done; everything is in {out} (summary: {summary})", markup=False)


def step_runner(app: TyperGroup) -> Callable[[list[str]], None]:
    """``run(argv)``: one ``ernie-tiny`` command line through ``app``; a failed step ends the quickstart."""

    def run(argv: list[str]) -> None:
        # Outside standalone mode click returns a step's exit code instead of exiting.
        code = app.main(argv, prog_name="ernie-tiny", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            raise typer.Exit(code)

    return run
