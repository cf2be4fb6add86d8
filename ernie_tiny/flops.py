"""Floating-point operations of one forward pass, counted from the model's config and the shapes it ran.

Multiply-accumulates (MACs) of one sequence of ``s`` positions (padding included: a padded
position costs what a real one does), hidden size ``h``, FFN width ``f``, ``L`` layers::

    embeddings                      0            (lookups and adds, no products)
    per layer, Q K V and output     4 s h^2      (four h x h projections of every position)
    per layer, attention            2 s^2 h      (scores Q K^T and the weighted sum of V, all heads together)
    per layer, FFN                  2 s h f      (h -> f and f -> h)
    pooler                          h^2          ([CLS] only; every head model computes it)
    head, sequence classification   h n          (n labels, from the pooled [CLS])
    head, ranking                   h            (one score)
    head, token classification      s h n        (every position)
    head, masked LM                 s (h^2 + h V) (transform, then the tied decoder over the vocabulary V)

    MACs(batch b, length s) = b * (L * (4 s h^2 + 2 s^2 h + 2 s h f) + pooler + head)
    FLOPs = 2 * MACs

LayerNorm, softmax, activations and biases are left out: they grow as ``s h`` (softmax as
``s^2`` per head), a few percent of the total at the micro presets and far less at real
size. A timed pass over a set of texts is a list of batches, each ``(rows, padded
length)``; its FLOPs are the sum over them. The ratio of two models' FLOPs over the same
texts is the speed-up their shapes allow when both run at the same FLOP rate, which is
what ``ernie-tiny bench`` calls the theoretical speed-up.
"""

from __future__ import annotations

from collections.abc import Sequence

from ernie_tiny.heads import HeadKind
from ernie_tiny.model import ErnieConfig


def head_macs(config: ErnieConfig, head: HeadKind, num_labels: int, seq_len: int) -> int:
    """MACs of the pooler and the head for one sequence of ``seq_len`` positions."""
    h = config.hidden_size
    pooler = h * h
    per_head = {
        HeadKind.encoder: 0,
        HeadKind.sequence_classification: h * num_labels,
        HeadKind.ranking: h,
        HeadKind.token_classification: seq_len * h * num_labels,
        HeadKind.masked_lm: seq_len * (h * h + h * config.vocab_size),
    }
    return pooler + per_head[HeadKind(head)]


def forward_macs(config: ErnieConfig, head: HeadKind, num_labels: int, batch: int, seq_len: int) -> int:
    """MACs of one forward pass over a batch of ``batch`` sequences padded to ``seq_len``; see the module docstring."""
    if batch < 0 or seq_len < 0:
        raise ValueError(f"batch and seq_len must be >= 0, got {batch} and {seq_len}")
    s, h, f = seq_len, config.hidden_size, config.intermediate_size
    per_layer = 4 * s * h * h + 2 * s * s * h + 2 * s * h * f
    return batch * (config.num_layers * per_layer + head_macs(config, head, num_labels, s))


def pass_flops(config: ErnieConfig, head: HeadKind, num_labels: int, batch_shapes: Sequence[tuple[int, int]]) -> int:
    """FLOPs (2 x MACs) of a pass over batches given as ``(rows, padded length)``."""
    return 2 * sum(forward_macs(config, head, num_labels, rows, length) for rows, length in batch_shapes)
