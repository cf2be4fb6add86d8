"""``ernie-tiny predict``: onnxruntime inference on an export folder, JSON lines out. Imports no torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ernie_tiny.deploy.onnx_session import Device
from ernie_tiny.io_utils import atomic_write_text


def predict(
    model: Annotated[Path, typer.Option("--model", help="Export folder, or a .onnx file inside one.")],
    text: Annotated[Optional[list[str]], typer.Option("--text", help="A text to predict (repeatable); "
                                                      "a TAB separates a text pair.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="One text per line (TAB: text pair).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write JSON lines here (default: stdout).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per onnxruntime call.")] = 32,
    max_len: Annotated[Optional[int], typer.Option(help="Truncation (default: the export's).")] = None,
    device: Annotated[Device, typer.Option(help="cpu, or cuda with onnxruntime-gpu.")] = Device.cpu,
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads (default: all cores).")] = None,
) -> None:
    """Predict with an exported model through onnxruntime alone; one JSON object per text.

    Example: ernie-tiny predict --model exported/student-int8 --text "房间很干净，服务周到" --text "太吵了"
    """
    err_console = Console(stderr=True)
    try:
        from ernie_tiny.deploy.predict import Predictor, read_text_file

        texts = [tuple(t.split("\t", 1)) if "\t" in t else t for t in (text or [])]
        if file is not None:
            texts += read_text_file(file)
        if not texts:
            raise ValueError("nothing to predict: give --text or --file")
        predictor = Predictor.load(model, device=device, threads=threads)
        predictions = predictor.predict(texts, batch_size=batch_size, max_len=max_len)
    except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: onnxruntime's load/run failures
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    lines = "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in predictions)
    if output is None:
        sys.stdout.write(lines)
        sys.stdout.flush()
    else:
        atomic_write_text(output, lines)
        err_console.print(f"wrote {len(predictions)} predictions to {output}", highlight=False)
