"""``--backend``, ``--precision`` and ``--cuda-graphs`` of predict, embed and serve, and the one way they load a model.

Imports neither torch nor onnxruntime: ``--backend onnxruntime`` (the default) stays torch-free,
and ``--backend torch`` imports torch only when it loads the checkpoint.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ernie_tiny.commands.options import MAX_THREADS
from ernie_tiny.devices import resolve_device


class InferenceBackend(str, Enum):
    onnxruntime = "onnxruntime"  # an export folder (`ernie-tiny export`)
    torch = "torch"  # a checkpoint folder (`teacher finetune`, `distill`, a Hugging Face folder)


class TorchPrecisionChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


InferenceThreadsOpt = Annotated[Optional[int], typer.Option(
    min=1, max=MAX_THREADS, help="onnxruntime intra-op threads (default: all cores).")]
BackendOpt = Annotated[InferenceBackend, typer.Option(
    "--backend", help="onnxruntime: --model is an export folder; torch: --model is a checkpoint folder "
                      "(what `teacher finetune` and `distill` write, or a Hugging Face folder).")]
PrecisionOpt = Annotated[Optional[TorchPrecisionChoice], typer.Option(
    "--precision", help="--backend torch: fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on the CPU). An "
                        "export's precision is fixed when it is exported.")]
CudaGraphsOpt = Annotated[bool, typer.Option(
    "--cuda-graphs/--no-cuda-graphs", help="--backend torch on CUDA: replay one CUDA graph per (batch, length) "
                                           "bucket, or run eager.")]


def backend_device(device: str, backend: InferenceBackend, precision: TorchPrecisionChoice | None,
                   any_gpu: bool = True) -> str:
    """The device the backend runs on (one-line ``DeviceError`` when absent); checks ``--precision`` fits.

    ``any_gpu=False``: only the first visible GPU, returned as ``cuda`` (what the server's config takes).
    """
    if backend is InferenceBackend.onnxruntime:
        if precision is not None:
            raise ValueError("--precision applies to --backend torch; an export's precision is set by "
                             "`ernie-tiny export --precision`")
        resolved = resolve_device(device, runtimes=("onnxruntime",))
    else:
        resolved = resolve_device(device, runtimes=("torch",), any_gpu=any_gpu)
    return resolved if any_gpu else resolved.split(":")[0]


def load_predictor(model: Path, backend: InferenceBackend, device: str, precision: TorchPrecisionChoice | None,
                   cuda_graphs: bool, threads: int | None, with_embeddings: bool = False):
    """A :class:`~ernie_tiny.deploy.predict.Predictor` of ``model`` on ``device`` (from :func:`backend_device`)."""
    from ernie_tiny.deploy.predict import Predictor

    if backend is InferenceBackend.onnxruntime:
        from ernie_tiny.deploy.onnx_session import Device

        return Predictor.load(model, device=Device(device), threads=threads)
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if precision is None:
        precision = TorchPrecisionChoice.fp16 if device.startswith("cuda") else TorchPrecisionChoice.fp32
    return Predictor.load_torch(model, device=device, precision=precision.value, cuda_graphs=cuda_graphs,
                                with_embeddings=with_embeddings)
