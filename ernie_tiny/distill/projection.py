"""The learnable map from student hidden size to teacher hidden size (TinyBERT's ``fit_dense``).

Hidden-state and embedding losses compare ``W h_s + b`` (student, projected) with the
aligned teacher state. TinyBERT shares one ``fit_dense`` across every matched layer
(embeddings included); ``per_match=True`` gives each matched layer its own Linear
instead. The projection is trained with the student and thrown away afterwards.

Usage::

    projection = HiddenProjection.for_layer_map(student_hidden=256, teacher_hidden=192, layer_map=layer_map)
    projected = projection(student_out.hidden_states[1], "hidden_l1")  # (B, S, 192)
    optimizer = torch.optim.AdamW([*student.parameters(), *projection.parameters()])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ernie_tiny.distill.layer_map import Feature, LayerMap

SHARED = "shared"


class HiddenProjection(nn.Module):
    def __init__(self, student_hidden: int, teacher_hidden: int, term_names: Sequence[str] = (),
                 per_match: bool = False, initializer_range: float = 0.02):
        super().__init__()
        if student_hidden <= 0 or teacher_hidden <= 0:
            raise ValueError(f"hidden sizes must be positive, got {student_hidden} -> {teacher_hidden}")
        if per_match and not term_names:
            raise ValueError("per_match projection needs the term names of the hidden/embedding matches")
        self.per_match = per_match
        names = list(term_names) if per_match else [SHARED]
        self.linears = nn.ModuleDict({name: nn.Linear(student_hidden, teacher_hidden) for name in names})
        for linear in self.linears.values():
            # Same init as the encoder's Linears (ErnieModel._init_weights).
            nn.init.normal_(linear.weight, std=initializer_range)
            nn.init.zeros_(linear.bias)

    @classmethod
    def for_layer_map(cls, student_hidden: int, teacher_hidden: int, layer_map: LayerMap,
                      per_match: bool = False) -> "HiddenProjection":
        """One shared Linear, or one per embeddings/hidden match of ``layer_map`` (keyed by term name)."""
        names = [name for match, name in zip(layer_map, layer_map.term_names())
                 if match.feature in (Feature.embeddings, Feature.hidden)]
        return cls(student_hidden, teacher_hidden, names, per_match=per_match)

    def forward(self, student_hidden: torch.Tensor, term_name: str = SHARED) -> torch.Tensor:
        """(B, S, H_s) -> (B, S, H_t) through the Linear for ``term_name`` (the shared one by default)."""
        key = term_name if self.per_match else SHARED
        if key not in self.linears:
            raise KeyError(f"no projection for {term_name!r}; have {', '.join(self.linears)}")
        return self.linears[key](student_hidden)
