"""``ernie-tiny predict``: onnxruntime on an export folder (no torch import) or torch on a checkpoint, JSON lines out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ernie_tiny.commands.backend_options import (InferenceThreadsOpt, BackendOpt, CudaGraphsOpt, InferenceBackend, PrecisionOpt,
                                                 backend_device, load_predictor)
from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import DEFAULT_DEVICE, DeviceOpt
from ernie_tiny.io_utils import atomic_write_text


# Characters that end a line for str.splitlines (and some JSON-lines readers) although JSON allows them raw.
LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def json_line(record: dict) -> str:
    """One JSON object on exactly one line, whatever characters its texts hold."""
    return json.dumps(record, ensure_ascii=False).translate(LINE_BREAKS) + "\n"


def summary_line(records: list[dict], max_len: int) -> str:
    """How many texts were predicted, cut to ``max_len`` tokens, or left without a prediction."""
    truncated = sum(1 for r in records if r.get("truncated"))
    empty = sum(1 for r in records if "error" in r)
    return (f"{len(records) - empty} of {len(records)} texts predicted; {truncated} truncated to {max_len} tokens"
            f" (\"truncated\": true); {empty} empty (\"error\", no prediction)")


def predict(
    model: Annotated[Path, typer.Option("--model", help="Export folder, or a .onnx file inside one "
                                                        "(--backend torch: a checkpoint folder).")],
    text: Annotated[Optional[list[str]], typer.Option("--text", help="A text to predict (repeatable); a TAB "
                                                      "separates a text pair. Its output has \"index\": N.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", exists=True, dir_okay=False, help="UTF-8, one text per line (TAB: text pair); "
                                                 "every line gets one output line with \"line\": N, a blank "
                                                 "line an \"error\" instead of a prediction.")] = None,
    output: Annotated[Optional[Path], typer.Option(dir_okay=False, help="Write JSON lines here (default: stdout).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per onnxruntime call.")] = 32,
    max_len: Annotated[Optional[int], typer.Option(min=3, help="Truncation in tokens (default: the export's); "
                                                        "a cut text gets \"truncated\": true.")] = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: InferenceThreadsOpt = None,
    backend: BackendOpt = InferenceBackend.onnxruntime,
    precision: PrecisionOpt = None,
    cuda_graphs: CudaGraphsOpt = True,
    tokenizer_workers: Annotated[int, typer.Option(min=0, max=64, help="Processes that tokenize the next batches "
                                                   "while the model runs (0: in this process). Pays on a GPU with "
                                                   "--file: the model is then faster than tokenizing.")] = 0,
) -> None:
    """Predict with an exported model through onnxruntime alone (or a checkpoint through torch); one JSON object
    per text.

    Example: ernie-tiny predict --model exported/student-int8 --text "房间很干净，服务周到" --text "太吵了"
    On a GPU: ernie-tiny predict --backend torch --device cuda --model runs/student/best --file texts.txt
    """
    err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    with command_errors(also=(RuntimeError,)):  # RuntimeError: onnxruntime's load/run failures
        from ernie_tiny.deploy.predict import empty_text_error, read_text_file

        run_device = backend_device(device, backend, precision)  # first: fail before reading input
        texts = [tuple(t.split("\t", 1)) if "\t" in t else t for t in (text or [])]
        for number, given in enumerate(texts, start=1):
            if empty_text_error(given):
                raise ValueError(f"--text {number} is empty or whitespace only: nothing to predict")
        sources = [{"index": number} for number in range(1, len(texts) + 1)]
        if file is not None:
            lines = read_text_file(file)
            if not lines:
                raise ValueError(f"{file}: no lines to predict")
            texts += lines
            sources += [{"line": number} for number in range(1, len(lines) + 1)]
        if not texts:
            raise ValueError("nothing to predict: give --text or --file")
        predictor = load_predictor(model, backend, run_device, precision, cuda_graphs, threads)
        predictions = predictor.predict(texts, batch_size=batch_size, max_len=max_len,
                                        tokenizer_workers=tokenizer_workers)
        records = [source | p.to_dict() for source, p in zip(sources, predictions)]
        lines_out = "".join(json_line(r) for r in records)
        if output is not None:
            atomic_write_text(output, lines_out)
    if output is None:
        sys.stdout.write(lines_out)
        sys.stdout.flush()
    if output is not None or any(r.get("truncated") or "error" in r for r in records):
        err_console.print(summary_line(records, max_len or predictor.config.max_len), markup=False)
    if output is not None:
        err_console.print(f"wrote {len(records)} lines to {output}", markup=False)
