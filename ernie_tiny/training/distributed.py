"""One process or many: the same training code runs alone or under ``torchrun``.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`init_distributed` reads them, joins the process group (NCCL on GPUs, gloo on
CPUs) and returns a :class:`DistributedContext`. Every process trains on its own
shard of each batch (``training.batches(..., rank, world_size)``), DDP averages the
gradients, logged losses and eval counts are all-reduced, and only rank 0 writes
files or prints progress.

Usage::

    ctx = init_distributed("cpu")
    model = wrap_ddp(model, ctx)
    ...
    if ctx.is_main:
        save(...)
    shutdown_distributed(ctx)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: rank ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None = None  # None when running as a single process

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from err


def resolve_device(requested: str | None) -> torch.device:
    """``cuda`` when available and not told otherwise, else ``cpu``; an explicit ``cuda`` without a GPU is an error."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available")
    return device


def init_distributed(requested_device: str | None = None) -> DistributedContext:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; otherwise a single-process context."""
    world_size = env_int("WORLD_SIZE", 1)
    rank = env_int("RANK", 0)
    local_rank = env_int("LOCAL_RANK", 0)
    device = resolve_device(requested_device)
    if world_size <= 1:
        return DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
    if device.type == "cuda":
        # One GPU per process: LOCAL_RANK picks it, whatever index the user asked for.
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def shutdown_distributed(ctx: DistributedContext) -> None:
    if ctx.is_distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    """Wait for every process (e.g. until rank 0 has written a file the others will read)."""
    if ctx.is_distributed:
        dist.barrier()


def wrap_ddp(module: nn.Module, ctx: DistributedContext) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed, else unchanged.

    ``find_unused_parameters``: the intermediate stage never touches the classifier and
    the prediction stage never touches the hidden-state projections, so some parameters
    get no gradient in a step; DDP must not wait for them.
    """
    if not ctx.is_distributed:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def all_reduce_sum(values: list[float], ctx: DistributedContext) -> list[float]:
    """Sum each scalar over processes (eval counts, example counts)."""
    if not ctx.is_distributed or not values:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=reduce_device(ctx))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_gather_objects(obj: Any, ctx: DistributedContext) -> list[Any]:
    """Every process's ``obj``, in rank order (one-element list when not distributed)."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def reduce_device(ctx: DistributedContext) -> torch.device:
    # NCCL reduces only CUDA tensors; gloo only CPU ones.
    return ctx.device if ctx.backend == "nccl" else torch.device("cpu")


Result = TypeVar("Result")


def run_in_process_group(device: str | None, console: Console | None,
                         body: Callable[[DistributedContext, Console], Result]) -> Result:
    """``body(ctx, console)`` inside the process group (one process outside torchrun); only rank 0 prints."""
    ctx = init_distributed(device)
    try:
        console = (console or Console()) if ctx.is_main else Console(quiet=True)
        return body(ctx, console)
    finally:
        shutdown_distributed(ctx)
