"""Dynamic batching: concurrent requests' texts run as one onnxruntime call, each request gets its own answers.

    request --prepare (tokenize, in a thread)--> items --queue--> batch of <= max_batch items
        --worker thread: pad, run the graph once, decode every row--> each item's future --> the request

A request's items keep their positions: :meth:`DynamicBatcher.submit` returns the
results in the order ``prepare`` produced them, whichever batches they ran in.

When a batch is sent: as soon as the queue holds ``max_batch`` items (or, with a token
budget ``max_batch_tokens``, as many as fit in it: rows x the longest row, as
text-embeddings-inference's ``max_batch_tokens``); or when
``max_wait_s`` has passed since the batch's first item; or at once when no request
is on its way in (none is being tokenized), because then waiting cannot gather
anything. So a lone client never pays the wait, and under load the batches fill
with the requests that arrived while the previous batch ran.

Inside a batch the texts are sorted by length and cut into runs of similar length, one
onnxruntime call each (:func:`length_groups`): padded to its longest text, a batch of the
ChnSentiCorp dev texts in arrival order computes 1.5x the tokens of its texts, which on a
CPU costs more than batching saves. Where a call's fixed cost is high next to a token's
(a GPU, a micro model) the batch stays one call. Inference runs in one worker thread
(onnxruntime and torch release the GIL), so tokenization (in other threads) and the event
loop (``/healthz``, ``/metrics``) keep going while a batch runs.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from ernie_tiny.tokenization.encoding import Encoding

Result = TypeVar("Result")
Outputs = dict[str, np.ndarray]


@dataclass
class BatchItem(Generic[Result]):
    """One text of a request: its encoding and how to read its result off row ``row`` of the batch outputs."""

    encoding: Encoding
    decode: Callable[[Outputs, int], Result]


@dataclass
class BatchStats:
    """One onnxruntime call, for metrics."""

    size: int  # items (texts) in the batch
    queue_wait_s: list[float]  # per item: enqueued -> batch started
    model_s: float  # pad + run + decode, in the worker thread
    calls: int  # onnxruntime calls: one per length group
    real_tokens: int  # sum of the items' lengths
    padded_tokens: int  # what the graph computed: per call, rows x its longest row


@dataclass
class QueuedItem:
    item: BatchItem
    future: asyncio.Future
    enqueued_at: float = field(default_factory=time.perf_counter)


class ServerShuttingDown(RuntimeError):
    """A request arrived after :meth:`DynamicBatcher.close` began."""


def length_groups(lengths: list[int], call_cost_tokens: float) -> list[list[int]]:
    """Indices of ``lengths`` in runs of similar length, one onnxruntime call per run.

    Sorted by length, the batch is cut where the cuts minimise

        sum over runs of (rows x longest row)  +  call_cost_tokens x runs,

    the tokens the calls compute, padding included, plus what each call costs besides its
    tokens. Dynamic programming over the sorted order: O(n^2) for n <= max_batch.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sorted_lengths = [lengths[i] for i in order]
    best = [0.0] + [math.inf] * len(order)  # best[k]: the cheapest cost of the k shortest rows
    run_start = [0] * (len(order) + 1)  # where the last run of that cheapest split starts
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + call_cost_tokens + (end - start) * sorted_lengths[end - 1]
            if cost < best[end]:
                best[end], run_start[end] = cost, start
    runs, end = [], len(order)
    while end > 0:
        runs.append(order[run_start[end]:end])
        end = run_start[end]
    return runs[::-1]


def items_within_budget(lengths: list[int], max_items: int, max_tokens: int | None) -> int:
    """How many of the first ``lengths`` make a batch: at most ``max_items``, and with a token budget at most
    as many as keep rows x the longest row <= ``max_tokens`` (the first always goes, however long)."""
    count, longest = 0, 0
    for length in lengths[:max_items]:
        longest = max(longest, length)
        if count and max_tokens is not None and (count + 1) * longest > max_tokens:
            break
        count += 1
    return count


