"""Pretraining losses: masked-LM and sentence-distance cross-entropy, pure functions of tensors.

Both average over the labelled rows only (label ``-100`` = not predicted) and return a zero
that still belongs to the graph when nothing is labelled, so that a batch without a masked
token (possible with stochastic budgets on very short texts) neither NaNs nor breaks DDP's
gradient reduction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ernie_tiny.pretrain.masking import IGNORE_INDEX


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions.

        L_mlm = -(1 / |M|) * sum_{p in M} log softmax(z_p)[y_p],   M = {p : y_p != -100}

    logits: (..., V) float, labels: (...) int64 with the same leading shape (e.g. (B, T, V) and
    (B, T), or the (M, V) logits of the masked positions only and their (M,) labels).
    Returns a scalar; 0 when M is empty.
    """
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    if not (flat_labels != IGNORE_INDEX).any():
        return flat_logits.sum() * 0.0
    return F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX)


def sentence_distance_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean 3-way cross-entropy over the sentence-pair rows (ERNIE 2.0's sentence distance).

        L_sd = -(1 / |P|) * sum_{b in P} log softmax(s_b)[d_b],   P = {b : d_b != -100}

    logits: (B, 3), labels: (B,) with 0 adjacent, 1 same document, 2 other document, -100 for
    rows that are single texts. Returns a scalar; 0 when P is empty.
    """
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def masked_lm_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of masked positions whose arg-max prediction is the original token (NaN when none)."""
    flat_labels = labels.reshape(-1)
    predicted = logits.reshape(-1, logits.shape[-1]).argmax(-1)
    masked = flat_labels != IGNORE_INDEX
    return (predicted[masked] == flat_labels[masked]).float().mean()
