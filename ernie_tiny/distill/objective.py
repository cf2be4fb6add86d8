"""What the student is trained on: the layer-map terms, the prediction-layer terms, or both (joint).

:class:`DistillObjective` holds the student and its hidden-size projection in one module
so that DDP averages both their gradients; its ``forward`` returns the stage's
:class:`~ernie_tiny.training.loop.StepLoss` (total and named, unweighted terms).

A token-classification student (NER) is distilled per token: the teacher's tag logits are
brought to student positions (:func:`~ernie_tiny.distill.align.align_token_logits`) and
the soft cross-entropy averages over the tag slots only (:func:`token_targets_valid`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ernie_tiny.distill.config import Stage
from ernie_tiny.distill.align import align_token_logits
from ernie_tiny.distill.data import NO_LABEL, DistillBatch, TeacherTargets
from ernie_tiny.distill.layer_map import Feature, LayerMap
from ernie_tiny.distill.losses import (
    AttentionLossKind,
    DistillLossWeights,
    DistillMasks,
    compute_intermediate_loss,
    compute_prediction_loss,
)
from ernie_tiny.distill.projection import HiddenProjection
from ernie_tiny.model import EncoderOutput
from ernie_tiny.training.loop import StepLoss


def token_targets_valid(batch: DistillBatch) -> torch.Tensor:
    """(B, S) the student tokens whose soft tag target counts: a tag slot (the first piece of a char of
    text_a: not a special, padding or a later piece) with an aligned, non-[UNK] teacher token."""
    return (batch.labels != NO_LABEL) & batch.aligned.valid.to(batch.labels.device)


class DistillObjective(nn.Module):
    """The student and its hidden-size projection in one module, so that DDP averages both their gradients.

    ``forward`` returns the loss: DDP only syncs parameters used inside the wrapped forward.
    """

    def __init__(self, student: nn.Module, projection: HiddenProjection, layer_map: LayerMap,
                 weights: DistillLossWeights, attention_loss: AttentionLossKind):
        super().__init__()
        self.student = student
        self.projection = projection
        self.layer_map = layer_map
        self.weights = weights
        self.attention_loss = attention_loss
        self.needs_attention = weights.attention > 0 and any(m.feature is Feature.attention for m in layer_map)

    def forward(self, batch: DistillBatch, teacher: TeacherTargets | None, stage: Stage) -> StepLoss:
        """The stage's loss: layer-map terms (intermediate), prediction terms (prediction), or their sum (joint)."""
        features = stage.matches_features
        out = self.student(batch.student.input_ids, batch.student.token_type_ids, batch.student.attention_mask,
                           output_hidden_states=features, output_attention_scores=features and self.needs_attention)
        total = torch.zeros((), device=batch.student.input_ids.device)
        terms: dict[str, torch.Tensor] = {}
        if features:
            encoder = out if isinstance(out, EncoderOutput) else out.encoder
            masks = DistillMasks(student=batch.student.attention_mask, teacher=batch.teacher.attention_mask)
            feature_total, feature_terms = compute_intermediate_loss(
                encoder, teacher.encoder, self.projection, self.layer_map, batch.aligned, masks, self.weights,
                self.attention_loss)
            total, terms = total + feature_total, {**terms, **feature_terms}
        if stage.matches_logits:
            # Augmented rows carry no gold label; a batch of only such rows has no hard term.
            weights = self.weights if batch.has_labels else replace(self.weights, hard=0.0)
            logits = teacher.logits if teacher is not None else None
            valid = None
            if out.logits.dim() == 3:  # NER: per token, on the student tokens that carry a tag
                valid = token_targets_valid(batch)
                logits = None if logits is None else align_token_logits(logits, batch.aligned.cover.to(logits.device))
            prediction_total, prediction_terms = compute_prediction_loss(out.logits, logits, batch.labels, weights,
                                                                         valid)
            total, terms = total + prediction_total, {**terms, **prediction_terms}
        return StepLoss(total, terms)

    def term_names(self, stage: Stage) -> list[str]:
        """The loss terms a stage can log (those with a weight > 0), in a fixed order."""
        names = []
        if stage.matches_features:
            names += [name for match, name in zip(self.layer_map, self.layer_map.term_names())
                      if self.weights.match_weight(match) > 0]
        if stage.matches_logits:
            names += [name for name, weight in (("soft_ce", self.weights.soft), ("hard_ce", self.weights.hard))
                      if weight > 0]
        return names
