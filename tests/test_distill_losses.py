"""Distillation losses: known values on tiny tensors, masking, gradients, and the full intermediate loss."""

from __future__ import annotations

import math

import pytest
import torch

from ernie_tiny.tokenization.batching import pad_encodings
from ernie_tiny.distill.align import (align_attention_probs, build_alignment, collate_alignments, identity_alignment,
                                     masked_softmax)
from ernie_tiny.distill.layer_map import layer_map_preset
from ernie_tiny.distill.losses import (
    AttentionLossKind,
    DistillLossWeights,
    DistillMasks,
    aligned_attention_loss,
    attention_score_mse,
    compute_intermediate_loss,
    compute_prediction_loss,
    hard_label_ce,
    hidden_mse,
    soft_cross_entropy,
)
from ernie_tiny.distill.projection import HiddenProjection
from ernie_tiny.model import ErnieConfig, ErnieModel
from ernie_tiny.tokenization.encoding import CLS, SEP, Encoding, TokenSpan


def collate_built(students, teachers, student_len=None, teacher_len=None):
    """The alignments build_items computes per item, padded as collate_distill pads them."""
    return collate_alignments([build_alignment(s, t) for s, t in zip(students, teachers)], student_len, teacher_len)


def make_encoding(tokens: list[tuple[str, int, int, int]]) -> Encoding:
    """Encoding from (token, text_index, start, end); specials use text_index -1 and start = end = k."""
    return Encoding(tokens=[t for t, *_ in tokens], input_ids=list(range(1, len(tokens) + 1)),
                    token_type_ids=[0] * len(tokens), spans=[TokenSpan(i, s, e) for _, i, s, e in tokens])


# "我爱NLP模型" as the char teacher and the subword student see it.
TEACHER = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 1, 2), ("nl", 0, 2, 4), ("##p", 0, 4, 5),
                         ("模", 0, 5, 6), ("型", 0, 6, 7), (SEP, -1, 1, 1)])
STUDENT = make_encoding([(CLS, -1, 0, 0), ("我爱", 0, 0, 2), ("nlp", 0, 2, 5), ("模型", 0, 5, 7), (SEP, -1, 1, 1)])


def test_hidden_mse_known_value_and_masking():
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [3.0, 6.0]]])
    assert hidden_mse(student, teacher, torch.tensor([[True, True]])).item() == pytest.approx((2.5 + 2.0) / 2)
    masked = hidden_mse(student, teacher, torch.tensor([[True, False]]))
    assert masked.item() == pytest.approx(2.5)
    changed = teacher.clone()
    changed[0, 1] = 100.0
    assert hidden_mse(student, changed, torch.tensor([[True, False]])).item() == masked.item()
    assert hidden_mse(student, student.clone(), torch.tensor([[True, True]])).item() == 0.0


def test_hidden_mse_gradient_reaches_the_student_only():
    student = torch.randn(2, 3, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, requires_grad=True)
    hidden_mse(student, teacher, torch.ones(2, 3, dtype=torch.bool)).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_attention_score_mse_excludes_padding_pairs():
    student = torch.zeros(1, 1, 3, 3)
    teacher = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0], [9.0, 9.0, 9.0]]).view(1, 1, 3, 3)
    mask = torch.tensor([[1, 1, 0]])
    assert attention_score_mse(student, teacher, mask).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    teacher[..., 2] = -1e4  # padding keys/queries can hold anything
    teacher[..., 2, :] = 123.0
    assert attention_score_mse(student, teacher, mask).item() == pytest.approx(7.5)
    with pytest.raises(ValueError, match="equal shapes"):
        attention_score_mse(torch.zeros(1, 2, 3, 3), teacher, mask)


def _two_key_case():
    """Identity alignment, 2 tokens, 1 head: teacher rows [0.25, 0.75], student uniform."""
    encoding = make_encoding([("[CLS]", -1, 0, 0), ("a", 0, 0, 1)])
    aligned = collate_alignments([identity_alignment(e) for e in [encoding]])
    teacher = torch.log(torch.tensor([0.25, 0.75])).expand(1, 1, 2, 2).clone()
    student = torch.zeros(1, 1, 2, 2)
    mask = torch.ones(1, 2, dtype=torch.long)
    return student, teacher, aligned, mask


