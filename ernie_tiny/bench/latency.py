"""Latency over real texts: tokenize, pad, run, for several model variants side by side.

Every timed run is one pass over the same texts, in batches, for every variant; the
variants take turns inside each run (their order rotates from run to run), so a
noisy neighbour on the machine slows all of them alike and the ratios stay fair.
Per batch three clocks are kept: tokenization (tokenizer + padding to arrays), model
(inputs to device, forward, outputs back to host, which synchronises CUDA) and their
sum, end-to-end. Warm-up batches run first and are not counted.

Each variant tokenizes with its own tokenizer, so a subword student runs on its
shorter sequences; batches are padded to their longest sequence (dynamic padding).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ernie_tiny.tokenization.encoding import Tokenizer, pad_to_arrays

Pair = tuple[str, str | None]
InferFn = Callable[[dict[str, np.ndarray]], np.ndarray]  # padded int64 arrays -> the head's outputs


class Backend(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"


@dataclass
class Variant:
    """One timed configuration: a model on a backend at a precision, fed by a tokenizer."""

    name: str  # row label, e.g. "ERNIE-tiny"
    role: str  # "teacher" or "student"
    backend: str  # "torch" or "onnxruntime"
    precision: str  # "fp32", "int8", "fp16"
    tokenizer: Tokenizer
    infer: InferFn
    input_kind: str = "own"  # "own" tokenizer, or "char-length": the teacher's char sequences
    vocab_size: int | None = None  # ids are taken modulo this (another tokenizer's ids into this model)

    @property
    def label(self) -> str:
        suffix = ", char-length input" if self.input_kind == "char-length" else ""
        return f"{self.name} [{self.backend} {self.precision}{suffix}]"


@dataclass
class LatencyStats:
    """Milliseconds per batch of ``batch_size`` (the last batch may be smaller)."""

    runs: int
    batches: int  # per run
    examples: int  # per run
    batch_size: int
    model_ms: float  # mean over runs of the mean model time per batch
    model_ms_p50: float  # of the per-run means
    model_ms_p95: float
    model_ms_std: float
    batch_ms_p50: float  # of every timed batch of every run
    batch_ms_p95: float
    tokenize_ms: float  # mean per batch, tokenizer + padding
    end_to_end_ms: float  # mean per batch, tokenization + model
    end_to_end_ms_p50: float
    end_to_end_ms_p95: float
    mean_tokens: float  # real tokens per example
    mean_padded_length: float  # sequence length the model saw, per batch
    run_model_ms: list[float] = field(default_factory=list)  # per run: mean model ms per batch
    batch_shapes: list[tuple[int, int]] = field(default_factory=list)  # per batch of a run: (rows, padded length)


def make_batches(variant: Variant, pairs: list[Pair], batch_size: int, max_len: int,
                 sort_by_length: bool) -> list[list[Pair]]:
    """Consecutive batches in dataset order, or of length-sorted texts (by this variant's tokenizer)."""
    order = list(range(len(pairs)))
    if sort_by_length:
        lengths = [len(e) for e in variant.tokenizer.encode_batch(pairs, max_len=max_len)]
        order.sort(key=lambda i: lengths[i])  # stable: equal lengths keep dataset order
    return [[pairs[i] for i in order[start:start + batch_size]] for start in range(0, len(order), batch_size)]


def encode_to_arrays(variant: Variant, batch: list[Pair], max_len: int) -> dict[str, np.ndarray]:
    encodings = variant.tokenizer.encode_batch(batch, max_len=max_len)
    arrays = pad_to_arrays(encodings, pad_id=variant.tokenizer.pad_id)
    if variant.vocab_size is not None:
        arrays["input_ids"] %= variant.vocab_size
    return arrays


def time_batch(variant: Variant, batch: list[Pair], max_len: int) -> tuple[float, float, int, int, int]:
    """(tokenize seconds, model seconds, real tokens, rows, padded length) of one batch."""
    start = time.perf_counter()
    arrays = encode_to_arrays(variant, batch, max_len)
    tokenized = time.perf_counter()
    variant.infer(arrays)
    done = time.perf_counter()
    rows, padded_length = arrays["input_ids"].shape
    return tokenized - start, done - tokenized, int(arrays["attention_mask"].sum()), rows, padded_length


def summarize(per_run: list[list[tuple[float, float, int, int, int]]], batch_size: int,
              examples: int) -> LatencyStats:
    tokenize = np.array([[b[0] for b in run] for run in per_run]) * 1000  # (runs, batches) ms
    model = np.array([[b[1] for b in run] for run in per_run]) * 1000  # (runs, batches) ms
    run_model = model.mean(axis=1)  # (runs,)
    run_total = (model + tokenize).mean(axis=1)  # (runs,)
    first = per_run[0]
    return LatencyStats(
        runs=len(per_run), batches=len(first), examples=examples, batch_size=batch_size,
        model_ms=float(run_model.mean()), model_ms_p50=float(np.percentile(run_model, 50)),
        model_ms_p95=float(np.percentile(run_model, 95)), model_ms_std=float(run_model.std()),
        batch_ms_p50=float(np.percentile(model, 50)), batch_ms_p95=float(np.percentile(model, 95)),
        tokenize_ms=float(tokenize.mean()), end_to_end_ms=float(run_total.mean()),
        end_to_end_ms_p50=float(np.percentile(run_total, 50)), end_to_end_ms_p95=float(np.percentile(run_total, 95)),
        mean_tokens=sum(b[2] for b in first) / examples, mean_padded_length=float(np.mean([b[4] for b in first])),
        run_model_ms=[float(v) for v in run_model], batch_shapes=[(int(b[3]), int(b[4])) for b in first])


def time_variants(variants: list[Variant], pairs: list[Pair], batch_size: int, max_len: int, runs: int,
                  warmup_batches: int = 3, sort_by_length: bool = False,
                  show_progress: bool = True) -> dict[str, LatencyStats]:
    """Time every variant over ``pairs`` ``runs`` times, interleaved; stats keyed by :attr:`Variant.label`."""
    if runs < 1 or batch_size < 1:
        raise ValueError(f"runs and batch_size must be >= 1, got {runs} and {batch_size}")
    if not pairs:
        raise ValueError("no texts to time")
    batches = {v.label: make_batches(v, pairs, batch_size, max_len, sort_by_length) for v in variants}
    for variant in variants:  # warm-up: allocators, thread pools, kernel selection
        for batch in batches[variant.label][:warmup_batches]:
            time_batch(variant, batch, max_len)
    timings: dict[str, list] = {v.label: [] for v in variants}
    total = runs * sum(len(b) for b in batches.values())
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not show_progress, transient=True) as progress:
        bar = progress.add_task("timing", total=total)
        for run in range(runs):
            shift = run % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                progress.update(bar, description=f"run {run + 1}/{runs} {variant.label}")
                per_batch = []
                for batch in batches[variant.label]:
                    per_batch.append(time_batch(variant, batch, max_len))
                    progress.advance(bar)
                timings[variant.label].append(per_batch)
    return {label: summarize(per_run, batch_size, len(pairs)) for label, per_run in timings.items()}
