"""``ernie-tiny teacher convert|finetune``: bring a teacher checkpoint into our format, fine-tune it on a task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ernie_tiny.checkpoint import load_pretrained, save_pretrained
from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.finetune import finetune
from ernie_tiny.commands.options import command_group
from ernie_tiny.convert.detect import count_parameters, detect_format, load_checkpoint

TEACHER_HELP = ("Teacher checkpoints: convert Paddle / Hugging Face ERNIE folders, fine-tune.\n\n"
                "Example: ernie-tiny teacher finetune --preset teacher-micro --max-steps 50 --out runs/teacher")
teacher_app = command_group(TEACHER_HELP)


@teacher_app.callback(help=TEACHER_HELP)
def teacher() -> None:
    """Teacher checkpoints: convert Paddle / Hugging Face ERNIE folders, fine-tune."""
    # A callback keeps `teacher` a command group even while it holds a single command.


@teacher_app.command()
def convert(
    src: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Paddle ERNIE 1.0 or official ERNIE-tiny folder (params/ + "
                                             "ernie_config.json [+ subword/]), "
                                             "Hugging Face Ernie/Bert folder, or an ernie-tiny folder.")],
    out: Annotated[Path, typer.Argument(file_okay=False, help="Folder to write (config.json + model.safetensors + vocab).")],
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Convert a teacher checkpoint to the ernie-tiny format, checking every parameter.

    Example: ernie-tiny teacher convert ERNIE_1.0_max-len-512/ runs/teacher-ernie1
    """
    with command_errors():
        if out.exists() and not overwrite:
            raise ValueError(f"{out} exists (pass --overwrite to replace it)")
        source_format = detect_format(src)
        loaded = load_checkpoint(src)
        save_pretrained(loaded.model, out, tokenizer=loaded.tokenizer, task=loaded.meta.task,
                        labels=loaded.meta.labels, extra={**loaded.meta.extra, "converted_from": str(src)})
        load_pretrained(out)  # read back: the written folder must load with every key and shape checked
    tokenizer = loaded.tokenizer
    typer.echo(f"read {source_format.value} checkpoint {src}")
    typer.echo(f"  {loaded.config.describe()}, act {loaded.config.hidden_act}, head {loaded.meta.head.value}")
    typer.echo(f"  {count_parameters(loaded.model):,} parameters; tokenizer: "
               + (f"{tokenizer.kind}, {tokenizer.vocab_size} tokens" if tokenizer is not None
                  else "none (no vocab.txt)"))
    initialised = loaded.meta.extra.get("initialised") or []
    if initialised:
        typer.echo(f"  not in the source, freshly initialised: {', '.join(initialised)}")
    typer.echo(f"wrote {out}")


teacher_app.command("finetune")(finetune)  # defined beside the other trainers' commands (commands/finetune.py)