def test_aligned_attention_known_values_for_kl_and_log_prob_mse():
    student, teacher, aligned, mask = _two_key_case()
    args = (aligned.pool, aligned.cover, mask, mask, aligned.valid)
    kl = aligned_attention_loss(student, teacher, *args, kind="kl")
    assert kl.item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-6)
    mse = aligned_attention_loss(student, teacher, *args, kind=AttentionLossKind.log_prob_mse)
    assert mse.item() == pytest.approx((math.log(3) / 2) ** 2, abs=1e-6)
    # Scores are only defined up to a per-row constant: shifting a student row changes nothing.
    shifted = student + torch.tensor([3.0, -7.0]).view(1, 1, 2, 1)
    assert aligned_attention_loss(shifted, teacher, *args, kind="log_prob_mse").item() == pytest.approx(mse.item())
    assert aligned_attention_loss(shifted, teacher, *args, kind="kl").item() == pytest.approx(kl.item())


# P for T = 4 tokens [CLS] a b [SEP]; the student sees [CLS] ab [SEP].
TEACHER_PROBS = torch.tensor([[0.1, 0.2, 0.3, 0.4],
                              [0.4, 0.3, 0.2, 0.1],
                              [0.2, 0.4, 0.2, 0.2],
                              [0.25, 0.25, 0.25, 0.25]]).view(1, 1, 4, 4)
# Aligned: row [CLS] = P[0] summed over a+b; row ab = mean(P[1], P[2]) summed; row [SEP] = P[3].
ALIGNED_ROWS = [[0.1, 0.5, 0.4], [0.3, 0.55, 0.15], [0.25, 0.5, 0.25]]


def _ab_case():
    teacher = make_encoding([("[CLS]", -1, 0, 0), ("a", 0, 0, 1), ("b", 0, 1, 2), ("[SEP]", -1, 1, 1)])
    student = make_encoding([("[CLS]", -1, 0, 0), ("ab", 0, 0, 2), ("[SEP]", -1, 1, 1)])
    return collate_built([student], [teacher]), torch.log(TEACHER_PROBS)


