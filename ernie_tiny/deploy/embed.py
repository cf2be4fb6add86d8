"""Sentence and token embeddings from an exported encoder, shared by ``ernie-tiny embed`` and the server.

The layers are the seed's ``--encode_layer`` choices, read off the graph outputs that
``ernie-tiny export --with-embeddings`` (or any encoder export) adds:

    pooler   tanh(W h_[CLS] + b), the pooled output          (H,)     from pooled_output
    cls      the top layer's [CLS] hidden state              (H,)     from sequence_output[:, 0]
    mean     the top layer averaged over the real tokens      (H,)     sequence_output, [CLS]/[SEP] included,
                                                                      padding excluded
    tokens   the top layer, one vector per token             (T_i, H) sequence_output[:, :T_i]

:func:`write_embeddings` streams them into ``.npy`` files named like the seed's FAQ1
(``cls_emb.npy``, ``top_layer_emb.npy``), one row per input text, in input order.
No torch import here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from ernie_tiny.deploy.onnx_session import OnnxModelConfig
from ernie_tiny.deploy.predict import read_text_file
from ernie_tiny.tokenization.encoding import Encoding, Tokenizer
from ernie_tiny.tokenization.workers import TokenizerPool

POOLED_OUTPUT, SEQUENCE_OUTPUT = "pooled_output", "sequence_output"
LENGTHS_FILE = "top_layer_lengths.npy"


class EmbeddingLayer(str, Enum):
    pooler = "pooler"
    cls = "cls"
    mean = "mean"
    tokens = "tokens"

    @property
    def graph_output(self) -> str:
        return POOLED_OUTPUT if self is EmbeddingLayer.pooler else SEQUENCE_OUTPUT

    @property
    def file_name(self) -> str:
        return "top_layer_emb.npy" if self is EmbeddingLayer.tokens else f"{self.value}_emb.npy"


class EmbeddingsUnavailableError(ValueError):
    """The export has no embedding outputs (a classifier exported without --with-embeddings)."""


def check_embedding_outputs(config: OnnxModelConfig, layer: EmbeddingLayer) -> None:
    """Raise :class:`EmbeddingsUnavailableError` unless the graph outputs what ``layer`` reads."""
    if layer.graph_output not in config.outputs:
        raise EmbeddingsUnavailableError(
            f"layer {layer.value!r} needs the graph output {layer.graph_output!r}; this export has "
            f"{', '.join(config.outputs)}: re-export with `ernie-tiny export --with-embeddings`")


def read_lines(path: str | os.PathLike) -> list[str | tuple[str, str]]:
    """Every line of a UTF-8 file (a TAB separates a text pair); a blank one is an error, so row i is line i + 1."""
    texts = read_text_file(path)
    for number, text in enumerate(texts, start=1):
        text_a, text_b = (text, None) if isinstance(text, str) else text
        if not text_a.strip() or (text_b is not None and not text_b.strip()):
            raise ValueError(f"{path}:{number}: blank text (embed writes one row per line: remove the line)")
    return texts


WORKER_BATCH = 64  # texts per batch a tokenizer worker encodes


def encode_texts(tokenizer: Tokenizer, config: OnnxModelConfig, texts: list[str | tuple[str, str | None]],
                 max_len: int | None = None, workers: int = 0) -> list[Encoding]:
    """Encodings of strings or ``(text_a, text_b)`` pairs, truncated to ``max_len`` (default: the export's);
    ``workers`` > 0 encodes them in that many forked processes (:class:`TokenizerPool`), same encodings."""
    max_len = config.max_len if max_len is None else max_len
    if not 3 <= max_len <= config.max_position_embeddings:
        raise ValueError(f"max_len {max_len} is outside 3..{config.max_position_embeddings} (the model's positions)")
    pairs = [(t, None) if isinstance(t, str) else (t[0], t[1]) for t in texts]
    if not workers:
        return tokenizer.encode_batch(pairs, max_len=max_len)
    batches = [pairs[start:start + WORKER_BATCH] for start in range(0, len(pairs), WORKER_BATCH)]
    with TokenizerPool(tokenizer, workers, max_len, keep_encodings=True) as pool:
        return [encoding for batch in pool.map(batches) for encoding in batch.encodings]


def embedding_of(outputs: dict[str, np.ndarray], row: int, length: int, layer: EmbeddingLayer) -> np.ndarray:
    """Row ``row``'s embedding, float32: (H,) for sentence layers, (length, H) for ``tokens``."""
    if layer is EmbeddingLayer.pooler:
        return outputs[POOLED_OUTPUT][row]
    hidden = outputs[SEQUENCE_OUTPUT][row, :length]  # (T_i, H): padding rows dropped
    if layer is EmbeddingLayer.cls:
        return hidden[0]
    if layer is EmbeddingLayer.mean:
        return hidden.mean(axis=0)
    return hidden


@dataclass
class EmbeddingFiles:
    """What :func:`write_embeddings` wrote: ``vectors`` is (N, H) or, for ``tokens``, (N, T_max, H)."""

    vectors: Path
    lengths: Path | None  # tokens only: (N,) int64, the real token count of each row
    rows: int
    shape: tuple[int, ...]


@contextmanager
def npy_file(path: Path, shape: tuple[int, ...], dtype: type) -> Iterator[np.ndarray]:
    """A writable memory-mapped ``.npy`` that becomes ``path`` only when the ``with`` block succeeds."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield array
        array.flush()
        del array  # closes the map before the rename
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_embeddings(run: Callable[[list[Encoding]], dict[str, np.ndarray]], encodings: list[Encoding],
                     out_dir: str | os.PathLike, layer: EmbeddingLayer, batch_size: int = 32,
                     progress: Callable[[int], None] | None = None) -> EmbeddingFiles:
    """Embed ``encodings`` in batches through ``run`` (padded batch -> graph outputs) into ``out_dir``.

    Rows are written in input order as batches finish, through a memory map, so memory
    stays at one batch whatever the file size; ``progress(n)`` is called with each
    batch's size. Token vectors are zero-padded to the longest encoding, with their
    lengths in ``top_layer_lengths.npy``.
    """
    if not encodings:
        raise ValueError("nothing to embed")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(e) for e in encodings], dtype=np.int64)
    first_outputs = run(encodings[:batch_size])
    hidden_size = first_outputs[layer.graph_output].shape[-1]
    shape = (len(encodings), int(lengths.max()), hidden_size) if layer is EmbeddingLayer.tokens \
        else (len(encodings), hidden_size)
    vectors_path = out_dir / layer.file_name
    with npy_file(vectors_path, shape, np.float32) as vectors:
        for start in range(0, len(encodings), batch_size):
            batch = encodings[start:start + batch_size]
            outputs = first_outputs if start == 0 else run(batch)
            for row, encoding in enumerate(batch):
                vector = embedding_of(outputs, row, len(encoding), layer)
                if layer is EmbeddingLayer.tokens:
                    vectors[start + row, :len(encoding)] = vector  # the rest stays 0 (open_memmap zero-fills)
                else:
                    vectors[start + row] = vector
            if progress is not None:
                progress(len(batch))
    lengths_path = None
    if layer is EmbeddingLayer.tokens:
        lengths_path = out_dir / LENGTHS_FILE
        with npy_file(lengths_path, lengths.shape, np.int64) as lengths_file:
            lengths_file[:] = lengths
    return EmbeddingFiles(vectors=vectors_path, lengths=lengths_path, rows=len(encodings), shape=shape)
