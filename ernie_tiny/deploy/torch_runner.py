"""Torch inference for deployment: padded int64 arrays in, named float32 outputs out, fast on a GPU.

    arrays (B, T) --pad to buckets--> (B', T')  B' in batch_sizes, T' a multiple of 16 (or max_len)
        --CUDA: replay the bucket's CUDA graph (captured on first use) | CPU or no graphs: eager forward-->
        outputs (B', ...) --one copy to the host, cut back to (B, T)--> {"logits", "pooled_output", ...}

A small encoder at small batch on a GPU is bound by kernel launches, not arithmetic: a CUDA
graph replays a whole captured forward as one launch. Graphs need fixed shapes, so batches
are padded to a few (batch, length) buckets, each captured once with static input and
output buffers. Padding never changes a real token's output (the attention mask hides
padded keys; padded rows are dropped), so a bucket's outputs equal the unpadded batch's.

:class:`TorchRunner` has the session shape ``run(arrays) -> outputs`` that
:class:`ernie_tiny.deploy.predict.Predictor` runs, like an onnxruntime session::

    runner = TorchRunner(model, ("logits",), RunnerConfig(device="cuda", precision=TorchPrecision.fp16))
    runner.run(pad_to_arrays(encodings))["logits"]   # float32 numpy, (B, num_labels)
    runner.path                                       # "torch cuda fp16, CUDA graphs, length buckets of 16"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch
from torch import nn

from ernie_tiny.heads import HeadKind
from ernie_tiny.model import encoder_of
from ernie_tiny.tokenization.encoding import Tokenizer

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
PER_TOKEN_OUTPUTS = ("sequence_output",)  # (B, T, H); token-classification logits are per token too
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
LENGTH_STEP = 16
WARMUP_PASSES = 2  # eager passes on a side stream before a capture: cuBLAS handles, workspaces, allocator


class TorchPrecision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"  # weights and activations in float16 (GPU; slow on most CPUs)
    bf16 = "bf16"  # weights and activations in bfloat16


DTYPES = {TorchPrecision.fp32: torch.float32, TorchPrecision.fp16: torch.float16, TorchPrecision.bf16: torch.bfloat16}


def length_buckets(max_len: int, step: int = LENGTH_STEP) -> tuple[int, ...]:
    """Padded lengths a batch may take: multiples of ``step`` up to ``max_len``, and ``max_len`` itself."""
    if max_len < 1 or step < 1:
        raise ValueError(f"max_len and step must be >= 1, got {max_len} and {step}")
    buckets = list(range(step, max_len + 1, step))
    if not buckets or buckets[-1] != max_len:
        buckets.append(max_len)
    return tuple(buckets)


def bucket_for(size: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds ``size``; ``ValueError`` when none does."""
    for bucket in buckets:
        if bucket >= size:
            return bucket
    raise ValueError(f"{size} exceeds the largest bucket {buckets[-1]}")


def pad_to_bucket(arrays: dict[str, np.ndarray], rows: int, length: int, pad_id: int) -> np.ndarray:
    """(3, rows, length) int64: input_ids, token_type_ids, attention_mask right-padded; padded rows hold pad_id."""
    batch, width = arrays["input_ids"].shape
    stacked = np.zeros((3, rows, length), dtype=np.int64)  # (3, B', T')
    stacked[0] = pad_id
    for index, name in enumerate(INPUT_NAMES):
        stacked[index, :batch, :width] = arrays[name]
    return stacked


@dataclass(frozen=True)
class RunnerConfig:
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"
    precision: TorchPrecision = TorchPrecision.fp32
    cuda_graphs: bool = True  # on CUDA: capture each (batch, length) bucket once and replay it; False: eager
    length_step: int = LENGTH_STEP  # padded lengths are multiples of this (and max_len)
    batch_sizes: tuple[int, ...] = BATCH_SIZES  # padded batch sizes; a larger batch runs in chunks of the largest
    max_len: int | None = None  # the longest bucket (default: the model's max_position_embeddings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", TorchPrecision(self.precision))
        object.__setattr__(self, "batch_sizes", tuple(sorted(set(self.batch_sizes))))
        if not self.batch_sizes or self.batch_sizes[0] < 1:
            raise ValueError(f"batch_sizes must be >= 1, got {self.batch_sizes}")
        if self.length_step < 1:
            raise ValueError(f"length_step must be >= 1, got {self.length_step}")


@dataclass
class CapturedBucket:
    """One (batch, length) bucket's CUDA graph and its static buffers."""

    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor  # (3, B', T') int64 on the device: what the graph reads
    host_inputs: torch.Tensor  # (3, B', T') int64, pinned: filled on the host, copied in one transfer
    outputs: dict[str, torch.Tensor]  # float32 on the device: what the graph writes
    host_outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # pinned copies of outputs


