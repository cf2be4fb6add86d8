"""``ernie-tiny``: the command line. Each command is a thin typer function in ``ernie_tiny.commands``.

    ernie-tiny quickstart                      the whole pipeline on the embedded default
    ernie-tiny pretrain                        ERNIE 1.0 knowledge-masking pretraining of a teacher
    ernie-tiny segment train|encode|stats      jieba + sentencepiece student tokenizer
    ernie-tiny teacher convert|finetune        teacher checkpoints
    ernie-tiny augment                         ERNIE Slim / teacher-MLM data augmentation
    ernie-tiny distill / distill-general       char teacher -> subword student
    ernie-tiny export / predict                ONNX Runtime deployment
    ernie-tiny serve / embed                   HTTP prediction/embedding server, embeddings to .npy
    ernie-tiny bench                           latency / accuracy table at maxlen 128
"""

from __future__ import annotations

from typing import Annotated

import typer

from ernie_tiny import __version__
from ernie_tiny.commands.augment import augment
from ernie_tiny.commands.bench import bench
from ernie_tiny.commands.distill import distill, distill_general
from ernie_tiny.commands.embed import embed
from ernie_tiny.commands.export import export
from ernie_tiny.commands.options import command_group
from ernie_tiny.commands.predict import predict
from ernie_tiny.commands.pretrain import pretrain
from ernie_tiny.commands.quickstart import quickstart
from ernie_tiny.commands.segment import segment_app
from ernie_tiny.commands.serve import serve
from ernie_tiny.commands.teacher import teacher_app

app = command_group("Distil a 12-layer char-level ERNIE teacher into the fast 3-layer subword ERNIE-tiny student."
                    "\n\nExample: ernie-tiny quickstart --scale micro --out runs/quickstart-micro (the whole "
                    "pipeline in about a minute; --help on any command shows its own example)")


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"ernie-tiny {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=show_version,
                                               help="Print the version and exit.")] = False) -> None:
    # The group's help is command_group's text above; this callback only adds --version.
    pass


app.add_typer(teacher_app, name="teacher")
app.add_typer(segment_app, name="segment")
app.command("quickstart")(quickstart)
app.command("pretrain")(pretrain)
app.command("augment")(augment)
app.command("distill")(distill)
app.command("distill-general")(distill_general)
app.command("export")(export)
app.command("predict")(predict)
app.command("serve")(serve)
app.command("embed")(embed)
app.command("bench")(bench)


