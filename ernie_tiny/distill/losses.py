"""Distillation losses as pure functions (student first, teacher second), each returning a scalar.

Transformer-layer distillation (TinyBERT, Jiao et al. 2019) with a char teacher and a
subword student: teacher tensors are first brought to student positions by an
:class:`ernie_tiny.distill.align.AlignedBatch`, then compared on *valid* positions only.
Prediction-layer distillation is Hinton et al.'s soft cross-entropy at temperature T
plus an optional hard-label term. Teacher tensors are always ``detach()``-ed here, so
gradients reach only the student (and its projection).

The training loop calls two functions::

    weights = DistillLossWeights(hidden=1.0, attention=1.0, soft=1.0, hard=0.5, temperature=2.0)
    masks = DistillMasks(student=student_batch.attention_mask, teacher=teacher_batch.attention_mask)
    inter_total, inter_terms = compute_intermediate_loss(
        student_out, teacher_out, projection, layer_map, aligned, masks, weights)     # EncoderOutputs
    pred_total, pred_terms = compute_prediction_loss(student_logits, teacher_logits, labels, weights)
    (inter_total + pred_total).backward()
    log({**inter_terms, **pred_terms})   # unweighted, detached: embeddings, hidden_l1, attention_l3, soft_ce, hard_ce

The models must be run with ``output_hidden_states=True`` (and ``output_attention_scores=True``
when the attention weight is > 0). Terms whose weight is 0 are skipped, not computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from ernie_tiny.distill.align import AlignedBatch, align_attention_probs, align_hidden, masked_softmax
from ernie_tiny.distill.layer_map import Feature, LayerMap, LayerMatch
from ernie_tiny.distill.projection import HiddenProjection
from ernie_tiny.model import EncoderOutput


class AttentionLossKind(str, Enum):
    kl = "kl"  # KL(teacher aligned probs || student probs), any tokenizers
    log_prob_mse = "log_prob_mse"  # MSE of row-centred log-probs ("scores up to a row constant"), any tokenizers
    score_mse = "score_mse"  # TinyBERT's MSE of raw pre-softmax scores; shared tokenizer and head count only


class FeatureBalance(str, Enum):
    """How the joint stage weighs the layer-map terms against the prediction terms."""

    none = "none"  # the layer-map terms weigh what their weights say
    first_step = "first_step"  # their total is scaled to feature_ratio x the prediction total of the first step


# Measured on the dev sets of ChnSentiCorp and LCQMC (issue 11, point 3): first_step (factor 0.20 / 0.24) left
# the joint stage's first 100 steps unchanged and moved the final dev accuracy within noise, so none stays default.
DEFAULT_FEATURE_BALANCE = FeatureBalance.none
DEFAULT_FEATURE_RATIO = 1.0
DEFAULT_FEATURE_WARMUP = 0.0


@dataclass(frozen=True)
class DistillLossWeights:
    embedding: float = 1.0  # embedding-output MSE
    hidden: float = 1.0  # hidden-state MSE, each matched layer
    attention: float = 1.0  # attention loss, each matched layer
    soft: float = 1.0  # soft cross-entropy against teacher logits
    hard: float = 0.0  # cross-entropy against gold labels (0: pure distillation, as TinyBERT)
    temperature: float = 1.0  # T for the soft term
    scale_by_t2: bool = True  # multiply the soft term by T^2 (Hinton); TinyBERT and TextBrewer's kd_ce_loss do not
    # joint stage only (feature_balance_factor): at step 0 the weighted layer-map total of a random-init
    # subword student is ~5x its prediction total (LCQMC, from-scratch teacher-small: 5.58 vs 1.07)
    feature_balance: FeatureBalance = DEFAULT_FEATURE_BALANCE
    feature_ratio: float = DEFAULT_FEATURE_RATIO  # first_step: layer-map total / prediction total at the first step
    # joint stage only (feature_warmup_factor): the share of its steps over which the layer-map total ramps from 0
    feature_warmup: float = DEFAULT_FEATURE_WARMUP

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_balance", FeatureBalance(self.feature_balance))
        for name in ("embedding", "hidden", "attention", "soft", "hard"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"loss weight {name} must be finite and >= 0, got {value}")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not math.isfinite(self.feature_ratio) or self.feature_ratio <= 0:
            raise ValueError(f"feature_ratio must be finite and > 0, got {self.feature_ratio}")
        if not 0 <= self.feature_warmup <= 1:
            raise ValueError(f"feature_warmup is a share of the joint stage's steps in [0, 1], got {self.feature_warmup}")

    def match_weight(self, match: LayerMatch) -> float:
        """The weight of one layer-map term: its feature's weight times the match's own."""
        feature = {Feature.embeddings: self.embedding, Feature.hidden: self.hidden, Feature.attention: self.attention}
        return feature[match.feature] * match.weight


@dataclass
class DistillMasks:
    student: torch.Tensor  # (B, S) attention mask of the student batch, 1 = real token
    teacher: torch.Tensor  # (B, T) attention mask of the teacher batch


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(values * mask) / sum(mask); 0 (with a graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def hidden_mse(student_hidden_projected: torch.Tensor, teacher_hidden_aligned: torch.Tensor,
               valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error over valid positions and all features.

    L = sum_{b,i: valid} sum_d (Ws h_s - h_t)_{b,i,d}^2 / (n_valid * D)
    student_hidden_projected, teacher_hidden_aligned (B, S, D); valid (B, S) bool.
    """
    squared = (student_hidden_projected - teacher_hidden_aligned.detach()).pow(2).mean(dim=-1)  # (B, S)
    return _masked_mean(squared, valid)