def test_aligned_attention_kl_against_uniform_student_is_known():
    aligned, teacher_scores = _ab_case()
    student_scores = torch.zeros(1, 1, 3, 3)
    loss = aligned_attention_loss(student_scores, teacher_scores, aligned.pool, aligned.cover,
                                  torch.ones(1, 3), torch.ones(1, 4), aligned.valid)
    expected = sum(sum(a * math.log(3 * a) for a in row) for row in ALIGNED_ROWS) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # Make [SEP] invalid: its row is dropped and the other rows are renormalised over [CLS], ab.
    valid = torch.tensor([[True, True, False]])
    loss = aligned_attention_loss(student_scores, teacher_scores, aligned.pool, aligned.cover,
                                  torch.ones(1, 3), torch.ones(1, 4), valid)
    renormalised = [[0.1 / 0.6, 0.5 / 0.6], [0.3 / 0.85, 0.55 / 0.85]]
    expected = sum(sum(a * math.log(2 * a) for a in row) for row in renormalised) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def _real_case(batch_size: int = 1, teacher_heads: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    aligned = collate_built([STUDENT] * batch_size, [TEACHER] * batch_size)
    teacher_scores = torch.randn(batch_size, teacher_heads, 8, 8, generator=generator)
    teacher_mask = torch.ones(batch_size, 8, dtype=torch.long)
    target = align_attention_probs(masked_softmax(teacher_scores, teacher_mask), aligned.pool, aligned.cover)
    return aligned, teacher_scores, teacher_mask, target


@pytest.mark.parametrize("kind", ["kl", "log_prob_mse"])
def test_aligned_attention_is_zero_when_student_matches_the_aligned_teacher(kind):
    aligned, teacher_scores, teacher_mask, target = _real_case()
    student_mask = torch.ones(1, 5, dtype=torch.long)
    loss = aligned_attention_loss(torch.log(target), teacher_scores, aligned.pool, aligned.cover,
                                  student_mask, teacher_mask, aligned.valid, kind=kind)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    wrong = aligned_attention_loss(torch.zeros(1, 2, 5, 5), teacher_scores, aligned.pool, aligned.cover,
                                   student_mask, teacher_mask, aligned.valid, kind=kind)
    assert wrong.item() > 1e-3


def test_different_head_counts_compare_head_averaged_maps():
    aligned, teacher_scores, teacher_mask, target = _real_case(teacher_heads=3)
    average = target.mean(dim=1, keepdim=True)  # (1, 1, 5, 5), rows sum to 1 (every token valid)
    # Two student heads that differ from each other but average to the teacher's mean map.
    delta = 0.5 * average * (torch.arange(5) % 2 * 2 - 1).float()  # +-half of each entry, row sum not 0
    delta = delta - average * delta.sum(-1, keepdim=True)  # now each row of delta sums to 0
    student_probs = torch.cat([average + delta, average - delta], dim=1)  # (1, 2, 5, 5)
    assert (student_probs > 0).all()
    loss = aligned_attention_loss(torch.log(student_probs), teacher_scores, aligned.pool, aligned.cover,
                                  torch.ones(1, 5), teacher_mask, aligned.valid)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_aligned_attention_ignores_padding_and_invalid_positions():
    student_short = make_encoding([("[CLS]", -1, 0, 0), ("我爱", 0, 0, 2), ("[SEP]", -1, 1, 1)])
    teacher_short = make_encoding([("[CLS]", -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 1, 2), ("[SEP]", -1, 1, 1)])
    student_unk = make_encoding([("[CLS]", -1, 0, 0), ("我爱", 0, 0, 2), ("[UNK]", 0, 2, 5), ("模型", 0, 5, 7),
                                 ("[SEP]", -1, 1, 1)])
    aligned = collate_built([student_unk, student_short], [TEACHER, teacher_short])
    student_mask = pad_encodings([student_unk, student_short]).attention_mask
    teacher_mask = pad_encodings([TEACHER, teacher_short]).attention_mask
    generator = torch.Generator().manual_seed(1)
    student_scores = torch.randn(2, 2, 5, 5, generator=generator)
    teacher_scores = torch.randn(2, 2, 8, 8, generator=generator)
    args = (aligned.pool, aligned.cover, student_mask, teacher_mask, aligned.valid)
    for kind in ("kl", "log_prob_mse"):
        base = aligned_attention_loss(student_scores, teacher_scores, *args, kind=kind)
        noisy_student = student_scores.clone()
        noisy_student[0, :, 2, :] = 50.0  # query row of the [UNK] token
        noisy_student[0, :, :, 2] = -50.0  # its key column
        noisy_student[1, :, 3:, :] = 77.0  # padding rows
        noisy_student[1, :, :, 3:] = 77.0  # padding keys
        noisy_teacher = teacher_scores.clone()
        noisy_teacher[1, :, 4:, :] = 33.0  # padding of the short teacher
        noisy_teacher[1, :, :, 4:] = 33.0
        noisy = aligned_attention_loss(noisy_student, noisy_teacher, *args, kind=kind)
        assert torch.isfinite(base) and base.item() > 0
        assert noisy.item() == pytest.approx(base.item(), rel=1e-5)


def test_aligned_attention_gradient_reaches_the_student_only_and_is_finite():
    aligned, teacher_scores, teacher_mask, _ = _real_case(batch_size=2)
    teacher_scores.requires_grad_(True)
    student_scores = torch.randn(2, 2, 5, 5, requires_grad=True)
    student_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    for kind in ("kl", "log_prob_mse"):
        student_scores.grad = None
        aligned_attention_loss(student_scores, teacher_scores, aligned.pool, aligned.cover, student_mask,
                               teacher_mask, aligned.valid, kind=kind).backward()
        assert torch.isfinite(student_scores.grad).all() and student_scores.grad.abs().sum() > 0
        assert student_scores.grad[1, :, 3:].abs().sum() == 0  # padded query rows get no gradient
        assert teacher_scores.grad is None


def test_soft_cross_entropy_known_value_and_t_squared():
    student = torch.zeros(1, 2)
    teacher = torch.log(torch.tensor([[1.0, 3.0]]))
    assert soft_cross_entropy(student, teacher, temperature=1.0).item() == pytest.approx(math.log(2))
    scaled = soft_cross_entropy(student, teacher, temperature=2.0, scale_by_t2=True)
    unscaled = soft_cross_entropy(student, teacher, temperature=2.0, scale_by_t2=False)
    assert scaled.item() == pytest.approx(4.0 * unscaled.item())
    p = torch.softmax(teacher / 2.0, dim=-1)[0]
    assert unscaled.item() == pytest.approx(math.log(2))  # uniform student: CE = log C at any T
    assert p[1].item() == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)))
    # Single-score (ranking) logits are 2-class [0, x].
    assert soft_cross_entropy(torch.zeros(1), torch.tensor([math.log(3.0)])).item() == pytest.approx(math.log(2))


