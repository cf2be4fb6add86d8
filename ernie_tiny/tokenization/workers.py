"""Batches tokenized and padded in worker processes, ahead of the model and in input order.

    batches of (text_a, text_b) --W forked processes: encode_batch + pad_to_arrays--> PaddedBatch, in order

On a GPU the student's model takes a fraction of a millisecond per batch, less than tokenizing the
batch, so tokenizing batch k+1 while the model runs batch k is not enough: the tokenizers hold the
GIL (Python, and C over Python objects), so threads cannot share the work, but processes can. Each
worker is forked with the tokenizer (nothing is pickled but texts and ids) and sends back each
batch's ids packed end to end (``PackedBatch``: int32 ids, int8 type ids, lengths), which the parent
pads with numpy; the encodings themselves (spans, tokens) cost ~20x more to send, so they come back
only when asked (``keep_encodings``: NER decoding needs the spans). A task is a few batches: the
pool's per-task cost in the parent is near what tokenizing one batch costs.
``workers=0`` tokenizes in the calling process, lazily, with the same results. Usage::

    with TokenizerPool(tokenizer, workers=4, max_len=128) as pool:
        for batch in pool.map([[("text a", "text b"), ...], ...]):   # PaddedBatch, in order
            outputs = runner.run(batch.arrays)
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.pool import Pool

import numpy as np

from ernie_tiny.tokenization.encoding import Encoding, Tokenizer, pad_to_arrays

Pair = tuple[str, str | None]


@dataclass
class PaddedBatch:
    """One batch: right-padded arrays (B, T), each example's truncation flag and, if kept, its encoding."""

    arrays: dict[str, np.ndarray]
    truncated: list[bool]
    lengths: list[int]  # tokens per example, specials included
    encodings: list[Encoding] | None = None


def padded_batch(tokenizer: Tokenizer, pairs: list[Pair], max_len: int, keep_encodings: bool) -> PaddedBatch:
    """Tokenize and pad one batch in this process (``workers=0``)."""
    encodings = tokenizer.encode_batch(pairs, max_len=max_len)
    return PaddedBatch(pad_to_arrays(encodings, pad_id=tokenizer.pad_id), [e.truncated for e in encodings],
                       [len(e) for e in encodings], encodings if keep_encodings else None)


@dataclass
class PackedBatch:
    """What a worker sends back: every example's ids and type ids end to end, a few bytes per token
    (3.5 KB pickled for 32 LCQMC pairs, against 24 KB for the padded int64 arrays)."""

    ids: np.ndarray  # (sum of lengths,) int32
    type_ids: np.ndarray  # (sum of lengths,) int8
    lengths: np.ndarray  # (B,) int32
    truncated: np.ndarray  # (B,) bool
    encodings: list[Encoding] | None

    @classmethod
    def of(cls, encodings: list[Encoding], keep_encodings: bool) -> "PackedBatch":
        return cls(np.fromiter((i for e in encodings for i in e.input_ids), dtype=np.int32),
                   np.fromiter((t for e in encodings for t in e.token_type_ids), dtype=np.int8),
                   np.fromiter(map(len, encodings), dtype=np.int32, count=len(encodings)),
                   np.fromiter((e.truncated for e in encodings), dtype=bool, count=len(encodings)),
                   encodings if keep_encodings else None)

    def unpack(self, pad_id: int) -> PaddedBatch:
        """The :class:`PaddedBatch` ``pad_to_arrays`` would give: rows right-padded to the longest."""
        if not len(self.lengths):
            raise ValueError("pad_to_arrays needs at least one encoding")  # what the in-process path says
        rows, width = len(self.lengths), int(self.lengths.max())
        real = np.arange(width) < self.lengths[:, None]  # (B, T): row-major, the order the tokens were packed in
        input_ids = np.full((rows, width), pad_id, dtype=np.int64)
        input_ids[real] = self.ids
        token_type_ids = np.zeros((rows, width), dtype=np.int64)
        token_type_ids[real] = self.type_ids
        arrays = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": real.astype(np.int64)}
        return PaddedBatch(arrays, self.truncated.tolist(), self.lengths.tolist(), self.encodings)


# What a worker tokenizes with: given to each forked child by the pool's initializer (fork copies it, nothing is
# pickled), also to a child the pool starts again after one died.
_worker_state: tuple[Tokenizer, int, bool] | None = None


def _start_worker(tokenizer: Tokenizer, max_len: int, keep_encodings: bool) -> None:
    global _worker_state
    _worker_state = (tokenizer, max_len, keep_encodings)


def _tokenize_in_worker(batches: list[list[Pair]]) -> list[PackedBatch]:
    tokenizer, max_len, keep_encodings = _worker_state
    return [PackedBatch.of(tokenizer.encode_batch(pairs, max_len=max_len), keep_encodings) for pairs in batches]


def default_workers() -> int:
    """Tokenizer processes worth starting here: one per core beyond two (the model's thread and the
    feeding thread), at most 8; 0 (in process) on machines with two cores or fewer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 2))


class TokenizerPool:
    """``map(batches)`` -> :class:`PaddedBatch` per batch, tokenized by ``workers`` forked processes."""

    def __init__(self, tokenizer: Tokenizer, workers: int, max_len: int, keep_encodings: bool = False,
                 prefetch: int = 2, batches_per_task: int = 8):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if workers and "fork" not in multiprocessing.get_all_start_methods():
            raise ValueError("tokenizer workers need the fork start method (Linux, macOS); use 0 workers here")
        self.tokenizer, self.workers, self.max_len, self.keep_encodings = tokenizer, workers, max_len, keep_encodings
        self.prefetch = prefetch  # tasks in flight per worker
        # a task is a few batches: a pool's per-task cost in the parent (~0.4 ms: handler threads, pickling,
        # the pipe) is near what tokenizing one batch of 32 pairs costs, so one batch per task would save nothing
        self.batches_per_task = batches_per_task
        self._pool: Pool | None = None

    def __enter__(self) -> "TokenizerPool":
        if self.workers:
            self._pool = multiprocessing.get_context("fork").Pool(
                self.workers, initializer=_start_worker, initargs=(self.tokenizer, self.max_len, self.keep_encodings))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def map(self, batches: Iterable[list[Pair]]) -> Iterator[PaddedBatch]:
        """Each batch tokenized and padded, in order; at most ``prefetch`` tasks (of ``batches_per_task`` batches)
        per worker ahead of the consumer."""
        if self._pool is None:
            if self.workers:
                raise RuntimeError("TokenizerPool.map outside its `with` block")
            for pairs in batches:
                yield padded_batch(self.tokenizer, pairs, self.max_len, self.keep_encodings)
            return
        pad_id = self.tokenizer.pad_id
        window = max(1, self.prefetch * self.workers)
        pending: deque = deque()
        for group in _groups(batches, self.batches_per_task):
            pending.append(self._pool.apply_async(_tokenize_in_worker, (group,)))
            if len(pending) >= window:
                yield from (packed.unpack(pad_id) for packed in pending.popleft().get())
        while pending:
            yield from (packed.unpack(pad_id) for packed in pending.popleft().get())


def _groups(batches: Iterable[list[Pair]], size: int) -> Iterator[list[list[Pair]]]:
    group: list[list[Pair]] = []
    for pairs in batches:
        group.append(pairs)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group