def attention_score_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                        key_mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT's attention loss for a shared tokenizer: MSE of pre-softmax scores over real (query, key) pairs.

    L = sum_{b,h,i,j} m_bi m_bj (A_s - A_t)_{bhij}^2 / (h * sum_b n_b^2),   m = key_mask (B, T)
    student_scores, teacher_scores (B, h, T, T) unmasked. TinyBERT instead zeroes entries
    <= -1e2 (its scores carry the -10000 padding bias) and divides by all B*h*T*T entries,
    so its loss shrinks as padding grows; here padded pairs are excluded from the mean.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(f"score MSE needs equal shapes (same tokenizer and head count), got "
                         f"{tuple(student_scores.shape)} vs {tuple(teacher_scores.shape)}")
    real = key_mask.bool()
    pair_mask = (real[:, :, None] & real[:, None, :])[:, None].expand_as(student_scores)  # (B, h, T, T)
    return _masked_mean((student_scores - teacher_scores.detach()).pow(2), pair_mask)


def _masked_log_softmax(scores: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """log_softmax over allowed keys (B, K mask); disallowed entries are 0 (finite, no NaN gradients)."""
    allowed = key_mask.bool()[:, None, None, :]  # (B, 1, 1, K)
    # A finite fill keeps rows with no allowed key NaN-free; exp(min - max) is exactly 0 otherwise.
    log_probs = torch.log_softmax(scores.masked_fill(~allowed, torch.finfo(scores.dtype).min), dim=-1)
    return log_probs.masked_fill(~allowed, 0.0)


def aligned_attention_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor, pool: torch.Tensor,
                           cover: torch.Tensor, student_mask: torch.Tensor, teacher_mask: torch.Tensor,
                           valid: torch.Tensor, kind: AttentionLossKind | str = AttentionLossKind.kl,
                           floor: float = 1e-8) -> torch.Tensor:
    """Attention loss across tokenizers, on valid student query rows and valid student key columns.

    student_scores (B, hs, S, S), teacher_scores (B, ht, T, T): pre-softmax, unmasked.
    pool, cover (B, S, T); student_mask (B, S); teacher_mask (B, T); valid (B, S) bool.

        P_t = softmax over real teacher keys of teacher_scores
        A   = pool @ P_t @ cover^T                         (B, ht, S, S)
        V   = valid & student_mask                          valid student tokens (keys and queries)
        Ā_ij = A_ij / sum_{j' in V} A_ij'                   teacher, renormalised over valid keys
        Q_ij = softmax over j in V of student_scores_ij    student, renormalised over valid keys
    Both are "where does token i look, given that it looks at an aligned token".
    If hs != ht the heads cannot be paired, so both sides are head-averaged
    (A <- mean_h A before the renormalisation, Q <- mean_h Q, itself a distribution over V);
    with equal counts heads are compared one to one.
    (MiniLMv2's multi-head *relations* would avoid averaging by re-splitting Q/K/V into a
    common number of relation heads, but needs the query/key vectors, which
    ``EncoderOutput`` does not return.)

    kind="kl":           L = mean over heads and rows i in V of  sum_{j in V} Ā_ij (log Ā_ij - log Q_ij)
    kind="log_prob_mse": L = mean over heads, i, j in V of (c(log Q)_ij - c(log Ā)_ij)^2, where
                         c(x)_ij = x_ij - mean_{j' in V} x_ij' and probabilities are floored at ``floor``;
                         log-probs are scores up to a per-row constant, which centring removes,
                         so this is TinyBERT's score MSE at student resolution.
    Rows where the teacher puts no mass on valid keys are skipped.
    """
    kind = AttentionLossKind(kind)
    if kind is AttentionLossKind.score_mse:
        raise ValueError("score_mse compares raw scores and needs a shared tokenizer: use attention_score_mse")
    heads_s, heads_t = student_scores.shape[1], teacher_scores.shape[1]
    teacher_probs = masked_softmax(teacher_scores.detach().float(), teacher_mask)  # (B, ht, T, T)
    if heads_s != heads_t:
        # Aligning is linear, so averaging heads first gives the same map ht times cheaper.
        teacher_probs = teacher_probs.mean(dim=1, keepdim=True)  # (B, 1, T, T)
    aligned = align_attention_probs(teacher_probs, pool, cover)  # (B, h, S, S)
    usable = valid.bool() & student_mask.bool()  # (B, S)
    key_usable = usable[:, None, None, :]  # (B, 1, 1, S)
    student_log_probs = _masked_log_softmax(student_scores.float(), usable)  # (B, hs, S, S)
    if heads_s != heads_t:
        # log(mean_h Q) computed stably from the per-head log-probs.
        student_log_probs = (torch.logsumexp(student_log_probs, dim=1, keepdim=True)
                             - math.log(heads_s)).masked_fill(~key_usable, 0.0)  # (B, 1, S, S)
    aligned = aligned * key_usable
    mass = aligned.sum(dim=-1, keepdim=True)  # (B, h, S, 1)
    teacher_dist = aligned / mass.clamp(min=torch.finfo(aligned.dtype).tiny)
    rows = usable[:, None, :] & (mass.squeeze(-1) > 0)  # (B, h, S)
    if kind is AttentionLossKind.kl:
        per_row = (torch.xlogy(teacher_dist, teacher_dist) - teacher_dist * student_log_probs).sum(dim=-1)  # (B, h, S)
        return _masked_mean(per_row, rows)
    log_floor = math.log(floor)
    teacher_log = torch.log(teacher_dist.clamp(min=floor))
    student_log = student_log_probs.clamp(min=log_floor)
    count = usable.sum(dim=-1).clamp(min=1)[:, None, None, None].to(teacher_log.dtype)  # (B, 1, 1, 1)

    def centred(x: torch.Tensor) -> torch.Tensor:
        x = x * key_usable
        return (x - x.sum(dim=-1, keepdim=True) / count) * key_usable

    squared = (centred(student_log) - centred(teacher_log)).pow(2)  # (B, h, S, S)
    pair_mask = rows[..., None] & key_usable  # (B, h, S, S)
    return _masked_mean(squared, pair_mask)


