"""Padded torch batches of encoded task examples: :class:`TaskBatch` and :func:`collate`.

Kept apart from :mod:`ernie_tiny.tasks`, which is torch-free so that the onnxruntime
prediction path can share its label logic without importing torch. Example::

    encoded = encode_examples(load_split("chnsenticorp", data_dir, "dev"), tokenizer, max_len=128)
    batch = collate(get_task("chnsenticorp"), encoded.items[:32], pad_id=tokenizer.pad_id).to("cpu")
    output = model(**batch.model_inputs())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ernie_tiny.tokenization.batching import pad_encodings
from ernie_tiny.heads import IGNORE_INDEX
from ernie_tiny.tasks import EncodedExample, TaskKind, TaskSpec


@dataclass
class TaskBatch:
    """Model inputs and labels of one dynamically padded batch, all (B, T) or (B,)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # (B,) class or relevance; (B, T) tags for NER, IGNORE_INDEX on padding
    group_ids: torch.Tensor | None = None  # (B,) ranking only: query groups for the pairwise loss

    def to(self, device: torch.device | str) -> TaskBatch:
        moved = {name: getattr(self, name) for name in ("input_ids", "token_type_ids", "attention_mask",
                                                        "labels", "group_ids")}
        return TaskBatch(**{name: None if t is None else t.to(device) for name, t in moved.items()})

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids,
                  "attention_mask": self.attention_mask, "labels": self.labels}
        if self.group_ids is not None:
            inputs["group_ids"] = self.group_ids
        return inputs


def collate(task: TaskSpec, items: Sequence[EncodedExample], pad_id: int) -> TaskBatch:
    """Pad a batch to its own longest sequence (dynamic padding; no sorting, order is kept)."""
    batch = pad_encodings([item.encoding for item in items], pad_id=pad_id)
    if task.kind is TaskKind.ner:
        labels = torch.full(batch.input_ids.shape, IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for row, item in enumerate(items):
            labels[row, :len(item.label)] = torch.tensor(item.label, dtype=torch.long)
    else:
        labels = torch.tensor([item.label for item in items], dtype=torch.long)  # (B,)
    group_ids = torch.tensor([item.group for item in items]) if task.kind is TaskKind.ranking else None
    return TaskBatch(batch.input_ids, batch.token_type_ids, batch.attention_mask, labels, group_ids)