class TorchRunner:
    """A head or encoder model on a device at a precision, run on padded batches (see the module docstring)."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...], config: RunnerConfig = RunnerConfig()):
        self.head = HeadKind(getattr(model, "head_kind", HeadKind.encoder))
        if self.head is HeadKind.masked_lm:
            raise ValueError("a masked_lm checkpoint has no deployable head: use a fine-tuned or encoder checkpoint")
        known = (() if self.head is HeadKind.encoder else ("logits",)) + ("pooled_output", "sequence_output")
        unknown = [name for name in outputs if name not in known]
        if not outputs or unknown:
            raise ValueError(f"outputs {list(outputs)}: this {self.head.value} model gives {', '.join(known)}")
        self.config = config
        self.outputs = tuple(outputs)
        self.device = torch.device(config.device)
        encoder_config = encoder_of(model).config
        self.pad_id = encoder_config.pad_token_id
        self.model = model.to(device=self.device, dtype=DTYPES[config.precision]).eval()
        self.lengths = length_buckets(min(config.max_len or encoder_config.max_position_embeddings,
                                          encoder_config.max_position_embeddings), config.length_step)
        self.batch_sizes = config.batch_sizes
        self.use_graphs = config.cuda_graphs and self.device.type == "cuda"
        self.captured: dict[tuple[int, int], CapturedBucket] = {}
        self.pool = None  # one CUDA graph memory pool for every bucket: replays are serial, on one stream

    @property
    def path(self) -> str:
        """Which path runs, for bench labels and ``/v1/model``."""
        how = "CUDA graphs" if self.use_graphs else "eager"
        return f"torch {self.device.type} {self.config.precision.value}, {how}, length buckets of " \
               f"{self.config.length_step}"

    def per_token(self, name: str) -> bool:
        return name in PER_TOKEN_OUTPUTS or (name == "logits" and self.head is HeadKind.token_classification)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The requested outputs of one padded batch, float32, on the device."""
        if self.head is HeadKind.encoder:
            encoder, logits = self.model(input_ids, token_type_ids, attention_mask), None
        else:
            output = self.model(input_ids, token_type_ids, attention_mask)
            encoder, logits = output.encoder, output.logits
        values = {"logits": logits, "pooled_output": encoder.pooled_output,
                  "sequence_output": encoder.last_hidden_state}
        return {name: values[name].float() for name in self.outputs}

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every requested output of a right-padded batch (``pad_to_arrays``), float32, in its (B, T) shape."""
        rows = arrays["input_ids"].shape[0]
        largest = self.batch_sizes[-1]
        if rows <= largest:
            return self.run_bucket(arrays)
        chunks = [self.run_bucket({name: value[start:start + largest] for name, value in arrays.items()})
                  for start in range(0, rows, largest)]
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in self.outputs}

    def run_bucket(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, length = arrays["input_ids"].shape
        if length > self.lengths[-1]:
            raise ValueError(f"sequence length {length} exceeds the longest bucket {self.lengths[-1]} "
                             "(the model's positions, or --max-len)")
        bucket = (bucket_for(rows, self.batch_sizes), bucket_for(length, self.lengths))
        stacked = pad_to_bucket(arrays, *bucket, self.pad_id)  # (3, B', T')
        outputs = self.replay(bucket, stacked) if self.use_graphs else self.eager(stacked)
        return {name: (value[:rows, :length] if self.per_token(name) else value[:rows]).copy()
                for name, value in outputs.items()}

    @torch.inference_mode()
    def eager(self, stacked: np.ndarray) -> dict[str, np.ndarray]:
        inputs = torch.from_numpy(stacked).to(self.device)  # (3, B', T'): one transfer
        # No padding at all (known here, on the host, for free): no mask, so CUDA may run flash attention.
        mask = None if stacked[2].all() else inputs[2]
        outputs = self.forward(inputs[0], inputs[1], mask)
        if self.device.type != "cuda":
            return {name: value.numpy() for name, value in outputs.items()}
        host = {name: value.to("cpu", non_blocking=True) for name, value in outputs.items()}
        torch.cuda.current_stream(self.device).synchronize()  # once per batch, for every output
        return {name: value.numpy() for name, value in host.items()}

    def replay(self, bucket: tuple[int, int], stacked: np.ndarray) -> dict[str, np.ndarray]:
        captured = self.captured.get(bucket)
        if captured is None:
            captured = self.captured[bucket] = self.capture(*bucket)
        captured.host_inputs.numpy()[...] = stacked
        captured.inputs.copy_(captured.host_inputs, non_blocking=True)
        captured.graph.replay()
        for name, value in captured.outputs.items():
            captured.host_outputs[name].copy_(value, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()  # once per batch, for every output
        return {name: value.numpy() for name, value in captured.host_outputs.items()}

    def capture(self, rows: int, length: int) -> CapturedBucket:
        """Capture the forward at (rows, length) as a CUDA graph, after warm-up passes on a side stream."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        inputs = torch.zeros((3, rows, length), dtype=torch.int64, device=self.device)  # (3, B', T')
        inputs[0] = self.pad_id
        inputs[2, :, 0] = 1  # one real token per row while warming up and capturing
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(WARMUP_PASSES):
                self.forward(inputs[0], inputs[1], inputs[2])
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the server's other threads (tokenization, the event loop) may touch CUDA state meanwhile
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            outputs = self.forward(inputs[0], inputs[1], inputs[2])  # the mask input stays: padded buckets need it
        host_inputs = torch.empty(inputs.shape, dtype=torch.int64, pin_memory=True)
        host_outputs = {name: torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                        for name, value in outputs.items()}
        return CapturedBucket(graph, inputs, host_inputs, outputs, host_outputs)

    def warm_up_buckets(self, max_rows: int, max_len: int) -> int:
        """Run (on CUDA: capture) every bucket up to ``max_rows`` x ``max_len`` now; returns how many.

        A server does this before it answers, so that no request pays a capture."""
        rows = [b for b in self.batch_sizes if b <= bucket_for(min(max_rows, self.batch_sizes[-1]), self.batch_sizes)]
        lengths = [n for n in self.lengths if n <= bucket_for(min(max_len, self.lengths[-1]), self.lengths)]
        self.warm_up([(r, n) for r in rows for n in lengths])
        return len(rows) * len(lengths)

    def warm_up(self, shapes: list[tuple[int, int]]) -> None:
        """Run (and on CUDA capture) the buckets of these (rows, length) shapes now, not on first use."""
        for rows, length in shapes:
            self.run_bucket({"input_ids": np.full((rows, length), self.pad_id, dtype=np.int64),
                             "token_type_ids": np.zeros((rows, length), dtype=np.int64),
                             "attention_mask": np.ones((rows, length), dtype=np.int64)})


