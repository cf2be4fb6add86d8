"""Per-example model outputs in eval mode, for dev/test evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from ernie_tiny.training.data_order import batches

T = TypeVar("T")


@torch.no_grad()
def predict(model: nn.Module, items: Sequence[T], collate_fn: Callable[[list[T]], object], batch_size: int,
            device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Each item's unpadded model output in eval mode: logits (C,), a score (), or token logits (T_i, C).

    ``collate_fn`` turns a list of items into a batch with ``to(device)``, ``model_inputs()``
    and ``attention_mask`` (like ``ernie_tiny.tasks.batches.collate``); labels are not passed to the model.
    """
    was_training = model.training
    model.eval()
    outputs: list[np.ndarray] = []
    for chunk in batches(items, batch_size, shuffle=False):
        batch = collate_fn(chunk).to(device)
        inputs = {k: v for k, v in batch.model_inputs().items() if k not in ("labels", "group_ids")}
        logits = model(**inputs).logits.float().cpu().numpy()
        lengths = batch.attention_mask.sum(dim=1).tolist()
        for row, length in enumerate(lengths):
            # token-level heads return (B, T, C): cut each row back to its own length
            outputs.append(logits[row, :length] if logits.ndim == 3 else logits[row])
    model.train(was_training)
    return outputs
