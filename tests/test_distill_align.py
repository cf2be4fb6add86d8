"""Cross-tokenizer alignment on hand-built encodings, checked value by value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ernie_tiny.distill.align import (
    align_attention_probs,
    align_hidden,
    build_alignment,
    collate_alignments,
    identity_alignment,
    masked_softmax,
)
from ernie_tiny.tokenization.encoding import CLS, SEP, UNK, Encoding, TokenSpan


def collate_built(students, teachers, student_len=None, teacher_len=None):
    """The alignments build_items computes per item, padded as collate_distill pads them."""
    return collate_alignments([build_alignment(s, t) for s, t in zip(students, teachers)], student_len, teacher_len)


def make_encoding(tokens: list[tuple[str, int, int, int]], truncated: bool = False) -> Encoding:
    """Encoding from (token, text_index, start, end); specials use text_index -1 and start = end = k."""
    return Encoding(
        tokens=[t for t, *_ in tokens],
        input_ids=list(range(1, len(tokens) + 1)),
        token_type_ids=[0] * len(tokens),
        spans=[TokenSpan(i, s, e) for _, i, s, e in tokens],
        truncated=truncated,
    )


# "我爱NLP模型": teacher (char-level with WordPiece for latin) and student (subword) views.
TEACHER = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 1, 2), ("nl", 0, 2, 4), ("##p", 0, 4, 5),
                         ("模", 0, 5, 6), ("型", 0, 6, 7), (SEP, -1, 1, 1)])
STUDENT = make_encoding([(CLS, -1, 0, 0), ("我爱", 0, 0, 2), ("nlp", 0, 2, 5), ("模型", 0, 5, 7), (SEP, -1, 1, 1)])


def test_subword_student_pools_char_teacher_value_by_value():
    alignment = build_alignment(STUDENT, TEACHER)
    expected_cover = np.array([
        [1, 0, 0, 0, 0, 0, 0, 0],  # [CLS] <-> [CLS]
        [0, 1, 1, 0, 0, 0, 0, 0],  # 我爱 <-> 我 爱
        [0, 0, 0, 1, 1, 0, 0, 0],  # nlp <-> nl ##p
        [0, 0, 0, 0, 0, 1, 1, 0],  # 模型 <-> 模 型
        [0, 0, 0, 0, 0, 0, 0, 1],  # [SEP] <-> [SEP]
    ], dtype=np.float32)
    expected_pool = expected_cover / np.array([[1], [2], [2], [2], [1]], dtype=np.float32)
    np.testing.assert_array_equal(alignment.cover, expected_cover)
    np.testing.assert_array_equal(alignment.pool, expected_pool)
    np.testing.assert_array_equal(alignment.valid, [True] * 5)
    np.testing.assert_array_equal(alignment.teacher_start, [0, 1, 3, 5, 7])
    np.testing.assert_array_equal(alignment.teacher_end, [1, 3, 5, 7, 8])


def test_teacher_token_straddling_student_boundary_invalidates_both_pieces():
    teacher = make_encoding([(CLS, -1, 0, 0), ("hello", 0, 0, 5), (SEP, -1, 1, 1)])
    student = make_encoding([(CLS, -1, 0, 0), ("he", 0, 0, 2), ("llo", 0, 2, 5), (SEP, -1, 1, 1)])
    alignment = build_alignment(student, teacher)
    np.testing.assert_array_equal(alignment.valid, [True, False, False, True])
    np.testing.assert_array_equal(alignment.pool[1:3], np.zeros((2, 3), dtype=np.float32))
    # The other direction is a clean many-to-one pool.
    reverse = build_alignment(teacher, student)
    np.testing.assert_array_equal(reverse.valid, [True, True, True])
    np.testing.assert_array_equal(reverse.pool[1], [0, 0.5, 0.5, 0])


def test_truncated_teacher_masks_student_tokens_it_no_longer_covers():
    teacher = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 1, 2), ("nl", 0, 2, 4), (SEP, -1, 1, 1)],
                            truncated=True)
    alignment = build_alignment(STUDENT, teacher)
    # nlp: "##p" was cut off (char 4 after the teacher's last token); 模型: no teacher tokens left.
    np.testing.assert_array_equal(alignment.valid, [True, True, False, False, True])
    np.testing.assert_array_equal(alignment.cover, np.array([
        [1, 0, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
    ], dtype=np.float32))


def test_truncated_student_aligns_its_remaining_tokens():
    student = make_encoding([(CLS, -1, 0, 0), ("我爱", 0, 0, 2), (SEP, -1, 1, 1)], truncated=True)
    alignment = build_alignment(student, TEACHER)
    np.testing.assert_array_equal(alignment.valid, [True, True, True])
    np.testing.assert_array_equal(alignment.teacher_start, [0, 1, 7])
    np.testing.assert_array_equal(alignment.teacher_end, [1, 3, 8])


def test_unk_on_either_side_masks_the_student_token():
    student_unk = make_encoding([(CLS, -1, 0, 0), ("我爱", 0, 0, 2), ("nlp", 0, 2, 5), (UNK, 0, 5, 7), (SEP, -1, 1, 1)])
    np.testing.assert_array_equal(build_alignment(student_unk, TEACHER).valid, [True, True, True, False, True])
    teacher_unk = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 1, 2), ("nl", 0, 2, 4), ("##p", 0, 4, 5),
                                 (UNK, 0, 5, 6), ("型", 0, 6, 7), (SEP, -1, 1, 1)])
    alignment = build_alignment(STUDENT, teacher_unk)
    np.testing.assert_array_equal(alignment.valid, [True, True, True, False, True])
    assert alignment.pool[3].sum() == 0


def test_sentence_pair_matches_tokens_within_the_same_text_only():
    # text_a "我爱你", text_b "我爱": identical chars in both texts must not be confused.
    teacher = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 1, 2), ("你", 0, 2, 3), (SEP, -1, 1, 1),
                             ("我", 1, 0, 1), ("爱", 1, 1, 2), (SEP, -1, 2, 2)])
    student = make_encoding([(CLS, -1, 0, 0), ("我爱", 0, 0, 2), ("你", 0, 2, 3), (SEP, -1, 1, 1),
                             ("我爱", 1, 0, 2), (SEP, -1, 2, 2)])
    alignment = build_alignment(student, teacher)
    np.testing.assert_array_equal(alignment.valid, [True] * 6)
    np.testing.assert_array_equal(alignment.cover, np.array([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0],  # first [SEP]
        [0, 0, 0, 0, 0, 1, 1, 0],  # "我爱" of text_b -> teacher tokens 5, 6, not 1, 2
        [0, 0, 0, 0, 0, 0, 0, 1],  # second [SEP]
    ], dtype=np.float32))


def test_missing_second_sep_in_teacher_is_invalid():
    teacher = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), (SEP, -1, 1, 1)])
    student = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), (SEP, -1, 1, 1), ("好", 1, 0, 1), (SEP, -1, 2, 2)])
    np.testing.assert_array_equal(build_alignment(student, teacher).valid, [True, True, True, False, False])


def test_whitespace_inside_a_student_span_is_ignored_but_truncation_is_not():
    # text "我 爱 型 ": the char teacher drops spaces; the student piece "▁爱" covers " 爱".
    teacher = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), ("爱", 0, 2, 3), ("型", 0, 4, 5), (SEP, -1, 1, 1)])
    student = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), ("▁爱", 0, 1, 3), ("▁型▁", 0, 3, 6), (SEP, -1, 1, 1)])
    inferred = build_alignment(student, teacher)
    np.testing.assert_array_equal(inferred.pool[2], [0, 0, 1, 0, 0])
    # Without the text, the trailing char 5 (after the teacher's last token) may have been truncated.
    np.testing.assert_array_equal(inferred.valid, [True, True, True, False, True])
    with_text = build_alignment(student, teacher, texts=("我 爱 型 ", None))
    np.testing.assert_array_equal(with_text.valid, [True, True, True, True, True])
    np.testing.assert_array_equal(with_text.pool[3], [0, 0, 0, 1, 0])
    # A non-space char the teacher did not cover is never ignored, text or not.
    np.testing.assert_array_equal(build_alignment(student, teacher, texts=("我x爱 型 ", None)).valid,
                                  [True, True, False, True, True])


def test_identity_alignment_equals_alignment_of_an_encoding_with_itself():
    teacher_unk = make_encoding([(CLS, -1, 0, 0), ("我", 0, 0, 1), (UNK, 0, 1, 2), (SEP, -1, 1, 1)])
    identity = identity_alignment(teacher_unk)
    built = build_alignment(teacher_unk, teacher_unk)
    np.testing.assert_array_equal(identity.pool, np.diag([1, 1, 0, 1]).astype(np.float32))
    np.testing.assert_array_equal(identity.valid, [True, True, False, True])
    np.testing.assert_array_equal(built.pool, identity.pool)
    np.testing.assert_array_equal(built.valid, identity.valid)
    batch = collate_alignments([identity_alignment(e) for e in [teacher_unk, TEACHER]])
    assert batch.pool.shape == (2, 8, 8)
    assert torch.equal(batch.pool[1], torch.eye(8))


def test_out_of_order_teacher_spans_are_rejected():
    teacher = make_encoding([(CLS, -1, 0, 0), ("爱", 0, 1, 2), ("我", 0, 0, 1), (SEP, -1, 1, 1)])
    with pytest.raises(ValueError, match="text order"):
        build_alignment(STUDENT, teacher)


def test_collate_pads_and_invalidates_rows_cut_by_the_teacher_width():
    short_student = make_encoding([(CLS, -1, 0, 0), ("我爱", 0, 0, 2), (SEP, -1, 1, 1)])
    batch = collate_built([STUDENT, short_student], [TEACHER, TEACHER])
    assert batch.pool.shape == (2, 5, 8) and batch.cover.shape == (2, 5, 8) and batch.valid.shape == (2, 5)
    assert batch.pool.dtype == torch.float32 and batch.valid.dtype == torch.bool
    torch.testing.assert_close(batch.pool[0], torch.from_numpy(build_alignment(STUDENT, TEACHER).pool))
    assert batch.valid[1].tolist() == [True, True, True, False, False]
    assert batch.pool[1, 3:].abs().sum() == 0
    # A teacher width of 6 cuts off 型 and [SEP]: rows 模型 and [SEP] must become invalid, not partial.
    cut = collate_alignments([build_alignment(STUDENT, TEACHER)], student_len=4, teacher_len=6)
    assert cut.pool.shape == (1, 4, 6)
    assert cut.valid[0].tolist() == [True, True, True, False]
    assert cut.pool[0, 3].abs().sum() == 0


def test_align_hidden_is_the_mean_over_each_span():
    batch = collate_built([STUDENT], [TEACHER])
    teacher_hidden = torch.arange(8 * 2, dtype=torch.float32).view(1, 8, 2)  # token j has [2j, 2j+1]
    aligned = align_hidden(teacher_hidden, batch.pool)
    expected = torch.tensor([[[0, 1], [3, 4], [7, 8], [11, 12], [14, 15]]], dtype=torch.float32)
    torch.testing.assert_close(aligned, expected)


def test_align_attention_probs_averages_query_rows_and_sums_key_columns():
    teacher = make_encoding([(CLS, -1, 0, 0), ("a", 0, 0, 1), ("b", 0, 1, 2), (SEP, -1, 1, 1)])
    student = make_encoding([(CLS, -1, 0, 0), ("ab", 0, 0, 2), (SEP, -1, 1, 1)])
    batch = collate_built([student], [teacher])
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4],
                          [0.4, 0.3, 0.2, 0.1],
                          [0.0, 0.5, 0.5, 0.0],
                          [0.25, 0.25, 0.25, 0.25]]).view(1, 1, 4, 4)
    aligned = align_attention_probs(probs, batch.pool, batch.cover)
    expected = torch.tensor([[0.1, 0.5, 0.4],
                             [(0.4 + 0.0) / 2, (0.5 + 1.0) / 2, (0.1 + 0.0) / 2],
                             [0.25, 0.5, 0.25]]).view(1, 1, 3, 3)
    torch.testing.assert_close(aligned, expected)
    torch.testing.assert_close(aligned.sum(-1), torch.ones(1, 1, 3))


def test_masked_softmax_excludes_padding_and_leaves_empty_rows_zero():
    scores = torch.tensor([[1.0, 2.0, 50.0]]).view(1, 1, 1, 3)
    probs = masked_softmax(scores, torch.tensor([[1, 1, 0]]))
    e = torch.exp(torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(probs[0, 0, 0], torch.cat([e / e.sum(), torch.zeros(1)]))
    assert masked_softmax(scores, torch.tensor([[0, 0, 0]])).abs().sum() == 0
