"""Tokenize a large batch in worker processes: jieba is pure Python, so threads would not help.

Workers are *spawned* (never forked: the parent may hold torch or rich threads) and each
rebuilds the tokenizer from its bytes once, which costs about a second (jieba's dictionary).
It pays for corpora of many thousands of texts (distillation data, stats over a train split),
not for inference batches. A script that uses it needs the usual ``if __name__ == "__main__":``
guard, as spawned workers import the main module.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_WORKER_TOKENIZER = None  # the tokenizer of this worker process


def _init_worker(state: dict[str, Any]) -> None:
    global _WORKER_TOKENIZER
    from ernie_tiny.subword.tokenizer import SubwordTokenizer

    _WORKER_TOKENIZER = SubwordTokenizer(**state)


def _tokenize_chunk(texts: list[str]) -> list[list[tuple[int, int, int]]]:
    return _WORKER_TOKENIZER.tokenize_with_spans_batch(texts)


def tokenize_in_processes(state: dict[str, Any], texts: list[str], workers: int
                          ) -> list[list[tuple[int, int, int]]]:
    """``SubwordTokenizer(**state).tokenize_with_spans_batch(texts)``, split over ``workers`` processes."""
    chunk = max(1, math.ceil(len(texts) / (4 * workers)))  # 4 chunks per worker evens out long texts
    parts = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(state,)) as pool:
        return [tokens for part in pool.map(_tokenize_chunk, parts) for tokens in part]