def test_soft_cross_entropy_at_the_teacher_is_its_entropy_with_zero_gradient():
    teacher = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    student = teacher.clone().requires_grad_(True)
    loss = soft_cross_entropy(student, teacher, temperature=3.0, scale_by_t2=False)
    p = torch.softmax(teacher / 3.0, dim=-1)
    assert loss.item() == pytest.approx(-(p * p.log()).sum(-1).mean().item(), abs=1e-6)
    loss.backward()
    assert student.grad.abs().max().item() < 1e-6


def test_token_level_soft_cross_entropy_uses_valid_tokens_only():
    teacher = torch.log(torch.tensor([[[1.0, 3.0], [1.0, 1.0], [9.0, 1.0]]]))  # (1, 3, 2)
    student = torch.zeros(1, 3, 2)
    valid = torch.tensor([[True, True, False]])
    loss = soft_cross_entropy(student, teacher, valid=valid)
    assert loss.item() == pytest.approx(math.log(2))  # both valid rows: CE vs uniform = log 2
    student[0, 2] = torch.tensor([100.0, -100.0])
    assert soft_cross_entropy(student, teacher, valid=valid).item() == pytest.approx(math.log(2))


def test_hard_label_ce_known_values():
    logits = torch.log(torch.tensor([[1.0, 3.0]]))
    assert hard_label_ce(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.75))
    token_logits = logits.view(1, 1, 2).expand(1, 3, 2)
    labels = torch.tensor([[0, -100, 1]])
    assert hard_label_ce(token_logits, labels).item() == pytest.approx((-math.log(0.25) - math.log(0.75)) / 2)
    assert hard_label_ce(torch.tensor([0.0]), torch.tensor([1])).item() == pytest.approx(math.log(2))


def test_loss_weights_are_validated():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DistillLossWeights(temperature=0.0)
    with pytest.raises(ValueError, match="loss weight hidden"):
        DistillLossWeights(hidden=-1.0)
    with pytest.raises(ValueError, match="loss weight soft"):
        DistillLossWeights(soft=float("nan"))


def test_prediction_loss_sums_weighted_terms():
    student = torch.zeros(2, 2, requires_grad=True)
    teacher = torch.log(torch.tensor([[1.0, 3.0], [1.0, 3.0]]))
    labels = torch.tensor([1, 0])
    weights = DistillLossWeights(soft=0.5, hard=2.0, temperature=2.0)
    total, terms = compute_prediction_loss(student, teacher, labels, weights)
    assert set(terms) == {"soft_ce", "hard_ce"}
    assert terms["hard_ce"].item() == pytest.approx(math.log(2))
    assert terms["soft_ce"].item() == pytest.approx(4 * math.log(2))  # T^2 * log 2
    assert total.item() == pytest.approx(0.5 * 4 * math.log(2) + 2.0 * math.log(2))
    assert not terms["soft_ce"].requires_grad
    with pytest.raises(ValueError, match="no labels"):
        compute_prediction_loss(student, teacher, None, weights)
    _, soft_only = compute_prediction_loss(student, teacher, None, DistillLossWeights())
    assert set(soft_only) == {"soft_ce"}


def _micro_run(teacher_preset: str, student_encodings, teacher_encodings, attention: bool = True):
    torch.manual_seed(0)
    teacher = ErnieModel(ErnieConfig.from_preset(teacher_preset)).eval()
    student = ErnieModel(ErnieConfig.from_preset("student-micro")).eval()
    student_batch, teacher_batch = pad_encodings(student_encodings), pad_encodings(teacher_encodings)
    student_out = student(student_batch.input_ids, student_batch.token_type_ids, student_batch.attention_mask,
                          output_hidden_states=True, output_attention_scores=attention)
    teacher_out = teacher(teacher_batch.input_ids, teacher_batch.token_type_ids, teacher_batch.attention_mask,
                          output_hidden_states=True, output_attention_scores=attention)
    masks = DistillMasks(student=student_batch.attention_mask, teacher=teacher_batch.attention_mask)
    return teacher, student, teacher_out, student_out, masks