def _class_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B,) single-score logits (ranking) -> (B, 2) logits [0, x], so softmax gives [1 - sigmoid(x), sigmoid(x)]."""
    return torch.stack([torch.zeros_like(logits), logits], dim=-1) if logits.dim() == 1 else logits


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
                       scale_by_t2: bool = True, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Hinton's soft-target cross-entropy, averaged over rows.

    L = T^2 * mean_rows( - sum_c softmax(z_t / T)_c * log_softmax(z_s / T)_c )
    The T^2 (``scale_by_t2``) keeps the gradient size independent of T (Hinton et al. 2015);
    TinyBERT's ``soft_cross_entropy`` omits it and also averages over classes, not rows.
    Logits (B, C) -> rows are examples; (B, S, C) -> rows are tokens, ``valid`` (B, S)
    picks which count; (B,) single scores are treated as 2-class [0, x].
    It equals the teacher's entropy (not 0) when student == teacher; its gradient is then 0.
    """
    student_logits, teacher_logits = _class_logits(student_logits), _class_logits(teacher_logits.detach())
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit shapes differ: student {tuple(student_logits.shape)} vs teacher "
                         f"{tuple(teacher_logits.shape)}")
    teacher_probs = torch.softmax(teacher_logits / temperature, dim=-1)
    per_row = -(teacher_probs * torch.log_softmax(student_logits / temperature, dim=-1)).sum(dim=-1)
    loss = per_row.mean() if valid is None else _masked_mean(per_row, valid.bool())
    return loss * temperature**2 if scale_by_t2 else loss