DEFAULT_MAX_LEN = 128  # truncation of a checkpoint folder (an export folder stores its own)


@dataclass
class TorchModelConfig:
    """What :class:`~ernie_tiny.deploy.predict.Predictor` reads about a model: the fields of an export's
    ``onnx_config.json`` that prediction uses, for a torch checkpoint folder."""

    head: str  # ernie_tiny.heads.HeadKind value
    labels: list[str]
    tokenizer_kind: str | None
    precision: TorchPrecision
    outputs: list[str]
    task: str | None
    max_len: int
    max_position_embeddings: int
    backend: str = ""  # TorchRunner.path: which path runs


def load_torch_runner(path: str | os.PathLike, config: RunnerConfig,
                      with_embeddings: bool = False) -> tuple[TorchRunner, TorchModelConfig, Tokenizer]:
    """``(runner, model config, tokenizer)`` of a checkpoint folder in any layout ``teacher convert`` reads.

    Outputs: ``logits`` of a head model, plus ``pooled_output`` and ``sequence_output`` for an
    encoder or with ``with_embeddings``. Raises ``ValueError`` (one line) for a folder without a
    tokenizer or with a masked-LM head.
    """
    from ernie_tiny.convert.detect import load_checkpoint

    loaded = load_checkpoint(path)
    if loaded.tokenizer is None:
        raise ValueError(f"{path}: the checkpoint holds no tokenizer files")
    head = HeadKind(getattr(loaded.model, "head_kind", HeadKind.encoder))
    outputs = () if head is HeadKind.encoder else ("logits",)
    if with_embeddings or head is HeadKind.encoder:
        outputs += ("pooled_output", "sequence_output")
    runner = TorchRunner(loaded.model, outputs, config)
    positions = loaded.config.max_position_embeddings
    model_config = TorchModelConfig(head=head.value, labels=list(loaded.meta.labels),
                                    tokenizer_kind=loaded.meta.tokenizer_kind, precision=config.precision,
                                    outputs=list(outputs), task=loaded.meta.task,
                                    max_len=min(DEFAULT_MAX_LEN, positions, runner.lengths[-1]),
                                    max_position_embeddings=min(positions, runner.lengths[-1]),
                                    backend=runner.path)
    return runner, model_config, loaded.tokenizer
