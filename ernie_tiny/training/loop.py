"""The one training loop every trainer runs on (fine-tuning, pretraining, every distillation stage)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepLoss:
    total: torch.Tensor  # scalar, weighted sum of the terms
    terms: dict[str, torch.Tensor]  # unweighted, detached
