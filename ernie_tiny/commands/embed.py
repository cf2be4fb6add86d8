"""``ernie-tiny embed``: sentence or token embeddings of a text file into ``.npy`` (torch only with --backend torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ernie_tiny.commands.backend_options import (InferenceThreadsOpt, BackendOpt, CudaGraphsOpt, InferenceBackend, PrecisionOpt,
                                                 backend_device, load_predictor)
from ernie_tiny.commands.errors import command_errors
from ernie_tiny.commands.options import DEFAULT_DEVICE, DeviceOpt
from ernie_tiny.deploy.embed import EmbeddingLayer


def embed(
    model: Annotated[Path, typer.Option("--model", help="Export folder with embedding outputs (an encoder export, "
                                                        "or `export --with-embeddings`); --backend torch: any "
                                                        "checkpoint folder.")],
    file: Annotated[Path, typer.Option("--file", exists=True, dir_okay=False, help="One text per line (TAB: text pair); row i is line i + 1.")],
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Folder for <layer>_emb.npy (tokens: top_layer_emb.npy and "
                                                    "top_layer_lengths.npy).")],
    layer: Annotated[EmbeddingLayer, typer.Option(help="pooler, cls, mean (of the top layer) or tokens "
                                                       "(the top layer per token).")] = EmbeddingLayer.pooler,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per onnxruntime call.")] = 32,
    max_len: Annotated[Optional[int], typer.Option(min=3, help="Truncation in tokens (default: the export's).")] = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    threads: InferenceThreadsOpt = None,
    backend: BackendOpt = InferenceBackend.onnxruntime,
    precision: PrecisionOpt = None,
    cuda_graphs: CudaGraphsOpt = True,
    tokenizer_workers: Annotated[int, typer.Option(min=0, max=64, help="Processes that tokenize the file (0: in "
                                                   "this process). Pays on a GPU, where tokenizing costs more "
                                                   "than the model.")] = 0,
) -> None:
    """Embed every line of a file with an exported encoder (or a checkpoint through torch); one row per line.

    Example: ernie-tiny embed --model exported/student-emb --file texts.txt --layer cls --out runs/emb
    """
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with command_errors(also=(RuntimeError,)):  # RuntimeError: onnxruntime's load/run failures
        from ernie_tiny.deploy.embed import check_embedding_outputs, encode_texts, read_lines, write_embeddings

        run_device = backend_device(device, backend, precision)  # first: fail before reading input
        texts = read_lines(file)
        if not texts:
            raise ValueError(f"{file}: no lines to embed")
        predictor = load_predictor(model, backend, run_device, precision, cuda_graphs, threads, with_embeddings=True)
        check_embedding_outputs(predictor.config, layer)
        encodings = encode_texts(predictor.tokenizer, predictor.config, texts, max_len=max_len,
                                 workers=tokenizer_workers)
        columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("embed", total=len(encodings))
            files = write_embeddings(predictor.run, encodings, out, layer, batch_size=batch_size,
                                     progress=lambda done: progress.advance(task, done))
    shape = " x ".join(map(str, files.shape))
    lengths = f" and their lengths to {files.lengths}" if files.lengths is not None else ""
    console.print(f"wrote {files.rows} rows ({layer.value}, {shape}) to {files.vectors}{lengths}", markup=False)
