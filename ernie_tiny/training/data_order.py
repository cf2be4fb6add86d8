"""Data order as a pure function of (seed, epoch, step, rank): a resumed run sees the batches the original would have."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