def test_intermediate_loss_on_micro_models_names_terms_and_trains_only_the_student():
    short_student = make_encoding([("[CLS]", -1, 0, 0), ("我爱", 0, 0, 2), ("[SEP]", -1, 1, 1)])
    short_teacher = make_encoding([("[CLS]", -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 1, 2), ("[SEP]", -1, 1, 1)])
    teacher, student, teacher_out, student_out, masks = _micro_run(
        "teacher-micro", [STUDENT, short_student], [TEACHER, short_teacher])
    layer_map = layer_map_preset("tinybert-12to3", 12, 3)
    projection = HiddenProjection.for_layer_map(64, 48, layer_map)
    aligned = collate_built([STUDENT, short_student], [TEACHER, short_teacher])
    weights = DistillLossWeights(embedding=0.5, hidden=2.0, attention=3.0)
    total, terms = compute_intermediate_loss(student_out, teacher_out, projection, layer_map, aligned, masks, weights)
    assert list(terms) == ["embeddings", "hidden_l1", "hidden_l2", "hidden_l3",
                           "attention_l1", "attention_l2", "attention_l3"]
    expected = 0.5 * terms["embeddings"] + sum(2.0 * terms[f"hidden_l{i}"] + 3.0 * terms[f"attention_l{i}"]
                                              for i in (1, 2, 3))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(torch.isfinite(t) and t.item() > 0 for t in terms.values())
    total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert student.layers[2].attention.query.weight.grad.abs().sum() > 0
    assert projection.linears["shared"].weight.grad.abs().sum() > 0


def test_intermediate_loss_with_log_prob_mse_and_skipped_attention():
    _, _, teacher_out, student_out, masks = _micro_run("teacher-micro", [STUDENT], [TEACHER])
    layer_map = layer_map_preset("tinybert-12to3", 12, 3)
    projection = HiddenProjection.for_layer_map(64, 48, layer_map, per_match=True)
    assert sorted(projection.linears) == ["embeddings", "hidden_l1", "hidden_l2", "hidden_l3"]
    aligned = collate_built([STUDENT], [TEACHER])
    total, terms = compute_intermediate_loss(student_out, teacher_out, projection, layer_map, aligned, masks,
                                             DistillLossWeights(), attention_loss="log_prob_mse")
    assert torch.isfinite(total) and terms["attention_l3"].item() > 0
    no_attention = DistillLossWeights(attention=0.0)
    student_out.attention_scores = teacher_out.attention_scores = None
    _, terms = compute_intermediate_loss(student_out, teacher_out, projection, layer_map, aligned, masks, no_attention)
    assert list(terms) == ["embeddings", "hidden_l1", "hidden_l2", "hidden_l3"]
    with pytest.raises(ValueError, match="output_attention_scores=True"):
        compute_intermediate_loss(student_out, teacher_out, projection, layer_map, aligned, masks, DistillLossWeights())
    too_wide = collate_built([STUDENT], [TEACHER], student_len=7, teacher_len=8)
    with pytest.raises(ValueError, match="collate it with student_len and teacher_len"):
        compute_intermediate_loss(student_out, teacher_out, projection, layer_map, too_wide, masks, no_attention)


def test_same_tokenizer_score_mse_is_zero_for_identical_models():
    encodings = [STUDENT, make_encoding([("[CLS]", -1, 0, 0), ("我爱", 0, 0, 2), ("[SEP]", -1, 1, 1)])]
    _, _, _, student_out, masks = _micro_run("student-micro", encodings, encodings)
    masks = DistillMasks(student=masks.student, teacher=masks.student)
    layer_map = layer_map_preset("uniform", 3, 3)
    projection = HiddenProjection.for_layer_map(64, 64, layer_map)
    with torch.no_grad():  # identity projection: the student is its own teacher
        projection.linears["shared"].weight.copy_(torch.eye(64))
    aligned = collate_alignments([identity_alignment(e) for e in encodings])
    total, terms = compute_intermediate_loss(student_out, student_out, projection, layer_map, aligned, masks,
                                             DistillLossWeights(), attention_loss="score_mse")
    assert total.item() == pytest.approx(0.0, abs=1e-8)
    _, kl_terms = compute_intermediate_loss(student_out, student_out, projection, layer_map, aligned, masks,
                                            DistillLossWeights(), attention_loss="kl")
    assert kl_terms["attention_l2"].item() == pytest.approx(0.0, abs=1e-6)


def test_hard_label_ce_without_any_gold_label_is_zero_not_nan():
    from ernie_tiny.distill.losses import hard_label_ce

    logits = torch.randn(3, 2, requires_grad=True)
    loss = hard_label_ce(logits, torch.full((3,), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 2))
