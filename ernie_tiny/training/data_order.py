"""Data order as a pure function of (seed, epoch, step, rank): a resumed run sees the batches the original would have.

Two orders: ``batch_for_step`` (shuffled) and ``bucketed_batch_for_step`` (the same epochs, batches of
similar lengths, so a batch pads little); :class:`BatchOrder` chooses between them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import Enum
from functools import lru_cache
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@lru_cache(maxsize=4)
def _epoch_order(num_items: int, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int) -> tuple[int, ...]:
    order = np.random.default_rng([seed, epoch]).permutation(num_items) if shuffle else np.arange(num_items)
    if world_size > 1:
        # DistributedSampler's rule: wrap around to a multiple of world_size, then rank r takes every r-th item.
        padded = np.resize(order, -(-num_items // world_size) * world_size)
        order = padded[rank::world_size]
    return tuple(order.tolist())


def batch_indices(num_items: int, batch_size: int, shuffle: bool, seed: int, epoch: int,
                  rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Item indices of every batch of one epoch: a pure function of its arguments."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    order = _epoch_order(num_items, shuffle, seed, epoch, rank, world_size)
    return [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def batches(items: Sequence[T], batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
            rank: int = 0, world_size: int = 1) -> Iterator[list[T]]:
    """Yield the batches of one epoch; with ``world_size > 1`` only this rank's shard."""
    for indices in batch_indices(len(items), batch_size, shuffle, seed, epoch, rank, world_size):
        yield [items[i] for i in indices]


def batch_for_step(items: Sequence[T], step: int, batch_size: int, seed: int,
                   rank: int = 0, world_size: int = 1) -> list[T]:
    """The shuffled training batch of global ``step``: epoch ``step // steps_per_epoch``, then its position."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    per_rank = -(-len(items) // world_size)  # each rank's share after DistributedSampler's wrap-around
    epoch, position = divmod(step, -(-per_rank // batch_size))
    order = _epoch_order(len(items), True, seed, epoch, rank, world_size)
    return [items[i] for i in order[position * batch_size:(position + 1) * batch_size]]


class BatchOrder(str, Enum):
    """How a fine-tuning or distillation run groups its examples into batches."""

    auto = "auto"  # length-buckets on CUDA, shuffled on CPU (the CPU results stay those of the shuffled order)
    shuffled = "shuffled"  # a random permutation per epoch, cut into batches
    length_buckets = "length-buckets"  # the same permutation, sorted by length within windows of batches

    def resolve(self, device_type: str) -> "BatchOrder":
        if self is not BatchOrder.auto:
            return self
        return BatchOrder.length_buckets if device_type == "cuda" else BatchOrder.shuffled


BUCKET_WINDOW = 50  # batches sorted together: long enough to group lengths, short enough to mix the epoch


@lru_cache(maxsize=4)
def _bucketed_epoch(lengths: tuple[int, ...], batch_size: int, seed: int, epoch: int, rank: int, world_size: int,
                    window: int) -> tuple[tuple[int, ...], ...]:
    order = _epoch_order(len(lengths), True, seed, epoch, rank, world_size)
    span = window * batch_size  # a multiple of batch_size: only the epoch's last batch can be short
    batches: list[tuple[int, ...]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lengths.__getitem__)  # stable: ties keep the shuffled order
        batches += [tuple(chunk[i:i + batch_size]) for i in range(0, len(chunk), batch_size)]
    # the batches in a random order: no epoch runs from short to long texts
    permutation = np.random.default_rng([seed, epoch, 1]).permutation(len(batches))
    return tuple(batches[i] for i in permutation)


def bucketed_batch_for_step(items: Sequence[T], lengths: Sequence[int], step: int, batch_size: int, seed: int,
                            rank: int = 0, world_size: int = 1, window: int = BUCKET_WINDOW) -> list[T]:
    """The length-bucketed training batch of global ``step``: a pure function of its arguments, like
    :func:`batch_for_step`, whose epochs it keeps (same examples per epoch, same steps per epoch).

    Each epoch's shuffled order is cut into windows of ``window`` batches; each window is sorted
    by ``lengths`` (tokens per item) and cut into batches, and the epoch's batches are shuffled.
    A batch then pads to a length close to each of its rows' instead of to the longest of a
    random sample: less padding, the same examples. A resumed run gets the same batches.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    if len(lengths) != len(items):
        raise ValueError(f"{len(lengths)} lengths for {len(items)} items")
    per_rank = -(-len(items) // world_size)
    epoch, position = divmod(step, -(-per_rank // batch_size))
    batch = _bucketed_epoch(tuple(lengths), batch_size, seed, epoch, rank, world_size, window)[position]
    return [items[i] for i in batch]