def hard_label_ce(student_logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy with gold labels: (B, C) with (B,), or (B, S, C) with (B, S) ignoring ``ignore_index``.

    L = mean over non-ignored rows of -log softmax(z_s)_y. Single scores (B,) use binary
    cross-entropy with logits on the 0/1 labels of the non-ignored rows (the ranking head's
    own loss): L = mean_{b: y_b != ignore} -[y_b log sigmoid(x_b) + (1 - y_b) log(1 - sigmoid(x_b))].
    A batch with no gold label at all (only teacher-labelled augmented rows) gives 0, not the
    NaN of an empty mean.
    """
    labelled = labels != ignore_index
    if not labelled.any():
        return student_logits.sum() * 0.0
    if student_logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(student_logits[labelled], labels[labelled].to(student_logits.dtype))
    return F.cross_entropy(student_logits.flatten(0, -2), labels.flatten(), ignore_index=ignore_index)


def _pick(states: tuple[torch.Tensor, ...] | None, index: int, what: str, side: str) -> torch.Tensor:
    if states is None:
        flag = "output_hidden_states" if what == "hidden_states" else "output_attention_scores"
        raise ValueError(f"{side} EncoderOutput has no {what}: run the model with {flag}=True")
    if not 0 <= index < len(states):
        raise ValueError(f"{side} {what} has {len(states)} entries, layer map asks for index {index}")
    return states[index]


def compute_intermediate_loss(student_out: EncoderOutput, teacher_out: EncoderOutput, projection: HiddenProjection,
                              layer_map: LayerMap, aligned: AlignedBatch, masks: DistillMasks,
                              weights: DistillLossWeights,
                              attention_loss: AttentionLossKind | str = AttentionLossKind.kl,
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the layer-map terms and ``{term name: unweighted detached term}``.

    total = sum over matches m of  w_feature(m) * m.weight * L_m, where w_feature is
    ``weights.embedding``/``hidden``/``attention`` and L_m is :func:`hidden_mse` (projected
    student vs ``align_hidden(teacher)``; TinyBERT's embedding loss is the same MSE on
    ``hidden_states[0]`` of both models) or the attention loss
    (``attention_loss``: ``kl``/``log_prob_mse`` via :func:`aligned_attention_loss`,
    ``score_mse`` via :func:`attention_score_mse` for a shared tokenizer).
    """
    attention_loss = AttentionLossKind(attention_loss)
    if aligned.valid.shape != masks.student.shape or aligned.pool.shape[-1] != masks.teacher.shape[-1]:
        raise ValueError(f"alignment (B, S, T) = {tuple(aligned.pool.shape)} does not fit student mask "
                         f"{tuple(masks.student.shape)} / teacher mask {tuple(masks.teacher.shape)}: collate it with "
                         f"student_len and teacher_len equal to the padded batch widths")
    aligned = aligned.to(masks.student.device)
    hidden_valid = aligned.valid & masks.student.bool()  # (B, S)
    total = None
    terms: dict[str, torch.Tensor] = {}
    for match, name in zip(layer_map, layer_map.term_names()):
        weight = weights.match_weight(match)
        if weight == 0:
            continue
        if match.feature is Feature.attention:
            student_scores = _pick(student_out.attention_scores, match.student_layer - 1, "attention_scores", "student")
            teacher_scores = _pick(teacher_out.attention_scores, match.teacher_layer - 1, "attention_scores", "teacher")
            if attention_loss is AttentionLossKind.score_mse:
                term = attention_score_mse(student_scores, teacher_scores, masks.student)
            else:
                term = aligned_attention_loss(student_scores, teacher_scores, aligned.pool, aligned.cover,
                                              masks.student, masks.teacher, aligned.valid, kind=attention_loss)
        else:
            student_hidden = _pick(student_out.hidden_states, match.student_layer, "hidden_states", "student")
            teacher_hidden = _pick(teacher_out.hidden_states, match.teacher_layer, "hidden_states", "teacher")
            teacher_aligned = align_hidden(teacher_hidden.detach(), aligned.pool)  # (B, S, H_t)
            term = hidden_mse(projection(student_hidden, name), teacher_aligned, hidden_valid)
        terms[name] = term.detach()
        total = weight * term if total is None else total + weight * term
    if total is None:
        raise ValueError("every intermediate loss term has weight 0: nothing to optimise")
    return total, terms


def feature_balance_factor(feature_total: torch.Tensor, prediction_total: torch.Tensor,
                           ratio: float = 1.0) -> torch.Tensor:
    """The fixed factor of the layer-map total that makes it ``ratio`` times the prediction total (detached).

        c = ratio * P_0 / F_0,   F_0 = sum_k w_k L_k,  P_0 = w_soft L_soft + w_hard L_hard   (the first step's values)
        joint loss from then on:  L = c * sum_k w_k L_k + w_soft L_soft + w_hard L_hard

    Called once, on the first step; the factor then stays fixed, so the layer-map terms keep
    their relative weights and their own progress shows in the total. 1 when F_0 is 0.
    """
    feature, prediction = feature_total.detach().float(), prediction_total.detach().float()
    return torch.where(feature > 0, ratio * prediction / feature.clamp(min=torch.finfo(feature.dtype).tiny),
                       torch.ones_like(feature))


def feature_warmup_factor(step: int, steps: int, warmup: float) -> float:
    """The joint stage's weight on the layer-map total at 0-based ``step`` of ``steps``: a linear ramp from 0.

        f(s) = min(1, s / (warmup * steps))   (1 throughout when warmup * steps < 1)
        joint loss at step s:  L = f(s) * sum_k w_k L_k + w_soft L_soft + w_hard L_hard

    A plain number of the step, so a resumed run recomputes it and every rank agrees.
    """
    ramp = warmup * steps
    return 1.0 if ramp < 1 else min(1.0, step / ramp)


def compute_prediction_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                            labels: torch.Tensor | None, weights: DistillLossWeights,
                            valid: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``weights.soft * soft_ce + weights.hard * hard_ce`` and ``{"soft_ce", "hard_ce"}`` (unweighted, detached).

    Teacher logits must already be at student resolution (same shape). ``valid`` (B, S) masks
    token-level soft terms; hard labels use ``-100`` for positions to ignore.
    """
    total = None
    terms: dict[str, torch.Tensor] = {}
    if weights.soft > 0:
        if teacher_logits is None:
            raise ValueError("soft weight > 0 but no teacher logits were given")
        term = soft_cross_entropy(student_logits, teacher_logits, weights.temperature, weights.scale_by_t2, valid)
        terms["soft_ce"] = term.detach()
        total = weights.soft * term
    if weights.hard > 0:
        if labels is None:
            raise ValueError("hard weight > 0 but no labels were given")
        term = hard_label_ce(student_logits, labels)
        terms["hard_ce"] = term.detach()
        total = weights.hard * term if total is None else total + weights.hard * term
    if total is None:
        raise ValueError("soft and hard weights are both 0: nothing to optimise")
    return total, terms
