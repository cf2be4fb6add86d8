"""The teacher side of distillation: running the teacher, its targets, and their cache.

    DistillTeacher.targets(batch, stage)
        -> None (labels only: the teacher is never run)
        -> TeacherCache.lookup (filled in fixed chunks of consecutive items, see fill_cache)
        -> or one inference-mode forward (DistillTeacher.run)

:class:`TeacherCache` keeps the teacher's outputs per item across epochs: its logits
always (a few floats), its hidden states and attention scores for the mapped layers only
when they fit in a byte budget. The teacher runs in eval mode, so an item's outputs are
the same every time it is seen (up to float rounding from different padding).

Example::

    cache = teacher_cache(config, teacher_config, layer_map, items)
    teacher = DistillTeacher(model=model, tokenizer=tokenizer, items=items, cache=cache, amp=amp,
                             device=device, chunk_size=32, student_pad_id=0, reads_attention=True,
                             reads_logits=True)
    targets = teacher.targets(batch, Stage.prediction)   # TeacherTargets(logits, encoder)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ernie_tiny.distill.config import DistillConfig, Stage
from ernie_tiny.distill.data import DistillBatch, DistillItem, collate_distill
from ernie_tiny.distill.layer_map import Feature, LayerMap
from ernie_tiny.model import EncoderOutput, ErnieConfig, ModelOutput
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.training.precision import Amp


@dataclass
class TeacherTargets:
    """What the losses need from the teacher for one batch."""

    logits: torch.Tensor | None  # (B, C); (B,) for a ranking head; (B, T, C) per teacher token for NER
    encoder: EncoderOutput | None  # hidden_states / attention_scores; only the mapped layers are filled

    def to(self, device: torch.device | str) -> "TeacherTargets":
        def move(states: tuple | None) -> tuple | None:
            return None if states is None else tuple(None if s is None else s.to(device) for s in states)

        encoder = self.encoder
        if encoder is not None:
            encoder = EncoderOutput(None, None, move(encoder.hidden_states), move(encoder.attention_scores))
        return TeacherTargets(None if self.logits is None else self.logits.to(device), encoder)


def mapped_layers(layer_map: LayerMap) -> tuple[list[int], list[int]]:
    """Teacher ``hidden_states`` indices and ``attention_scores`` indices the layer map reads."""
    hidden = sorted({m.teacher_layer for m in layer_map if m.feature in (Feature.embeddings, Feature.hidden)})
    attention = sorted({m.teacher_layer - 1 for m in layer_map if m.feature is Feature.attention})
    return hidden, attention


def feature_cache_bytes(lengths: Sequence[int], hidden_size: int, num_heads: int, num_hidden: int,
                        num_attention: int, bytes_per_value: int = 4) -> int:
    """Bytes to keep the mapped hidden states (T_i, H) and attention scores (h, T_i, T_i) of every item."""
    lengths = np.asarray(lengths, dtype=np.int64)
    values = lengths * hidden_size * num_hidden + num_heads * lengths**2 * num_attention
    return int(values.sum()) * bytes_per_value


def pad_rows(values: Sequence[torch.Tensor], lengths: Sequence[int], width: int) -> torch.Tensor:
    """Stack per-item values; unpadded token rows (T_i, C) are zero-padded to (B, width, C)."""
    if values[0].dim() < 2:
        return torch.stack(list(values))
    padded = values[0].new_zeros(len(values), width, values[0].shape[-1])  # (B, T, C)
    for row, (value, n) in enumerate(zip(values, lengths)):
        padded[row, :n] = value
    return padded


class TeacherCache:
    """Teacher logits (and, with ``keep_features``, mapped hidden states / attention scores) per item index.

    Stored unpadded on the CPU (token logits (T_i, C) too); :meth:`lookup` pads them back to a batch's width.
    """

    def __init__(self, num_layers: int, hidden_layers: Sequence[int], attention_layers: Sequence[int],
                 keep_features: bool):
        self.num_layers = num_layers
        self.hidden_layers = list(hidden_layers)
        self.attention_layers = list(attention_layers)
        self.keep_features = keep_features
        self.logits: dict[int, torch.Tensor] = {}
        self.hidden: dict[int, list[torch.Tensor]] = {}  # item -> one (T_i, H) per hidden layer
        self.attention: dict[int, list[torch.Tensor]] = {}  # item -> one (h, T_i, T_i) per attention layer

    def lookup(self, indices: Sequence[int], lengths: Sequence[int], width: int,
               need_features: bool) -> TeacherTargets | None:
        """The batch's targets if every item is cached (features too when ``need_features``), else None."""
        if not all(i in self.logits for i in indices):
            return None
        logits = pad_rows([self.logits[i] for i in indices], lengths, width)
        if not need_features:
            return TeacherTargets(logits, None)
        if not (self.keep_features and all(i in self.hidden for i in indices)):
            return None
        hidden_states: list[torch.Tensor | None] = [None] * (self.num_layers + 1)
        for k, layer in enumerate(self.hidden_layers):
            rows = [self.hidden[i][k] for i in indices]
            padded = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])  # (B, T, H)
            for row, (value, n) in enumerate(zip(rows, lengths)):
                padded[row, :n] = value
            hidden_states[layer] = padded
        attention_scores: list[torch.Tensor | None] = [None] * self.num_layers
        for k, layer in enumerate(self.attention_layers):
            rows = [self.attention[i][k] for i in indices]
            padded = rows[0].new_zeros(len(rows), rows[0].shape[0], width, width)  # (B, h, T, T)
            for row, (value, n) in enumerate(zip(rows, lengths)):
                padded[row, :, :n, :n] = value
            attention_scores[layer] = padded
        encoder = EncoderOutput(last_hidden_state=hidden_states[-1], pooled_output=None,
                                hidden_states=tuple(hidden_states), attention_scores=tuple(attention_scores))
        return TeacherTargets(logits, encoder)

    def store(self, indices: Sequence[int], lengths: Sequence[int], targets: TeacherTargets) -> None:
        """Keep each item's unpadded outputs (features only with ``keep_features`` and when present)."""
        logits = targets.logits.detach().float().cpu()
        encoder = targets.encoder
        with_features = self.keep_features and encoder is not None and encoder.hidden_states is not None \
            and (not self.attention_layers or encoder.attention_scores is not None)
        if with_features:
            hidden = [encoder.hidden_states[layer].detach().float().cpu() for layer in self.hidden_layers]
            attention = [encoder.attention_scores[layer].detach().float().cpu() for layer in self.attention_layers]
        token_level = logits.dim() == 3  # (B, T, C): one row per teacher token
        for row, (index, n) in enumerate(zip(indices, lengths)):
            self.logits[index] = logits[row, :n].clone() if token_level else logits[row].clone()
            if with_features:
                self.hidden[index] = [h[row, :n].clone() for h in hidden]
                self.attention[index] = [a[row, :, :n, :n].clone() for a in attention]


