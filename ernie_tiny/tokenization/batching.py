"""Torch tensors for a list of encodings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ernie_tiny.tokenization.encoding import Encoding, pad_to_arrays


@dataclass
class Batch:
    """Right-padded tensors for a list of encodings, all of shape (B, T)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor  # 1 for real tokens, 0 for padding

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.input_ids.to(device), self.token_type_ids.to(device), self.attention_mask.to(device))


def pad_encodings(encodings: list[Encoding], pad_id: int = 0, pad_to: int | None = None) -> Batch:
    """Stack encodings into a right-padded :class:`Batch` (pads to the longest, or to ``pad_to``)."""
    arrays = pad_to_arrays(encodings, pad_id=pad_id, pad_to=pad_to)
    return Batch(*(torch.from_numpy(arrays[name]) for name in ("input_ids", "token_type_ids", "attention_mask")))
