"""The bench's torch rows: fp32 eager on the CPU; on CUDA fp32, fp16 and bf16 through the deployed runner.

On the CPU a torch row is the model as it is, on dynamically padded batches (``torch_infer``):
the CPU is compute-bound, so padding to buckets would only add work. On CUDA every row runs
:class:`~ernie_tiny.deploy.torch_runner.TorchRunner` (length and batch buckets, one CUDA
graph per bucket, unless ``cuda_graphs`` is off), at each precision, teacher and student
alike, so each student row has a teacher at its own precision; the row's name says the path.
Every bucket the timed batches can reach is captured before timing starts.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ernie_tiny.bench.latency import Backend, InferFn, Variant
from ernie_tiny.deploy.torch_runner import RunnerConfig, TorchPrecision, TorchRunner, bucket_for


def torch_infer(model: nn.Module, device: torch.device) -> InferFn:
    """Arrays in, the head's outputs out (to host: that synchronises CUDA; so does the explicit sync)."""
    def infer(arrays: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {name: torch.from_numpy(value).to(device) for name, value in arrays.items()}
        with torch.inference_mode():
            logits = model(**inputs).logits
        if device.type == "cuda":
            torch.cuda.synchronize()
        return logits.float().cpu().numpy()
    return infer


def runner_infer(runner: TorchRunner) -> InferFn:
    return lambda arrays: runner.run(arrays)["logits"]


def timed_rows(batch_size: int, texts: int) -> list[int]:
    """Batch sizes the timed passes run: full batches and the last, shorter one."""
    rows = [min(batch_size, texts)]
    if texts > batch_size and texts % batch_size:
        rows.append(texts % batch_size)
    return rows


def cuda_runners(models: dict[str, nn.Module], device: torch.device, max_len: int, cuda_graphs: bool,
                 warm_rows: list[int], precisions: tuple[TorchPrecision, ...] = tuple(TorchPrecision),
                 ) -> list[tuple[str, TorchPrecision, TorchRunner]]:
    """``(role, precision, runner)`` per role and precision; each runner holds its own copy of the model,
    with every (rows, length) bucket of ``warm_rows`` x the length buckets captured."""
    runners = []
    for precision in precisions:
        for role, model in models.items():
            config = RunnerConfig(device=str(device), precision=precision, cuda_graphs=cuda_graphs, max_len=max_len)
            runner = TorchRunner(copy.deepcopy(model), ("logits",), config)
            buckets = sorted({bucket_for(rows, runner.batch_sizes) for rows in warm_rows})
            runner.warm_up([(rows, length) for rows in buckets for length in runner.lengths])
            runners.append((role, precision, runner))
    return runners


def torch_variants(models: dict[str, nn.Module], names: dict[str, str], tokenizers: dict, device: torch.device,
                   max_len: int, warm_rows: list[int], cuda_graphs: bool = True) -> list[Variant]:
    """The torch rows of the bench (see the module docstring); ``models``, ``names`` and ``tokenizers`` by role."""
    if device.type != "cuda":
        return [Variant(names[role], role, Backend.torch.value, TorchPrecision.fp32.value, tokenizers[role],
                        torch_infer(model.to(device), device)) for role, model in models.items()]
    variants = []
    for role, precision, runner in cuda_runners(models, device, max_len, cuda_graphs, warm_rows):
        path = "CUDA graphs" if runner.use_graphs else "eager"
        variants.append(Variant(f"{names[role]}, {path}", role, Backend.torch.value, precision.value,
                                tokenizers[role], runner_infer(runner)))
    return variants
