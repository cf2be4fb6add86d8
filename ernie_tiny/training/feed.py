"""How the loop gets each step's batches onto the device: built inline or by workers, pinned, copied asynchronously.

    StepBatches(spec, grad_accum).iterate(start, workers, pin)   # step s -> StepItem(micro-batches, examples)
    to_device(batch, device)                                       # every tensor of a batch, non-blocking

A step's batches are a pure function of the step (the trainer's data order), so they can be
built ahead in ``torch.utils.data.DataLoader`` workers and arrive in step order, equal to
the ones the inline path builds. On CUDA the DataLoader's pin thread copies each step into
page-locked memory (:meth:`StepItem.pin_memory`), and :func:`to_device` copies it to the GPU
with ``non_blocking=True``, so the copy overlaps the previous step's kernels.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


def map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with ``fn`` applied to every tensor in it: dataclass fields, tuples, lists and dicts, recursively.

    Dataclasses are shallow-copied and their fields set in place of the copy (frozen ones too),
    so a batch class needs no ``to``/``pin_memory`` method of its own.
    """
    if isinstance(value, torch.Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        mapped = copy.copy(value)
        for field in dataclasses.fields(value):
            object.__setattr__(mapped, field.name, map_tensors(getattr(value, field.name), fn))
        return mapped
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple takes its fields positionally
        return type(value)(*(map_tensors(part, fn) for part in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(part, fn) for part in value)
    if isinstance(value, dict):
        return {key: map_tensors(part, fn) for key, part in value.items()}
    return value


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor on ``device``; the copy is asynchronous when the tensor is pinned."""
    return map_tensors(batch, lambda tensor: tensor.to(device, non_blocking=True))


@dataclass
class StepItem:
    """One step's collated micro-batches ``[(examples, batch), ...]`` and its example count."""

    micro_batches: list[tuple[int, Any]]
    examples: int

    def pin_memory(self) -> "StepItem":
        """Called by the DataLoader's pin thread (``pin_memory=True``): every tensor page-locked."""
        return StepItem(map_tensors(self.micro_batches, lambda tensor: tensor.pin_memory()), self.examples)


def split_micro_batches(items: Sequence, parts: int) -> list[Sequence]:
    """``items`` cut into ``parts`` consecutive, nearly equal slices (empty slices dropped)."""
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]


def keep_as_is(sample: Any) -> Any:
    """The DataLoader's per-sample collate: the step's batches are already collated."""
    return sample


class StepBatches(torch.utils.data.Dataset):
    """Step ``s`` -> its :class:`StepItem`: a pure function of ``s``, so workers may build it ahead.

    ``items_for_step(s)`` gives the step's examples and ``collate`` turns each micro-batch of
    them into a batch on the CPU; ``steps`` bounds the steps a loader may ask for.
    """

    def __init__(self, items_for_step: Callable[[int], Sequence], collate: Callable[[Sequence], Any],
                 steps: int, grad_accum: int):
        self.items_for_step, self.collate = items_for_step, collate
        self.steps, self.grad_accum = steps, grad_accum

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> StepItem:
        items = self.items_for_step(step)
        return StepItem([(len(micro), self.collate(micro)) for micro in split_micro_batches(items, self.grad_accum)],
                        len(items))

    def iterate(self, start: int, workers: int, pin: bool = False):
        """The steps from ``start`` on, built inline (``workers == 0``) or by worker processes.

        ``pin`` (CUDA only) page-locks each step in the loader's pin thread; the inline path never
        pins: it would add a host copy on the thread that launches the kernels.
        """
        if workers == 0:
            return (self[step] for step in range(start, len(self)))
        loader = torch.utils.data.DataLoader(self, batch_size=None, sampler=range(start, len(self)),
                                             num_workers=workers, collate_fn=keep_as_is, prefetch_factor=4,
                                             pin_memory=pin,
                                             # its own generator: seeding the workers must not draw from the
                                             # global one, or the dropout masks would differ from the inline path
                                             generator=torch.Generator().manual_seed(0))
        return iter(loader)
