"""Batch inference on an exported ONNX folder with onnxruntime alone (no torch import).

Two lines from Python::

    from ernie_tiny.deploy.predict import Predictor
    predictions = Predictor.load("exported/tiny-chnsenticorp").predict(["房间很干净，服务周到", "太吵了"])

Each :class:`Prediction` says what the head says: a label with probabilities
(sentence / pair classification), a relevance score (ranking), per-character tags
and entities (NER) or the pooled embedding (encoder exports).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ernie_tiny.deploy.onnx_session import (Device, OnnxModelConfig, make_session, resolve_model_path,
                                           run_session)
from ernie_tiny.tokenization.encoding import Encoding, pad_to_arrays
from ernie_tiny.data.metrics import bio_entities
from ernie_tiny.data.tasks import char_tags_from_token_tags
from ernie_tiny.tokenization.load import load_tokenizer

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

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def entities_from_tags(text: str, tags: Sequence[str]) -> list[dict]:
    """Entity spans of a BIO sequence in text order (:func:`ernie_tiny.data.metrics.bio_entities` rules)."""
    spans = sorted(bio_entities(tags), key=lambda entity: entity[1])  # entities never overlap: starts differ
    return [{"type": kind, "start": start, "end": end, "text": text[start:end]} for kind, start, end in spans]


def read_text_file(path: str | os.PathLike) -> list[TextInput]:
    """One example per line; a TAB separates text_a from text_b (pair tasks). Blank lines are skipped."""
    path = Path(path)
    examples: list[TextInput] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > 2:
            raise ValueError(f"{path}:{number}: expected 1 or 2 TAB-separated fields, got {len(fields)}")
        examples.append(fields[0] if len(fields) == 1 else (fields[0], fields[1]))
    return examples


class Predictor:
    """An exported model, its tokenizer and an onnxruntime session."""

    def __init__(self, directory: str | os.PathLike, model_file: str | os.PathLike, config: OnnxModelConfig,
                 device: Device | str = Device.cpu, threads: int | None = None):
        self.directory = Path(directory)
        self.config = config
        self.tokenizer = load_tokenizer(self.directory)
        self.session = make_session(model_file, device=device, threads=threads)

    @classmethod
    def load(cls, path: str | os.PathLike, device: Device | str = Device.cpu,
             threads: int | None = None) -> "Predictor":
        """From an export folder or a ``.onnx`` file inside one (its folder holds config and tokenizer)."""
        directory, model_file = resolve_model_path(path)
        return cls(directory, model_file, OnnxModelConfig.read(directory), device=device, threads=threads)

    def run(self, encodings: list[Encoding]) -> dict[str, np.ndarray]:
        """Raw graph outputs for one batch of encodings (right-padded to the longest)."""
        return run_session(self.session, pad_to_arrays(encodings, pad_id=self.tokenizer.pad_id))

    def predict(self, texts: Iterable[TextInput], batch_size: int = 32, max_len: int | None = None) -> list[Prediction]:
        """Predictions in input order; ``texts`` are strings or ``(text_a, text_b)`` pairs."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        max_len = self.config.max_len if max_len is None else max_len
        if max_len > self.config.max_position_embeddings:
            raise ValueError(f"max_len {max_len} exceeds the model's {self.config.max_position_embeddings} positions")
        pairs = [(t, None) if isinstance(t, str) else (t[0], t[1]) for t in texts]
        predictions: list[Prediction] = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            encodings = self.tokenizer.encode_batch(chunk, max_len=max_len)
            outputs = self.run(encodings)
            predictions.extend(self.decode(pair, encoding, outputs, row)
                               for row, (pair, encoding) in enumerate(zip(chunk, encodings)))
        return predictions

    def label_names(self, num_outputs: int) -> list[str]:
        """The folder's labels, or output indices as strings when it has none."""
        labels = self.config.labels
        return list(labels) if len(labels) == num_outputs else [str(i) for i in range(num_outputs)]

    def decode(self, pair: tuple[str, str | None], encoding: Encoding, outputs: dict[str, np.ndarray],
               row: int) -> Prediction:
        """One example's :class:`Prediction` from row ``row`` of the batch outputs."""
        prediction = Prediction(text_a=pair[0], text_b=pair[1])
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