def teacher_cache(config: DistillConfig, teacher: ErnieConfig, layer_map: LayerMap,
                  items: list[DistillItem]) -> TeacherCache | None:
    if not config.cache_teacher:
        return None
    if config.loss_weights.soft == 0 and not any(stage.matches_features for stage in config.stage.stages()):
        return None  # labels only: the loop never asks the teacher for anything
    hidden, attention = mapped_layers(layer_map)
    size = feature_cache_bytes([len(i.teacher) for i in items], teacher.hidden_size, teacher.num_heads,
                               len(hidden), len(attention))
    # Augmented copies are many and seen rarely: their hidden states are not worth the memory.
    keep_features = config.augment == 0 and size <= config.teacher_cache_mb * 2**20
    if not keep_features and Stage.prediction not in config.stage.stages():
        return None  # joint / intermediate steps need the features every time: logits alone would never be read
    return TeacherCache(teacher.num_layers, hidden, attention, keep_features)


# ---- running the teacher ----------------------------------------------------------------------------

@dataclass(kw_only=True)
class DistillTeacher:
    """The teacher of one distillation run: the model, how it runs, and the cache of its outputs."""

    model: nn.Module  # eval mode, no gradients: a task head, or a bare encoder (general distillation)
    tokenizer: Tokenizer
    items: list[DistillItem]  # the run's items: the cache is filled in fixed chunks of these
    cache: TeacherCache | None
    amp: Amp
    device: torch.device | str
    chunk_size: int  # items per cache-filling forward: the run's batch size
    student_pad_id: int
    reads_attention: bool  # the layer map reads the teacher's attention scores
    reads_logits: bool  # the objective's soft term is on (else labels-only prediction needs no teacher)

    def run(self, batch: DistillBatch, need_features: bool) -> TeacherTargets:
        """One inference-mode teacher forward on the batch's teacher side."""
        inputs = batch.teacher
        with torch.inference_mode(), self.amp.autocast():
            out = self.model(inputs.input_ids, inputs.token_type_ids, inputs.attention_mask,
                             output_hidden_states=need_features,
                             output_attention_scores=need_features and self.reads_attention)
        if isinstance(out, ModelOutput):
            return TeacherTargets(out.logits, out.encoder)
        return TeacherTargets(None, out)

    def fill_cache(self, indices: list[int]) -> None:
        """Cache the teacher outputs of ``indices`` computed in fixed chunks of consecutive items.

        An item's cached value always comes from the same chunk (same neighbours, same padding,
        same outputs requested: the attention path that returns scores is not the fused one),
        never from whichever training batch first needed it: a resumed run, whose cache starts
        empty, reads exactly the values the uninterrupted run read.
        """
        cache, size = self.cache, self.chunk_size
        for chunk in sorted({i // size for i in indices if i not in cache.logits}):
            rows = self.items[chunk * size:(chunk + 1) * size]
            batch = collate_distill(rows, self.tokenizer.pad_id, self.student_pad_id).to(self.device)
            lengths = batch.teacher.attention_mask.sum(dim=1).tolist()
            cache.store(batch.indices, lengths, self.run(batch, cache.keep_features))

    def targets(self, batch: DistillBatch, stage: Stage) -> TeacherTargets | None:
        """The teacher's outputs for a batch: from the cache (filled chunk by chunk), or one forward pass."""
        need_features = stage.matches_features
        if not need_features and not self.reads_logits:  # labels-only: no teacher at all
            return None
        cache = self.cache
        if cache is None or (need_features and not cache.keep_features):
            return self.run(batch, need_features)
        lengths = batch.teacher.attention_mask.sum(dim=1).tolist()
        width = batch.teacher.input_ids.shape[1]
        hit = cache.lookup(batch.indices, lengths, width, need_features)
        if hit is None:
            self.fill_cache(list(batch.indices))
            hit = cache.lookup(batch.indices, lengths, width, need_features)
        return hit.to(self.device)
