"""What the student is trained on: the layer-map terms, the prediction-layer terms, or both (joint).

:class:`DistillObjective` holds the student and its hidden-size projection in one module
so that DDP averages both their gradients; its ``forward`` returns the stage's
:class:`~ernie_tiny.training.loop.StepLoss` (total and named, unweighted terms).

A token-classification student (NER) is distilled per token: the teacher's tag logits are
brought to student positions (:func:`~ernie_tiny.distill.align.align_token_logits`) and
the soft cross-entropy averages over the tag slots only (:func:`token_targets_valid`).

With ``weights.feature_balance == first_step`` the joint stage scales the layer-map total by
:func:`~ernie_tiny.distill.losses.feature_balance_factor` of its first step, kept in the
``feature_factor`` buffer (0 until then; saved in ``last.pt``, so a resumed run keeps it;
under DDP the buffer is broadcast from rank 0 at every forward, so all ranks use rank 0's)::

    L = c * sum_k w_k L_k + w_soft L_soft + w_hard L_hard,   c = feature_ratio * P_0 / F_0

With ``weights.feature_warmup > 0`` the joint stage also multiplies the layer-map total by
:func:`~ernie_tiny.distill.losses.feature_warmup_factor` of the step, which the loop sets
through :meth:`DistillObjective.start_step` before each step's forward.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ernie_tiny.distill.config import Stage
from ernie_tiny.distill.align import align_token_logits
from ernie_tiny.distill.data import NO_LABEL, DistillBatch
from ernie_tiny.distill.teacher import TeacherTargets
from ernie_tiny.distill.layer_map import Feature, LayerMap
from ernie_tiny.distill.losses import (
    AttentionLossKind,
    DistillLossWeights,
    DistillMasks,
    FeatureBalance,
    compute_intermediate_loss,
    compute_prediction_loss,
    feature_balance_factor,
    feature_warmup_factor,
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
        self.balances = weights.feature_balance is FeatureBalance.first_step
        if self.balances:
            self.register_buffer("feature_factor", torch.tensor(0.0))  # 0: not set yet (a set one is > 0)
        self.feature_warmup = 1.0  # this step's feature_warmup_factor (start_step); 1 outside a joint stage

    def start_step(self, step: int, steps: int) -> None:
        """Called by the loop before 0-based ``step`` of a stage of ``steps``: sets the warm-up factor."""
        self.feature_warmup = feature_warmup_factor(step, steps, self.weights.feature_warmup)

    def forward(self, batch: DistillBatch, teacher: TeacherTargets | None, stage: Stage) -> StepLoss:
        """The stage's loss: layer-map terms (intermediate), prediction terms (prediction), or their sum (joint)."""
        features = stage.matches_features
        out = self.student(batch.student.input_ids, batch.student.token_type_ids, batch.student.attention_mask,
                           output_hidden_states=features, output_attention_scores=features and self.needs_attention)
        feature_total = prediction_total = None
        terms: dict[str, torch.Tensor] = {}
        if features:
            encoder = out if isinstance(out, EncoderOutput) else out.encoder
            masks = DistillMasks(student=batch.student.attention_mask, teacher=batch.teacher.attention_mask)
            feature_total, feature_terms = compute_intermediate_loss(
                encoder, teacher.encoder, self.projection, self.layer_map, batch.aligned, masks, self.weights,
                self.attention_loss)
            terms.update(feature_terms)
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
            terms.update(prediction_terms)
        if feature_total is not None and prediction_total is not None:
            if self.balances:
                feature_total = feature_total * self.balance_factor(feature_total, prediction_total)
            if self.feature_warmup < 1:
                feature_total = feature_total * self.feature_warmup
        total = sum(t for t in (feature_total, prediction_total) if t is not None)
        return StepLoss(total, terms)

    def balance_factor(self, feature_total: torch.Tensor, prediction_total: torch.Tensor) -> torch.Tensor:
        """The first step's :func:`feature_balance_factor`, computed then and kept (no host sync: a ``where``)."""
        first = feature_balance_factor(feature_total, prediction_total, self.weights.feature_ratio)
        factor = torch.where(self.feature_factor > 0, self.feature_factor, first.to(self.feature_factor.dtype))
        if self.training:
            self.feature_factor.copy_(factor)
        return factor

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
