"""``ernie-tiny export``: the CLI over :mod:`ernie_tiny.deploy.export`.

torch and the exporter are imported inside the command, so that loading the CLI for
``ernie-tiny predict`` stays torch-free.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from ernie_tiny.commands.errors import command_errors


class ExportFormat(str, Enum):
    onnx = "onnx"
    hf = "hf"  # a transformers BertModel / BertFor... folder (ernie_tiny.deploy.hf_export)


class QuantizeMode(str, Enum):
    int8 = "int8"


def export(
    model: Annotated[Path, typer.Option("--model", exists=True, file_okay=False, help="Checkpoint folder (config.json, model.safetensors, tokenizer).")],
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Export folder: model.onnx, onnx_config.json, parity.json, "
                                                    "tokenizer files.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="onnx, or hf: a transformers "
                                                                         "BertModel/BertFor... folder.")] = ExportFormat.onnx,
    quantize: Annotated[Optional[QuantizeMode], typer.Option(help="int8: dynamic quantisation for CPU.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Half precision for CUDA (checked on CPU when no GPU).")] = False,
    opset: Annotated[int, typer.Option(min=14, max=20, help="ONNX opset, 14..20.")] = 17,
    optimize: Annotated[bool, typer.Option("--optimize/--no-optimize",
                                           help="onnxruntime BERT fusions (needed for --quantize/--fp16).")] = True,
    with_embeddings: Annotated[bool, typer.Option("--with-embeddings", help="Also output pooled_output and "
                                                  "sequence_output.")] = False,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="int8: one scale per output channel.")] = False,
    data_dir: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Task folder whose dev.tsv gives the parity texts "
                                                          "(and labels for the accuracy change).")] = None,
    task: Annotated[Optional[str], typer.Option(help="Task of --data-dir (default: the checkpoint's task).")] = None,
    parity_file: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Parity texts, one per line (TAB: text pair).")] = None,
    parity_examples: Annotated[int, typer.Option(min=1, help="How many texts the parity check uses.")] = 256,
    tokenizer: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Tokenizer folder (default: the checkpoint's).")] = None,
    max_len: Annotated[int, typer.Option(min=3, help="Default truncation for predict.")] = 128,
    tolerance: Annotated[float, typer.Option(min=0, help="fp32 parity: max |logit diff| allowed.")] = 1e-4,
) -> None:
    """Export a checkpoint to ONNX with dynamic batch/sequence axes, fused, optionally int8 or fp16.

    Every export is checked against torch on real text (parity.json beside the model).

    Example: ernie-tiny export --model runs/student --out exported/student-int8 --quantize int8 --data-dir ../shared/data/chnsenticorp_htl
    """
    console = Console(highlight=False, soft_wrap=True)
    if format is ExportFormat.hf:
        with command_errors():
            if quantize is not None or fp16:
                raise ValueError("--format hf writes fp32 weights: --quantize and --fp16 are for --format onnx")
            export_hf_folder(console, model, out, data_dir, parity_file, task, parity_examples, tolerance, max_len)
        return
    with command_errors():
        from ernie_tiny.deploy.export import ExportOptions, export_checkpoint, parity_examples_for
        from ernie_tiny.deploy.onnx_session import Precision

        if quantize is not None and fp16:
            raise ValueError("--quantize int8 and --fp16 exclude each other: int8 is for CPU, fp16 for CUDA")
        precision = Precision.int8 if quantize is not None else Precision.fp16 if fp16 else Precision.fp32
        options = ExportOptions(precision=precision, opset=opset, optimize=optimize, with_embeddings=with_embeddings,
                                per_channel=per_channel, max_len=max_len, tolerance=tolerance)
        examples, parity_task, source = parity_examples_for(model, data_dir, parity_file, task,
                                                            limit=parity_examples or None)
        console.print(f"exporting {model} ({precision.value}, opset {opset}); parity texts: {source}", markup=False)
        result = export_checkpoint(model, out, options, examples, parity_task=parity_task, tokenizer_dir=tokenizer,
                                   parity_source=source)
    fused = ", ".join(f"{name} {count}" for name, count in result.fused_operators.items()) or "none (--no-optimize)"
    console.print(f"fused operators: {fused}", markup=False)
    missing = result.config.provenance.get("missing_fusions")
    if missing:
        console.print(Text.assemble(("warning:", "yellow"), f" fusions that did not fire: {', '.join(missing)}"))
    quantized = {k: v for k, v in result.config.operator_counts.items()
                 if k in ("QAttention", "MatMulInteger", "DynamicQuantizeMatMul", "QEmbedLayerNormalization")}
    if quantized:
        console.print(f"quantised operators: {', '.join(f'{k} {v}' for k, v in quantized.items())}", markup=False)
    console.print(f"parity: {result.parity.summary()}", markup=False)
    if result.parity.metric is None and precision is not Precision.fp32:
        console.print("no labelled texts of the model's task: give --data-dir for the accuracy change", markup=False)
    console.print(f"wrote {result.directory}", markup=False)


def export_hf_folder(console: Console, model: Path, out: Path, data_dir: Optional[Path], parity_file: Optional[Path],
                     task: Optional[str], parity_examples: int, tolerance: float, max_len: int = 128) -> None:
    """``--format hf``: the transformers folder, parity-checked on the same texts as an ONNX export."""
    from ernie_tiny.deploy.export import parity_examples_for
    from ernie_tiny.deploy.hf_export import HF_PARITY_FILE, export_hf

    examples, _, source = parity_examples_for(model, data_dir, parity_file, task, limit=parity_examples or None)
    console.print(f"exporting {model} as a Hugging Face folder; parity texts: {source}", markup=False)
    result = export_hf(model, out, examples, tolerance=tolerance, max_len=max_len)
    console.print(f"architecture: {result.architecture}", markup=False)
    if result.parity is None:
        console.print("parity: not checked (transformers is not installed)", markup=False)
    else:
        console.print(f"parity vs transformers ({result.parity['compared']}): max |diff| "
                      f"{result.parity['max_abs_diff']:.2e} on {result.parity['examples']} texts "
                      f"({HF_PARITY_FILE})", markup=False)
    console.print(f"wrote {result.directory}", markup=False)
