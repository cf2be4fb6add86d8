"""``ernie-tiny quickstart``: the whole pipeline on the embedded default, each step an ernie-tiny command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console

from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import DEFAULT_DEVICE, SeedOpt, positive
from ernie_tiny.devices import resolve_device
from ernie_tiny.quickstart import SCALES, QuickstartConfig, Scale, StageMinutes, StepFailed, run_quickstart


def minutes_option(stage: str, what: str) -> object:
    real = getattr(SCALES[Scale.real].minutes, stage)
    return typer.Option(f"--{stage}-minutes", callback=positive,
                        help=f"Time budget of {what} in minutes (default: {real:g} at --scale real; "
                             "micro and small run their step counts).")


def quickstart(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for every artefact.")] = Path("runs/quickstart"),
    scale: Annotated[Scale, typer.Option(help="small: scaled 12L->3L presets from scratch, ~10 min on a laptop "
                                              "CPU; real: ernie-1.0-base pretrained -> ERNIE-tiny, ~10 min on one "
                                              "GPU; micro: the real recipe at micro presets, a smoke run.")]
    = Scale.small,
    device: Annotated[str, typer.Option("--device", help="Device of every training step: auto (cuda when "
                                                         "available, else cpu), cpu, cuda or cuda:N.")]
    = DEFAULT_DEVICE,
    pretrain_minutes: Annotated[Optional[float], minutes_option("pretrain", "knowledge-masking pretraining")] = None,
    teacher_minutes: Annotated[Optional[float], minutes_option("teacher", "each teacher fine-tuning")] = None,
    general_minutes: Annotated[Optional[float], minutes_option("general", "general distillation")] = None,
    student_minutes: Annotated[Optional[float], minutes_option("student", "task distillation")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo finished steps instead of reusing them.")] = False,
    seed: SeedOpt = 42,
) -> None:
    """Build the tokenizer, (pretrain and) fine-tune a teacher, distil the student, export it to ONNX and bench both.

    Example: ernie-tiny quickstart --scale real --device cuda --out runs/quickstart-real
    """
    console = Console(highlight=False, soft_wrap=True)
    run_command = step_runner(ctx.find_root().command)  # the app this command runs in: no import of ernie_tiny.cli
    with command_errors(also=(StepFailed,)):
        resolved = resolve_device(device)  # a missing GPU ends here, before any step writes
        if SCALES[scale].gpu and resolved == "cpu":
            raise ValueError(f"--scale {scale.value} needs a CUDA GPU (its fp16 export and bench run there); "
                             "use --scale small on a CPU")
        minutes = StageMinutes(pretrain=pretrain_minutes, teacher=teacher_minutes, general=general_minutes,
                               student=student_minutes)
        # auto stays auto in each step's command line: the printed commands run anywhere
        config = QuickstartConfig(out_dir=str(out), scale=scale, force=force, seed=seed,
                                  device=None if device == DEFAULT_DEVICE else resolved,
                                  minutes=minutes)
        results = run_quickstart(config, run_command, echo=lambda line: console.print(line, markup=False))
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
