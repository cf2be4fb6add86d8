"""The examples of the next steps, built ahead in worker processes while the model trains.

Masking an untagged text runs jieba.posseg (pure Python, ~180 texts/s on one core), which
would otherwise stall every step. Examples are a pure function of (seed, step, rank), so
workers change nothing but the timing: ``StepPrefetcher(data, ...)(step)`` returns exactly
``data.examples_for_step(step, rank, world_size)``. A step that was not asked for ahead
(the first one after a resume, or any jump) is still built, just without the head start.
``workers=0`` builds everything in the calling process. Example::

    with StepPrefetcher(data, ctx.rank, ctx.world_size, workers=1, ahead=2) as items_for_step:
        train(TrainSpec(..., items_for_step=items_for_step, ...), ...)
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

from ernie_tiny.pretrain.batches import PretrainExample, PretrainingData

_WORKER_DATA: PretrainingData | None = None  # set once per worker process


def _start_worker(data: PretrainingData) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data


def _build(step: int, rank: int, world_size: int) -> list[PretrainExample]:
    return _WORKER_DATA.examples_for_step(step, rank, world_size)


class StepPrefetcher:
    """``items_for_step`` for the training loop that keeps ``ahead`` steps in flight on ``workers`` processes."""

    def __init__(self, data: PretrainingData, rank: int = 0, world_size: int = 1, workers: int = 1, ahead: int = 2):
        if workers < 0 or ahead < 1:
            raise ValueError(f"workers must be >= 0 and ahead >= 1, got {workers} and {ahead}")
        self.data, self.rank, self.world_size, self.ahead = data, rank, world_size, ahead
        self.pending: dict[int, Future] = {}
        self.pool = None
        if workers:
            # fork shares the parent's corpus and loaded jieba dictionary; spawn (macOS/Windows) pickles the data once
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                                            initargs=(data,))

    def __call__(self, step: int) -> list[PretrainExample]:
        if self.pool is None:
            return self.data.examples_for_step(step, self.rank, self.world_size)
        for stale in [s for s in self.pending if s < step]:
            self.pending.pop(stale).cancel()
        for upcoming in range(step, step + self.ahead + 1):
            if upcoming not in self.pending:
                self.pending[upcoming] = self.pool.submit(_build, upcoming, self.rank, self.world_size)
        return self.pending.pop(step).result()

    def close(self) -> None:
        if self.pool is not None:
            for future in self.pending.values():
                future.cancel()
            self.pool.shutdown(wait=True)
            self.pool = None

    def __enter__(self) -> "StepPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