class DynamicBatcher:
    """Groups items of concurrent requests into batches for ``run`` (padded batch of encodings -> outputs)."""

    def __init__(self, run: Callable[[list[Encoding]], Outputs], max_batch: int = 32, max_wait_s: float = 0.005,
                 call_cost_tokens: float = 0.0, on_batch: Callable[[BatchStats], None] | None = None,
                 max_batch_tokens: int | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait_s}")
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_batch_tokens = max_batch_tokens  # rows x longest row per batch; None: max_batch alone decides
        self.call_cost_tokens = call_cost_tokens  # see length_groups; 0 runs each distinct length apart
        self.on_batch = on_batch
        self.arriving = 0  # requests being prepared (tokenized): their items are on their way
        self.queue: deque[QueuedItem] = deque()
        self.changed = asyncio.Event()  # set when the queue grows or a request stops arriving
        self.closing = False
        self.running = False  # a batch is in the worker thread
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ernie-tiny-onnxruntime")
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self.worker = asyncio.get_running_loop().create_task(self.serve_batches(), name="ernie-tiny-batcher")

    async def submit(self, prepare: Callable[[], list[BatchItem[Result]]]) -> list[Result]:
        """Results of ``prepare()``'s items, in their order; ``prepare`` runs in a thread and may raise."""
        if self.closing:
            raise ServerShuttingDown("the server is shutting down")
        self.arriving += 1
        try:
            items = await asyncio.to_thread(prepare)
        finally:
            self.arriving -= 1
            self.changed.set()
        loop = asyncio.get_running_loop()
        queued = [QueuedItem(item, loop.create_future()) for item in items]
        self.queue.extend(queued)
        self.changed.set()
        return list(await asyncio.gather(*(q.future for q in queued)))

    async def next_batch(self) -> list[QueuedItem]:
        """Wait for the first item, then for more while it pays (see the module docstring)."""
        while not self.queue:
            self.changed.clear()
            await self.changed.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while not self.queue_fills_a_batch() and self.arriving > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                break
        return [self.queue.popleft() for _ in range(self.batch_length())]

    def batch_length(self) -> int:
        """How many queued items the next batch takes."""
        lengths = [len(q.item.encoding) for q in itertools.islice(self.queue, self.max_batch + 1)]
        return items_within_budget(lengths, self.max_batch, self.max_batch_tokens)

    def queue_fills_a_batch(self) -> bool:
        """Whether the queue already holds a full batch (``max_batch`` items, or the token budget's worth)."""
        return len(self.queue) >= self.max_batch or self.batch_length() < len(self.queue)

    def run_batch(self, batch: list[QueuedItem]) -> tuple[list[Any], BatchStats]:
        """In the worker thread: one graph call per length group, then every item's result."""
        started = time.perf_counter()
        lengths = [len(q.item.encoding) for q in batch]
        results: list[Any] = [None] * len(batch)
        groups = length_groups(lengths, self.call_cost_tokens)
        for group in groups:
            outputs = self.run([batch[i].item.encoding for i in group])
            for row, index in enumerate(group):
                results[index] = batch[index].item.decode(outputs, row)
        stats = BatchStats(size=len(batch), queue_wait_s=[started - q.enqueued_at for q in batch],
                           model_s=time.perf_counter() - started, calls=len(groups), real_tokens=sum(lengths),
                           padded_tokens=sum(len(g) * max(lengths[i] for i in g) for g in groups))
        return results, stats

    async def serve_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.next_batch()
            self.running = True
            try:
                results, stats = await loop.run_in_executor(self.executor, self.run_batch, batch)
            except Exception as err:  # a failed call fails its batch's requests, never the server
                for q in batch:
                    if not q.future.done():
                        q.future.set_exception(err)
                continue
            finally:
                self.running = False
            for q, result in zip(batch, results):
                if not q.future.done():  # a cancelled request (client gone) has no one to answer
                    q.future.set_result(result)
            if self.on_batch is not None:
                self.on_batch(stats)

    async def close(self) -> None:
        """Refuse new requests, answer the queued ones, stop the loop and the worker thread."""
        self.closing = True
        while self.queue or self.arriving or self.running:
            await asyncio.sleep(0.01)
        if self.worker is not None:
            self.worker.cancel()
            try:
                await self.worker
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)
