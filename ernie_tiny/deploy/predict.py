"""Batch inference on an exported ONNX folder with onnxruntime alone (no torch import).

Two lines from Python::

    from ernie_tiny.deploy.predict import Predictor
    predictions = Predictor.load("exported/tiny-chnsenticorp").predict(["房间很干净，服务周到", "太吵了"])

Each :class:`Prediction` says what the head says: a label with probabilities
(sentence / pair classification), a relevance score (ranking), per-character tags
and entities (NER) or the pooled embedding (encoder exports), and whether ``max_len``
cut the text. An empty (or whitespace-only) text gets no prediction but an ``error``,
so the i-th prediction always belongs to the i-th input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ernie_tiny.deploy.onnx_session import (Device, OnnxModelConfig, make_session, resolve_model_path,
                                           run_session)
from ernie_tiny.tokenization.encoding import Encoding, Tokenizer, pad_to_arrays
from ernie_tiny.tasks.metrics import bio_entities
from ernie_tiny.tasks import char_tags_from_token_tags
from ernie_tiny.text_files import read_lines
from ernie_tiny.tokenization.load import load_tokenizer
from ernie_tiny.tokenization.workers import TokenizerPool

TextInput = str | tuple[str, str | None]


@dataclass
class Prediction:
    text_a: str
    text_b: str | None = None
    label: str | None = None  # classification: the argmax label
    probabilities: dict[str, float] | None = None  # classification: softmax per label
    score: float | None = None  # ranking: relevance logit (> 0 means relevant)
    tags: list[str] | None = None  # NER: one BIO tag per character of text_a
    entities: list[dict] | None = None  # NER: {"type", "start", "end", "text"}, end exclusive
    embedding: list[float] | None = None  # encoder exports: the pooled [CLS] vector
    truncated: bool | None = None  # True when max_len cut tokens off (None: nothing was encoded)
    error: str | None = None  # why there is no prediction (an empty text)

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def entities_from_tags(text: str, tags: Sequence[str]) -> list[dict]:
    """Entity spans of a BIO sequence in text order (:func:`ernie_tiny.tasks.metrics.bio_entities` rules)."""
    spans = sorted(bio_entities(tags), key=lambda entity: entity[1])  # entities never overlap: starts differ
    return [{"type": kind, "start": start, "end": end, "text": text[start:end]} for kind, start, end in spans]


EMPTY_TEXT = "empty text: nothing to predict"


def empty_text_error(text: TextInput) -> str | None:
    """:data:`EMPTY_TEXT` (naming text_b for a pair) when a text is empty or whitespace only, else None."""
    text_a, text_b = (text, None) if isinstance(text, str) else text
    if not text_a.strip():
        return EMPTY_TEXT
    if text_b is not None and not text_b.strip():
        return "empty text_b: nothing to predict"
    return None


def read_text_file(path: str | os.PathLike) -> list[TextInput]:
    """Every line of a UTF-8 file, in order (item i is line i + 1, blank lines included).

    A TAB separates text_a from text_b (pair tasks). The lines are
    :func:`ernie_tiny.text_files.read_lines`' (``\n`` ends a line, BOM and CRLF dropped, bad
    UTF-8 named by ``file:line``); more than two fields is a ``ValueError`` naming ``file:line``.
    """
    examples: list[TextInput] = []
    for line in read_lines(path):
        fields = line.text.split("\t")
        if len(fields) > 2:
            raise ValueError(f"{path}:{line.number}: expected 1 or 2 TAB-separated fields, got {len(fields)}")
        examples.append(fields[0] if len(fields) == 1 else (fields[0], fields[1]))
    return examples


class ModelSession(Protocol):
    """What a :class:`Predictor` runs: padded int64 arrays in (``pad_to_arrays``), float32 outputs by name out."""

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OnnxSession:
    """An onnxruntime session as a :class:`ModelSession` (the torch one is ``deploy.torch_runner.TorchRunner``)."""

    path = "onnxruntime"

    def __init__(self, session: object):
        self.session = session

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_session(self.session, arrays)


class Predictor:
    """A model's config, its tokenizer and a :class:`ModelSession`: onnxruntime on an export folder, or torch
    on a checkpoint folder (:meth:`load_torch`)."""

    def __init__(self, directory: str | os.PathLike, model_file: str | os.PathLike | None, config: OnnxModelConfig,
                 device: Device | str = Device.cpu, threads: int | None = None, session: ModelSession | None = None,
                 tokenizer: Tokenizer | None = None):
        self.directory = Path(directory)
        self.config = config
        self.tokenizer = tokenizer or load_tokenizer(self.directory)
        self.session = session or OnnxSession(make_session(model_file, device=device, threads=threads))

    @classmethod
    def load_torch(cls, path: str | os.PathLike, device: str = "cpu", precision: str = "fp32", cuda_graphs: bool = True,
                   with_embeddings: bool = False) -> "Predictor":
        """From a checkpoint folder (``teacher finetune``, ``distill``, Hugging Face), run by torch.

        Imports torch here only: the onnxruntime path stays torch-free.
        """
        from ernie_tiny.deploy.torch_runner import RunnerConfig, load_torch_runner

        runner, config, tokenizer = load_torch_runner(
            path, RunnerConfig(device=device, precision=precision, cuda_graphs=cuda_graphs), with_embeddings)
        return cls(path, None, config, session=runner, tokenizer=tokenizer)

    @property
    def backend(self) -> str:
        """Which runtime and path runs the model, e.g. ``onnxruntime`` or ``torch cuda fp16, CUDA graphs, ...``."""
        return getattr(self.session, "path", type(self.session).__name__)

    @classmethod
    def load(cls, path: str | os.PathLike, device: Device | str = Device.cpu,
             threads: int | None = None) -> "Predictor":
        """From an export folder or a ``.onnx`` file inside one (its folder holds config and tokenizer)."""
        directory, model_file = resolve_model_path(path)
        return cls(directory, model_file, OnnxModelConfig.read(directory), device=device, threads=threads)

    def run(self, encodings: list[Encoding]) -> dict[str, np.ndarray]:
        """Raw graph outputs for one batch of encodings (right-padded to the longest)."""
        return self.session.run(pad_to_arrays(encodings, pad_id=self.tokenizer.pad_id))

    def predict(self, texts: Iterable[TextInput], batch_size: int = 32, max_len: int | None = None,
                tokenizer_workers: int = 0) -> list[Prediction]:
        """One prediction per text, in input order; ``texts`` are strings or ``(text_a, text_b)`` pairs.

        An empty or whitespace-only text is not run: its prediction holds only the text and ``error``.
        ``tokenizer_workers`` > 0 tokenizes the batches in that many forked processes while the model runs
        the batches before (:class:`~ernie_tiny.tokenization.workers.TokenizerPool`): on a GPU, where the
        model is faster than the tokenizer; the predictions are the same.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        max_len = self.config.max_len if max_len is None else max_len
        if not 3 <= max_len <= self.config.max_position_embeddings:  # 3: [CLS], one token, [SEP] (as embed)
            raise ValueError(f"max_len {max_len} is outside 3..{self.config.max_position_embeddings} "
                             "(the model's positions)")
        pairs = [(t, None) if isinstance(t, str) else (t[0], t[1]) for t in texts]
        predictions: list[Prediction | None] = [None] * len(pairs)
        runnable = []
        for index, pair in enumerate(pairs):
            error = empty_text_error(pair)
            if error is None:
                runnable.append(index)
            else:
                predictions[index] = Prediction(text_a=pair[0], text_b=pair[1], error=error)
        chunks = [runnable[start:start + batch_size] for start in range(0, len(runnable), batch_size)]
        keep_encodings = self.config.head == "token_classification"  # tags need each token's span
        with TokenizerPool(self.tokenizer, tokenizer_workers, max_len, keep_encodings) as pool:
            for chunk, batch in zip(chunks, pool.map([[pairs[i] for i in chunk] for chunk in chunks])):
                outputs = self.session.run(batch.arrays)
                for row, index in enumerate(chunk):
                    encoding = batch.encodings[row] if batch.encodings is not None else None
                    predictions[index] = self.decode(pairs[index], encoding, outputs, row, batch.truncated[row])
        return predictions

    def label_names(self, num_outputs: int) -> list[str]:
        """The folder's labels, or output indices as strings when it has none."""
        labels = self.config.labels
        return list(labels) if len(labels) == num_outputs else [str(i) for i in range(num_outputs)]

    def decode(self, pair: tuple[str, str | None], encoding: Encoding | None, outputs: dict[str, np.ndarray],
               row: int, truncated: bool | None = None) -> Prediction:
        """One example's :class:`Prediction` from row ``row`` of the batch outputs. Without its ``encoding``
        (tokenized in a worker process) it needs ``truncated``, and the head must not be token classification."""
        if encoding is None and (truncated is None or self.config.head == "token_classification"):
            raise ValueError("decode needs the encoding for token classification, else at least `truncated`")
        prediction = Prediction(text_a=pair[0], text_b=pair[1],
                                truncated=encoding.truncated if encoding is not None else truncated)
        head = self.config.head
        if head == "sequence_classification":
            probabilities = softmax(outputs["logits"][row])
            names = self.label_names(len(probabilities))
            prediction.label = names[int(probabilities.argmax())]
            prediction.probabilities = {name: round(float(p), 6) for name, p in zip(names, probabilities)}
        elif head == "ranking":
            prediction.score = float(outputs["logits"][row])
        elif head == "token_classification":
            token_logits = outputs["logits"][row, :len(encoding)]  # (T_i, num_labels)
            names = self.label_names(token_logits.shape[-1])
            prediction.tags = char_tags_from_token_tags(names, encoding, token_logits.argmax(-1).tolist(), len(pair[0]))
            prediction.entities = entities_from_tags(pair[0], prediction.tags)
        if "pooled_output" in outputs:
            prediction.embedding = [round(float(v), 6) for v in outputs["pooled_output"][row]]
        return prediction
